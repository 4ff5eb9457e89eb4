/**
 * A node name is bound to its volume (PREFIX/bindings/NAME, no lease): a node restarted
 * on another volume (a mistyped --volume creates a fresh one) while placements still name
 * it is refused, and nothing is deleted; on its own volume its files are back. A node no
 * placement names is rebound.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { DaxClient, DaxClientError } from '../../client';
import { assertEtcdInstalled, startEtcd, type StartedEtcd } from '../support/etcd';
import { failure } from '../support/raw-rpc';
import { tempDir } from '../support/start-server';
import { startNode, type InProcessNode } from './fixture';

const FILES_ON_A = 8;

describe('cluster: node name bound to its volume', function () {
  this.timeout(60_000);
  let etcd: StartedEtcd;
  let a: InProcessNode;
  let b: InProcessNode;
  let kv: Etcd3;
  const tmp = tempDir('daxd-binding-');

  before(async function () {
    assertEtcdInstalled();
    etcd = await startEtcd();
    a = await startNode(etcd.url, 'a');
    b = await startNode(etcd.url, 'b');
    kv = new Etcd3({ hosts: etcd.url });
  });

  after(async () => {
    kv?.close();
    for (const n of [a, b]) if (n) { await n.stop(); n.removeDir(); }
    await etcd?.stop();
    tmp.remove();
  });

  async function placementsOf(node: string): Promise<string[]> {
    const kvs = await kv.getAll().prefix('/daxd/files/').strings();
    return Object.entries(kvs).filter(([, v]) => (JSON.parse(v) as { node: string }).node === node).map(([k]) => k.slice('/daxd/files/'.length)).sort();
  }

  it('a restart on another volume while placements name the node is refused (EBUSY naming the bound volume), nothing deleted; on its own volume the files are back', async () => {
    const client = DaxClient.connect(a.address, { deadlineMs: 5_000 });
    const mine: string[] = [];
    try {
      for (let i = 0; mine.length < FILES_ON_A; i++) {
        assert.ok(i < 200, 'a places too few names on itself');
        try {
          await client.create(`bound/${i}`, { exclusive: true });
          mine.push(`bound/${i}`);
        } catch (err) {
          if (!(err instanceof DaxClientError && err.reason === 'NOT_OWNER')) throw err;
        }
      }
    } finally {
      client.close();
    }
    mine.sort();
    const uuid = a.daxd.fs.statVolume().uuid;
    await a.stop();
    // The operator restarts a with a mistyped --volume: daxd creates a fresh volume there.
    const typo = path.join(tmp.dir, 'typo.vol');
    const refused = await startNode(etcd.url, 'a', { volumePath: typo }).then(async (started) => {
      await started.stop();
      started.removeDir();
      return null;
    }, (err: unknown) => err as Error & { code?: string });
    assert.ok(refused !== null, `a started on a fresh volume while ${FILES_ON_A} placements named it; placements of a left: ${(await placementsOf('a')).length}`);
    assert.equal(refused.code, 'EBUSY', refused.message);
    assert.match(refused.message, new RegExp(`node a is bound to volume ${uuid}`));
    assert.match(refused.message, new RegExp(`${FILES_ON_A} placements`));
    assert.deepEqual(await placementsOf('a'), mine, 'no placement of a was deleted');
    const viaB = DaxClient.connect(b.address, { deadlineMs: 5_000 });
    try {
      assert.equal((await failure(viaB.lookup(mine[0]!))).reason, 'NODE_DOWN');
    } finally {
      viaB.close();
    }
    // On its own volume: every file is back.
    const again = await startNode(etcd.url, 'a', { volumePath: a.volumePath });
    const old = a;
    a = again;
    old.removeDir = () => undefined; // the restarted node owns the directory now
    assert.deepEqual(again.daxd.cluster!.lastReconcile!.removed, []);
    const viaA = DaxClient.connect(again.address, { deadlineMs: 5_000 });
    try {
      for (const name of mine) assert.equal((await viaA.lookup(name)).name, name);
    } finally {
      viaA.close();
    }
  });

  it('a node no placement names is rebound to the volume it starts with', async () => {
    const c = await startNode(etcd.url, 'c');
    const first = c.daxd.fs.statVolume().uuid;
    assert.equal(JSON.parse((await kv.get('/daxd/bindings/c').string())!).volumeUuid, first);
    await c.stop();
    c.removeDir();
    const c2 = await startNode(etcd.url, 'c');
    try {
      const second = c2.daxd.fs.statVolume().uuid;
      assert.notEqual(second, first);
      assert.equal(JSON.parse((await kv.get('/daxd/bindings/c').string())!).volumeUuid, second);
    } finally {
      await c2.stop();
      c2.removeDir();
    }
  });
});
