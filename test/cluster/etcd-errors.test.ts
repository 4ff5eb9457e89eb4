/**
 * etcd failures reach clients as a typed error: UNAVAILABLE / ETCD_UNAVAILABLE naming
 * etcd and the operation, never INTERNAL. etcd is frozen (SIGSTOP) under a node whose
 * lease is long (it does not fence during the test): a Lookup of a name the node does not
 * have (its confirmation read in etcd) and a Create (its placement read) both wait for
 * etcd's deadline and fail.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { loadDaxdProto } from '../../client';
import type { FilesClient } from '../../wire/generated/daxd/v1/Files';
import { assertEtcdInstalled, startEtcd, type StartedEtcd } from '../support/etcd';
import { call, failure } from '../support/raw-rpc';
import { startNode, type InProcessNode } from './fixture';

/** Long enough that the node does not fence while etcd is frozen (fencing at ⅔ of it). */
const LONG_TTL_S = 30;

describe('cluster: etcd failures', function () {
  this.timeout(60_000);
  let etcd: StartedEtcd;
  let a: InProcessNode;
  let files: FilesClient;

  before(async function () {
    assertEtcdInstalled();
    etcd = await startEtcd();
    a = await startNode(etcd.url, 'a', { ttlS: LONG_TTL_S });
    // The raw stub: the SDK would retry an idempotent call on UNAVAILABLE.
    files = new (loadDaxdProto().daxd.v1.Files)(a.address, grpc.credentials.createInsecure());
  });

  after(async () => {
    etcd?.resume();
    files?.close();
    if (a) { await a.stop(); a.removeDir(); }
    await etcd?.stop();
  });

  it('etcd frozen: a Lookup of an absent name and a Create answer UNAVAILABLE / ETCD_UNAVAILABLE naming etcd, not INTERNAL', async () => {
    etcd.pause();
    try {
      const [lookup, create] = await Promise.all([
        failure(call((cb) => files.Lookup({ name: 'absent' }, cb))),
        failure(call((cb) => files.Create({ name: 'new-while-frozen' }, cb))),
      ]);
      assert.equal(a.daxd.cluster!.fenced, false, 'the node fenced during the test: the Create never reached etcd');
      for (const [what, err] of [['Lookup', lookup], ['Create', create]] as const) {
        assert.equal(err.codeName, 'UNAVAILABLE', `${what}: ${err.message}`);
        assert.equal(err.reason, 'ETCD_UNAVAILABLE', `${what}: ${err.message}`);
        assert.match(err.message, /etcd/);
      }
      assert.match(lookup.message, /placement of "absent"/);
      assert.match(create.message, /placement of "new-while-frozen"/);
    } finally {
      etcd.resume();
    }
  });
});
