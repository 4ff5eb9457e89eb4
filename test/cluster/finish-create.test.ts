/**
 * A Create records its inode only in the key it claimed: finishCreate is a transaction
 * conditioned on {self, 0}. If the key changed between the claim and the local create
 * (here: the test re-places the name on another node while the Create waits at the
 * failpoint cluster:after-claim), the Create fails with where the name is placed, and
 * the other placement is kept, never overwritten.
 */
import assert from 'node:assert/strict';
import type { Etcd3 } from 'etcd3';
import { DaxClient } from '../../client';
import { failure } from '../support/raw-rpc';
import { oneNodeCluster, type InProcessNode } from './fixture';

describe('cluster: a Create records its inode only in its own claim', function () {
  this.timeout(60_000);
  const one = oneNodeCluster({ failpoints: true });
  let a: InProcessNode;
  let kv: Etcd3;
  before(() => ({ a, kv } = one));

  it('the key re-placed between the claim and the local create: the Create fails, the other placement stays', async () => {
    const client = DaxClient.connect(a.address, { deadlineMs: 10_000 });
    const fp = a.daxd.dax.failpoints.arm('cluster:after-claim');
    try {
      const pending = client.create('raced');
      await fp.reached;
      assert.deepEqual(JSON.parse((await kv.get('/daxd/files/raced').string())!), { node: 'a', ino: 0 });
      // Meanwhile the name is placed on node b (down: it has no registration).
      const elsewhere = JSON.stringify({ node: 'b', ino: 5 });
      await kv.put('/daxd/files/raced').value(elsewhere);
      fp.release();
      const err = await failure(pending);
      assert.equal(err.reason, 'NODE_DOWN', err.message);
      assert.equal(await kv.get('/daxd/files/raced').string(), elsewhere, 'the Create overwrote another node\'s placement');
    } finally {
      fp.release();
      client.close();
    }
  });
});
