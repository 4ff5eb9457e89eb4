/**
 * Fencing is decided per mutating call from the monotonic clock, not left to a timer, and
 * etcd itself refuses a placement by a node whose lease is gone:
 *   - a handler that blocks the event loop past ⅔ TTL since the last renewal: the Write
 *     queued behind it runs before any timer could fire, and must still be FENCED;
 *   - a lease revoked behind the node's back (it has not noticed yet): its Create's claim
 *     transaction compares the node key's lease and places nothing.
 */
import assert from 'node:assert/strict';
import type { Etcd3 } from 'etcd3';
import { DaxClient, DaxClientError } from '../../client';
import { FencedError } from '../../server/errors';
import { failure } from '../support/raw-rpc';
import { until } from '../support/until';
import { oneNodeCluster, TEST_TTL_S, type InProcessNode } from './fixture';

const TTL_MS = TEST_TTL_S * 1000;

describe('cluster: fencing per call', function () {
  this.timeout(60_000);
  const one = oneNodeCluster();
  let a: InProcessNode;
  let kv: Etcd3;
  before(() => ({ a, kv } = one));

  it('a handler busy past ⅔ TTL: the mutating call queued behind it is FENCED before any timer runs', async () => {
    const cluster = a.daxd.cluster!;
    await until(() => !cluster.fenced, 'a unfenced', 2 * TTL_MS);
    const membership = cluster.registration!;
    const fenceAtMs = membership.lastRenewalSentAtMs + (2 / 3) * TTL_MS;
    // The busy handler (this process is the server's): no timer, no keep-alive answer runs meanwhile.
    while (Date.now() < fenceAtMs + 20) { /* spin */ }
    // The queued Write passes the gate of every mutating call (cluster-routing.ts, FencedFs, NBD) next.
    assert.throws(() => cluster.assertMayMutate(), (err: unknown) => err instanceof FencedError && /no lease renewal/.test(err.message));
    assert.equal(cluster.fenced, true);
    // Once the loop runs again, the next keep-alive unfences it.
    await until(() => !cluster.fenced, 'a unfenced after the next keep-alive', 2 * TTL_MS);
  });

  it('a lease revoked behind the node\'s back: its Create places nothing (the claim compares the lease)', async () => {
    const cluster = a.daxd.cluster!;
    await until(() => !cluster.fenced, 'a unfenced', 2 * TTL_MS);
    const nodeKv = (await kv.get('/daxd/nodes/a').exec()).kvs[0]!;
    await kv.leaseClient.leaseRevoke({ ID: nodeKv.lease });
    const client = DaxClient.connect(a.address, { deadlineMs: 5_000 });
    try {
      const err = await failure(client.create('after-revoke'));
      assert.ok(err instanceof DaxClientError);
      assert.equal(err.reason, 'FENCED', err.message);
      assert.equal(await kv.get('/daxd/files/after-revoke').string(), null, 'a node without a lease placed a name');
      // It registers again by itself and places names again.
      await until(async () => {
        try {
          await client.create('after-revoke');
          return true;
        } catch (e) {
          if (!(e instanceof DaxClientError && e.reason === 'FENCED')) throw e;
          return false;
        }
      }, 'a placing names again', 4 * TTL_MS);
      assert.equal(JSON.parse((await kv.get('/daxd/files/after-revoke').string())!).node, 'a');
    } finally {
      client.close();
    }
  });
});
