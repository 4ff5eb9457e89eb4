/**
 * A cluster node's graceful stop: it stops accepting calls, lets the calls in flight
 * finish (they still reach etcd), and only then revokes its lease and closes etcd. A
 * Create held at the failpoint cluster:after-claim while the stop begins completes and
 * records its inode.
 */
import assert from 'node:assert/strict';
import type { Etcd3 } from 'etcd3';
import { DaxClient } from '../../client';
import { until } from '../support/until';
import { oneNodeCluster, type InProcessNode } from './fixture';

describe('cluster: graceful stop', function () {
  this.timeout(60_000);
  const one = oneNodeCluster({ failpoints: true });
  let a: InProcessNode;
  let kv: Etcd3;
  before(() => ({ a, kv } = one));

  it('a Create in flight when the stop begins finishes (etcd still open), then the node leaves', async () => {
    const client = DaxClient.connect(a.address, { deadlineMs: 10_000 });
    const fp = a.daxd.dax.failpoints.arm('cluster:after-claim');
    try {
      const pending = client.create('in-flight');
      await fp.reached;
      const stopped = a.stop();
      // The stop has begun: it refuses new calls, or (the defect) it has already left the cluster.
      await until(async () => !a.daxd.rpc.accepting || (await kv.get('/daxd/nodes/a').string()) === null, 'the stop beginning');
      fp.release();
      const info = await pending;
      assert.deepEqual(JSON.parse((await kv.get('/daxd/files/in-flight').string())!), { node: 'a', ino: info.ino });
      await stopped;
      assert.equal(await kv.get('/daxd/nodes/a').string(), null, 'the lease was revoked at the end of the stop');
    } finally {
      fp.release();
      client.close();
    }
  });
});
