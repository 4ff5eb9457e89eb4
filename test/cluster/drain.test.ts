/**
 * Cluster.Drain on real `daxd serve --etcd` processes and a real etcd, through DaxCluster:
 * - WAIT: plain, sparse, mapped and pinned files of n1 land on n2 byte-identical; holes
 *   stay holes (blocks allocated on the target); the mapper gets Invalidate MOVED; the
 *   pinned file's switch waits for the unpin and a DMA write done before it is in the copy;
 *   the old handles (node, ino) follow the move; List through any seed lists each name once.
 * - RECALL: the holder of a pin gets PinRecall (the SDK gives the pin back) and the file moves.
 * - kill -9 of the draining node after k files, and again between a switch and the source's
 *   removal (test pauses DAXD_TEST_DRAIN_PAUSE), restarts, reruns: no file lost or
 *   duplicated, bytes identical, nothing left on the drained node.
 * - Bad input: an unknown node, a concurrent drain, a down node, the last live node.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Etcd3 } from 'etcd3';
import { DaxClient, DaxCluster, DaxClientError, type ClusterFileInfo, type DrainProgress, type InvalidateEvent } from '../../client';
import { assertEtcdInstalled, startEtcd, type StartedEtcd } from '../support/etcd';
import { clusterSchema } from '../../server/http/admin-schemas';
import { getJson, validate } from '../http/fixture';
import { DRAIN_SOURCE_METADATA_KEY } from '../../wire/metadata';
import { RawNbd, W } from '../support/raw-nbd';
import { failure } from '../support/raw-rpc';
import { healthCheck, healthClient } from '../support/standard-clients';
import { seededRng, randInt } from '../support/rng';
import { runCli, tempDir, type StartedServer } from '../support/start-server';
import { until } from '../support/until';
import { MiB, PAGE } from '../support/units';
import { startNode, startNodeProcess, TEST_TTL_S } from './fixture';

/** Names tried to land one file on a given node (rendezvous spreads names; 1/3 chance each with 3 nodes). */
const PLACE_ATTEMPTS_MAX = 64;

function bytes(seed: number, n: number): Buffer {
  const rng = seededRng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = randInt(rng, 1, 255);
  return b;
}

describe('cluster: Drain', function () {
  this.timeout(60_000);
  let etcd: StartedEtcd;
  const tmp = tempDir('daxd-drain-');
  const servers = new Map<string, StartedServer>();
  let cluster: DaxCluster;
  let seq = 0;
  /** name -> expected content (the whole file, holes as zeros). */
  const expected = new Map<string, Buffer>();

  const volumeOf = (node: string) => path.join(tmp.dir, `${node}.vol`);
  const seeds = () => [...servers.values()].map((s) => s.address);
  const start = async (node: string, env?: Record<string, string>) => {
    servers.set(node, await startNodeProcess(etcd.url, node, volumeOf(node), TEST_TTL_S, undefined, env));
  };

  /** Creates a file through the cluster until one lands on `node`; the others are removed. */
  async function createOn(node: string, prefix: string): Promise<ClusterFileInfo> {
    for (let i = 0; i < PLACE_ATTEMPTS_MAX; i++) {
      const f = await cluster.create(`${prefix}-${seq++}`, { exclusive: true });
      if (f.node === node) return f;
      await cluster.unlink(f.name);
    }
    throw new Error(`no name out of ${PLACE_ATTEMPTS_MAX} was placed on ${node}`);
  }

  async function writeFile(f: ClusterFileInfo, content: Buffer, at = 0): Promise<void> {
    await cluster.write(f, at, content, { sync: true });
    const old = expected.get(f.name) ?? Buffer.alloc(0);
    const next = Buffer.alloc(Math.max(old.length, at + content.length));
    old.copy(next);
    content.copy(next, at);
    expected.set(f.name, next);
  }

  /** Every expected file is placed on a live node other than `not`, byte-identical, and listed once through each seed. */
  async function assertAllMovedOff(not: string): Promise<void> {
    for (const [name, content] of expected) {
      const f = await cluster.lookup(name);
      assert.notEqual(f.node, not, `${name} is still on ${not}`);
      assert.equal(f.size, content.length, `size of ${name}`);
      assert.ok((await cluster.read(f, 0, content.length)).equals(content), `content of ${name} on ${f.node}`);
    }
    for (const seed of seeds()) {
      const one = DaxCluster.connect({ seeds: [seed], deadlineMs: 5_000 });
      try {
        const listed: string[] = [];
        for await (const f of one.listAll()) listed.push(f.name);
        assert.equal(new Set(listed).size, listed.length, `List through ${seed} lists a name twice`);
        for (const name of expected.keys()) assert.ok(listed.includes(name), `List through ${seed} misses ${name}`);
      } finally {
        one.close();
      }
    }
    const local = DaxClient.connect(servers.get(not)!.address, { deadlineMs: 5_000 });
    try {
      assert.deepEqual((await local.list({ pageSize: 100 })).files.map((f) => f.name), [], `files left on ${not}`);
    } finally {
      local.close();
    }
  }

  before(async function () {
    assertEtcdInstalled();
    etcd = await startEtcd();
    await start('n1');
    await start('n2');
    cluster = DaxCluster.connect({ seeds: seeds(), deadlineMs: 10_000 });
  });

  after(async () => {
    cluster?.close();
    for (const s of servers.values()) await s.kill('SIGKILL').catch(() => undefined);
    await etcd?.stop();
    tmp.remove();
  });

  it('WAIT: moves plain, sparse, mapped and pinned files byte-identical; holes stay holes; mappers get MOVED; the switch waits for the unpin', async () => {
    const plain = await createOn('n1', 'plain');
    await writeFile(plain, bytes(1, 10_000));
    const sparse = await createOn('n1', 'sparse');
    await writeFile(sparse, bytes(2, PAGE));
    await writeFile(sparse, bytes(3, PAGE), 2 * MiB);
    const mapped = await createOn('n1', 'mapped');
    await writeFile(mapped, bytes(4, 3 * PAGE));
    const pinned = await createOn('n1', 'pinned');
    await writeFile(pinned, bytes(5, 2 * PAGE));

    const n1 = await cluster.clientOf({ node: 'n1' });
    const session = await n1.openSession();
    const invalidates: InvalidateEvent[] = [];
    session.on('invalidate', (e: InvalidateEvent) => invalidates.push(e));
    const mapping = await n1.mmap(mapped.ino, { shared: true, writable: true, session });
    const stored = bytes(6, 100);
    await mapping.write(PAGE + 7, stored); // a store through the mapping: must move with the file
    stored.copy(expected.get(mapped.name)!, PAGE + 7);
    const pin = await n1.pin(pinned.ino, 0, 1, { writable: true, session });
    // An NBD client of the pinned file on n1, connected before the drain.
    const nbd = await RawNbd.connect(servers.get('n1')!.nbd);
    await nbd.greet();
    await nbd.go(pinned.name, { structured: true });

    const progress: DrainProgress[] = [];
    const drained = cluster.drain('n1', { layoutBreak: 'WAIT', onProgress: (p) => progress.push(p) });
    drained.catch(() => undefined);
    // The drain copies the pinned file, then its switch waits for the pin (n1's gauge of
    // layout breaks waiting). A DMA write now, after the copy, must still reach the target.
    await until(() => progress.some((p) => p.current === pinned.name), 'the drain reached the pinned file');
    await until(async () => /^daxd_layout_breaks_waiting 1$/m.test(await (await fetch(`http://${servers.get('n1')!.http}/metrics`)).text()), 'the switch waits for the pin');
    // Every node's admin API (the dashboard's Cluster card) shows the drain in progress.
    await until(async () => {
      const { body } = await getJson<{ nodes: Array<{ name: string; drain: { current: string; filesMoved: number } | null }> }>(`http://${servers.get('n2')!.http}`, '/api/v1/cluster');
      validate(clusterSchema, body, '/api/v1/cluster');
      return body.nodes.find((n) => n.name === 'n1')?.drain?.current === pinned.name;
    }, 'n2 sees the drain of n1 at the pinned file');
    const dma = bytes(7, 512);
    await pin.dmaWrite(0, 100, dma);
    dma.copy(expected.get(pinned.name)!, 100);
    // Not switched while the pin stands (etcd itself: a Lookup at n1 would wait for the switch).
    const kv = new Etcd3({ hosts: etcd.url });
    try {
      assert.deepEqual(JSON.parse((await kv.get(`/daxd/files/${pinned.name}`).string())!), { node: 'n1', ino: pinned.ino, moving: 'n2' });
    } finally {
      kv.close();
    }
    // A Write sent now (the old handle) waits for the switch, then is redirected to n2 by NOT_OWNER: never lost on n1.
    const handle = { ...pinned };
    const late = bytes(11, 300);
    const lateWrite = cluster.write(handle, 1000, late, { sync: true });
    lateWrite.catch(() => undefined);
    // An NBD WRITE now waits for the switch too, then fails (the file moved: NBD_EIO naming
    // NOT_OWNER); it never succeeds into the source copy that the switch removes.
    const nbdLate = bytes(12, 200);
    const nbdWrite = nbd.command(W.NBD_CMD_WRITE, { offset: 2000, length: nbdLate.length, data: nbdLate });
    await pin.unpin();
    await lateWrite;
    late.copy(expected.get(pinned.name)!, 1000);
    const nbdResult = await nbdWrite;
    if (nbdResult.error === 0) nbdLate.copy(expected.get(pinned.name)!, 2000); // applied before the final copy: it must be on n2
    else assert.match(nbdResult.message, /NOT_OWNER/, `NBD WRITE during the switch: error ${nbdResult.error}`);
    assert.equal(handle.node, 'n2', 'the write followed the file');
    const last = await drained;
    // After the drain ended, the NBD connection still holds the removed source open: its
    // writes keep failing (NOT_OWNER), never acknowledged into a copy nobody reads.
    const afterDrain = await nbd.command(W.NBD_CMD_WRITE, { offset: 0, length: 100, data: Buffer.alloc(100, 0x5a) });
    nbd.end();
    assert.notEqual(afterDrain.error, 0, 'an NBD WRITE to the moved file after the drain ended');
    assert.match(afterDrain.message, /NOT_OWNER/);
    assert.equal(last.done, true);
    assert.equal(last.filesMoved, 4);
    assert.equal(last.filesFailed, 0);
    assert.equal(last.bytesCopied, last.bytesTotal);

    await until(() => invalidates.some((e) => e.ino === mapped.ino && e.reason === 'MOVED'), 'Invalidate MOVED to the mapper');
    await assertAllMovedOff('n1');
    // Holes stay holes: 2 pages allocated on the target, not 513.
    const moved = await cluster.lookup(sparse.name);
    assert.equal(moved.node, 'n2');
    assert.equal(moved.blocks, 2, 'blocks of the sparse file on the target');
    // An old handle (n1, old ino) follows the move.
    const oldHandle = { ...plain };
    assert.ok((await cluster.read(oldHandle, 0, 10)).equals(expected.get(plain.name)!.subarray(0, 10)));
    assert.equal(oldHandle.node, 'n2');
    await session.close();
  });

  it('RECALL: the holder of a pin gets PinRecall, gives it back, and the file moves', async () => {
    await start('n3');
    cluster.close();
    cluster = DaxCluster.connect({ seeds: seeds(), deadlineMs: 10_000 });
    await until(async () => (await cluster.members()).filter((m) => m.live).length === 3, 'n3 is a member');
    const pinned = await createOn('n2', 'recall');
    await writeFile(pinned, bytes(8, 3 * PAGE));
    const n2 = await cluster.clientOf({ node: 'n2' });
    const session = await n2.openSession();
    const recalls: unknown[] = [];
    session.on('pinRecall', (e: unknown) => recalls.push(e));
    const pin = await n2.pin(pinned.ino, 1, 2, { writable: true, session });
    const last = await cluster.drain('n2', { layoutBreak: 'RECALL' });
    assert.equal(last.filesFailed, 0);
    assert.equal(recalls.length, 1, 'PinRecall to the holder');
    await until(() => pin.state === 'unpinned', 'the SDK gave the recalled pin back');
    await assertAllMovedOff('n2');
    await session.close();
  });

  it('an Unlink marked as a drain\'s (daxd-drain-source) never removes a file placed on the node it is sent to', async () => {
    const f = await createOn('n2', 'kept');
    await writeFile(f, bytes(21, 1000));
    const n2 = await cluster.clientOf({ node: 'n2' });
    const marked = new grpc.Metadata();
    marked.set(DRAIN_SOURCE_METADATA_KEY, 'n1');
    await new Promise<void>((resolve, reject) => n2.raw.files.Unlink({ name: f.name }, marked, (err) => (err ? reject(err) : resolve())));
    const again = await cluster.lookup(f.name);
    assert.equal(again.node, 'n2');
    assert.ok((await cluster.read(again, 0, 1000)).equals(expected.get(f.name)!), 'the file is still there, unchanged');
  });

  it('kill -9 of the draining node after k files and between a switch and the removal; restart and rerun: nothing lost or duplicated', async () => {
    // n3 holds the files, started with a pause after 2 files.
    for (let i = 0; i < 5; i++) {
      const f = await createOn('n3', 'crash');
      await writeFile(f, bytes(100 + i, 5000 + 3000 * i));
    }
    await servers.get('n3')!.kill('SIGKILL');
    await start('n3', { DAXD_TEST_DRAIN_PAUSE: 'after-files:2' });
    const first = cluster.drain('n3');
    first.catch(() => undefined);
    await servers.get('n3')!.logged('cluster: drain paused (test)');
    // While it drains, its gRPC health says NOT_SERVING (new clients go elsewhere); liveness stays SERVING.
    const health = healthClient(servers.get('n3')!.address);
    try {
      assert.equal(await healthCheck(health, ''), 'NOT_SERVING', 'overall health of a draining node');
      assert.equal(await healthCheck(health, 'daxd.v1.Files'), 'NOT_SERVING');
      assert.equal(await healthCheck(health, 'liveness'), 'SERVING');
    } finally {
      health.close();
    }
    await servers.get('n3')!.kill('SIGKILL');
    await assert.rejects(first);

    await start('n3', { DAXD_TEST_DRAIN_PAUSE: 'after-switch:3' });
    const second = cluster.drain('n3');
    second.catch(() => undefined);
    await servers.get('n3')!.logged('cluster: drain paused (test)');
    await servers.get('n3')!.kill('SIGKILL');
    await assert.rejects(second);

    await start('n3');
    const reconciled = await servers.get('n3')!.logged('cluster: reconciled placements with the volume');
    assert.equal(reconciled.movedRemoved instanceof Array ? reconciled.movedRemoved.length : -1, 1, 'the switched file\'s source copy removed at restart');
    await until(async () => (await cluster.members()).some((m) => m.name === 'n3' && m.live && m.grpc === servers.get('n3')!.address), 'n3 back');
    const last = await cluster.drain('n3');
    assert.equal(last.filesFailed, 0);
    await assertAllMovedOff('n3');
  });

  it('daxd cluster drain: --json progress lines ending with done; the progress bar shows files and bytes in one unit', async () => {
    const seedsFlag = ['--seeds', seeds().join(',')];
    const json = await runCli(['cluster', 'drain', 'n2', '--json', '--layout-break', 'recall', ...seedsFlag]);
    assert.equal(json.code, 0, json.stderr);
    const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as DrainProgress);
    const done = lines[lines.length - 1];
    assert.equal(done.done, true);
    assert.equal(done.node, 'n2');
    assert.ok(done.filesMoved > 0 && done.filesMoved === done.filesTotal, JSON.stringify(done));
    assert.ok(lines.slice(0, -1).every((l) => !l.done));
    const bar = await runCli(['cluster', 'drain', 'n3', ...seedsFlag]);
    assert.equal(bar.code, 0, bar.stderr);
    assert.match(bar.stderr, /^\[[#-]{24}\] \d+\/\d+ files · [\d.]+ (B|KiB|MiB) \/ [\d.]+ \1/m);
    assert.match(bar.stdout, /^drained n3: \d+ moved, 0 left/);
    const usage = await runCli(['cluster', 'drain', 'n3', '--layout-break', 'sometimes', ...seedsFlag]);
    assert.equal(usage.code, 2);
    await assertAllMovedOff('n3');
  });

  it('reconcile at start: an orphan copy goes, an interrupted move is put back, a moved file\'s leftover source goes and `from` is dropped', async () => {
    const prefix = '/reconcile';
    let node = await startNode(etcd.url, 'rx', { prefix });
    const first = node;
    const kv = new Etcd3({ hosts: etcd.url });
    try {
      const local = DaxClient.connect(node.address, { deadlineMs: 5_000 });
      const made = new Map<string, number>();
      for (const name of ['copy', 'src', 'gone']) made.set(name, (await local.create(name, { exclusive: true })).ino);
      local.close();
      await node.stop();
      const put = (name: string, value: object) => kv.put(`${prefix}/files/${name}`).value(JSON.stringify(value));
      await put('copy', { node: 'ry', ino: 7, moving: 'rx' });                           // rx restarted during a copy to it
      await put('src', { node: 'rx', ino: made.get('src'), moving: 'ry' });              // rx crashed while draining, before the switch
      await put('gone', { node: 'ry', ino: 9, from: { node: 'rx', ino: made.get('gone') } }); // rx crashed after the switch
      node = await startNode(etcd.url, 'rx', { prefix, volumePath: node.volumePath });
      const report = node.daxd.cluster!.lastReconcile!;
      assert.deepEqual(report.copiesRemoved, ['copy']);
      assert.deepEqual(report.movesAbandoned, ['src']);
      assert.deepEqual(report.movedRemoved, ['gone']);
      assert.deepEqual(report.conflicts, []);
      const get = async (name: string) => JSON.parse((await kv.get(`${prefix}/files/${name}`).string())!) as unknown;
      assert.deepEqual(await get('copy'), { node: 'ry', ino: 7, moving: 'rx' });
      assert.deepEqual(await get('src'), { node: 'rx', ino: made.get('src') });
      assert.deepEqual(await get('gone'), { node: 'ry', ino: 9 });
      assert.deepEqual(node.daxd.fs.list('', '', 10).files.map((f) => f.name), ['src']);
    } finally {
      kv.close();
      await node.stop();
      node.removeDir();
      first.removeDir();
    }
  });

  it('bad input: an unknown node, a concurrent drain, a down node, the last live node', async () => {
    const unknown = await failure(cluster.drain('no-such-node'));
    assert.equal(unknown.code, grpc.status.NOT_FOUND);
    assert.equal(unknown.reason, 'ENOENT');
    const badName = await failure(cluster.drain('bad/name'));
    assert.equal(badName.code, grpc.status.INVALID_ARGUMENT);

    // A drain held up by a pin (WAIT), and a second one meanwhile: EBUSY.
    const pinned = await createOn('n1', 'busy');
    await writeFile(pinned, bytes(9, PAGE));
    const n1 = await cluster.clientOf({ node: 'n1' });
    const pin = await n1.pin(pinned.ino, 0, 1, { writable: true });
    // FAIL: the pinned file is left on n1 (counted failed), its placement put back, no copy left on the target; the rest moves.
    const failDrain = await cluster.drain('n1', { layoutBreak: 'FAIL' });
    assert.equal(failDrain.filesFailed, 1);
    assert.equal(failDrain.filesMoved, failDrain.filesTotal - 1);
    const kv = new Etcd3({ hosts: etcd.url });
    try {
      assert.deepEqual(JSON.parse((await kv.get(`/daxd/files/${pinned.name}`).string())!), { node: 'n1', ino: pinned.ino });
    } finally {
      kv.close();
    }
    for (const other of ['n2', 'n3']) {
      const c = DaxClient.connect(servers.get(other)!.address, { deadlineMs: 5_000 });
      try {
        assert.ok(!(await c.list({ pageSize: 1000 })).files.some((f) => f.name === pinned.name), `a copy of ${pinned.name} left on ${other}`);
      } finally {
        c.close();
      }
    }
    const progress: DrainProgress[] = [];
    const running = cluster.drain('n1', { onProgress: (p) => progress.push(p) });
    await until(() => progress.some((p) => p.current === pinned.name), 'the first drain waits for the pin');
    const busy = await failure(cluster.drain('n1'));
    assert.equal(busy.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(busy.reason, 'EBUSY');
    await until(async () => (await cluster.members()).find((m) => m.name === 'n1')?.drain?.current === pinned.name, 'Members shows the drain in progress');
    await pin.unpin();
    assert.equal((await running).filesFailed, 0);

    // n3 down (kill -9, lease expired): NODE_DOWN if it holds files. Give it one first.
    const f = await createOn('n3', 'down');
    await writeFile(f, bytes(10, 100));
    await servers.get('n3')!.kill('SIGKILL');
    await until(async () => !(await cluster.members()).some((m) => m.name === 'n3' && m.live), 'n3 down', (TEST_TTL_S + 2) * 1000);
    const down = await failure(cluster.drain('n3'));
    assert.equal(down.code, grpc.status.UNAVAILABLE);
    assert.equal(down.reason, 'NODE_DOWN');
    expected.delete(f.name);

    // n1 emptied above; stop n2: n1 is the last live node.
    await servers.get('n2')!.stop();
    servers.delete('n2');
    servers.delete('n3');
    await until(async () => (await cluster.members()).filter((m) => m.live).length === 1, 'only n1 live');
    const last = await failure(cluster.drain('n1'));
    assert.equal(last.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(last.reason, 'EBUSY');
    assert.match(last.message, /last live node/);
    assert.ok(last instanceof DaxClientError);
  });
});
