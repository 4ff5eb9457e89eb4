/**
 * A Create whose local create fails removes its claimed key again (abandonCreate). When
 * that removal fails too (etcd frozen), the client still gets the create's own error, not
 * the cleanup's: here the node fenced between the claim (held at the failpoint
 * cluster:after-claim) and the local create, so the create is FENCED, and the frozen
 * etcd fails the key's removal (ETCD_UNAVAILABLE, logged; the reconcile pass settles it).
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { loadDaxdProto } from '../../client';
import { assertEtcdInstalled, startEtcd, type StartedEtcd } from '../support/etcd';
import { call, failure } from '../support/raw-rpc';
import { until } from '../support/until';
import { startNode, TEST_TTL_S, type InProcessNode } from './fixture';

describe('cluster: a failed Create whose cleanup fails too', function () {
  this.timeout(60_000);
  let etcd: StartedEtcd;
  let a: InProcessNode;

  before(async function () {
    assertEtcdInstalled();
    etcd = await startEtcd();
    a = await startNode(etcd.url, 'a', { failpoints: true });
  });

  after(async () => {
    etcd?.resume();
    if (a) { await a.stop(); a.removeDir(); }
    await etcd?.stop();
  });

  it('keeps the create\'s own error (FENCED) when removing the claimed key fails (etcd frozen)', async () => {
    // The raw stub: the SDK would retry a non-exclusive Create on UNAVAILABLE.
    const files = new (loadDaxdProto().daxd.v1.Files)(a.address, grpc.credentials.createInsecure());
    const fp = a.daxd.dax.failpoints.arm('cluster:after-claim');
    try {
      const pending = failure(call((cb) => files.Create({ name: 'cleanup-fails' }, cb)));
      await fp.reached;
      etcd.pause();
      await until(() => a.daxd.cluster!.fenced, 'a fenced', 2 * TEST_TTL_S * 1000);
      fp.release();
      const err = await pending;
      assert.equal(err.reason, 'FENCED', err.message);
    } finally {
      fp.release();
      etcd.resume();
      files.close();
    }
  });
});
