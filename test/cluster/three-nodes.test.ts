/**
 * Three real `daxd serve --etcd` processes on one real etcd, used through DaxCluster:
 * placement spread, reads and List through any seed, kill -9 of a node (NODE_DOWN within
 * TTL + 2 s, the rest unaffected, new creates avoid it), its restart (files back,
 * byte-identical), and concurrent Creates of one name through two seeds.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { DaxCluster, DaxClientError, type ClusterFileInfo } from '../../client';
import { REDIRECTED_METADATA_KEY } from '../../wire/metadata';
import { call, rawClients } from '../support/raw-rpc';
import { assertEtcdInstalled, startEtcd, type StartedEtcd } from '../support/etcd';
import { seededRng, randInt } from '../support/rng';
import { runCli, tempDir, type StartedServer } from '../support/start-server';
import { until } from '../support/until';
import { startNodeProcess, TEST_TTL_S } from './fixture';

const FILES = 300;
const NAMES = ['n1', 'n2', 'n3'];

/** The content of file i: 1..3000 seeded bytes. */
function content(i: number): Buffer {
  const rng = seededRng(1000 + i);
  const bytes = Buffer.alloc(randInt(rng, 1, 3000));
  for (let j = 0; j < bytes.length; j++) bytes[j] = randInt(rng, 0, 255);
  return bytes;
}
const fileName = (i: number) => `f/${String(i).padStart(4, '0')}`;

describe('cluster: three nodes on etcd, through DaxCluster', function () {
  this.timeout(60_000);
  let etcd: StartedEtcd;
  const tmp = tempDir('daxd-3nodes-');
  const servers = new Map<string, StartedServer>();
  const files = new Map<string, ClusterFileInfo>();
  let cluster: DaxCluster;

  const volumeOf = (node: string) => path.join(tmp.dir, `${node}.vol`);
  const seeds = () => [...servers.values()].map((s) => s.address);

  before(async function () {
    assertEtcdInstalled();
    etcd = await startEtcd();
    for (const node of NAMES) servers.set(node, await startNodeProcess(etcd.url, node, volumeOf(node)));
    cluster = DaxCluster.connect({ seeds: seeds(), deadlineMs: 5_000 });
  });

  after(async () => {
    cluster?.close();
    for (const s of servers.values()) await s.kill('SIGKILL').catch(() => undefined);
    await etcd?.stop();
    tmp.remove();
  });

  it(`places ${FILES} files created through DaxCluster on every node, each holding 20-50%`, async () => {
    const CONCURRENT = 10;
    for (let at = 0; at < FILES; at += CONCURRENT) {
      await Promise.all([...Array(CONCURRENT).keys()].map(async (k) => {
        const i = at + k;
        const file = await cluster.create(fileName(i), { exclusive: true });
        // O_DSYNC: the data must survive the kill -9 below (without it, the last writes may be lost, as with write(2)).
        await cluster.write(file, 0, content(i), { sync: true });
        files.set(file.name, file);
      }));
    }
    const perNode = new Map<string, number>();
    for (const f of files.values()) perNode.set(f.node, (perNode.get(f.node) ?? 0) + 1);
    assert.deepEqual([...perNode.keys()].sort(), NAMES);
    for (const [node, n] of perNode) assert.ok(n >= 0.2 * FILES && n <= 0.5 * FILES, `${node} holds ${n} of ${FILES}`);
    // The servers agree: Members counts the same placements.
    const members = await cluster.members();
    for (const m of members) assert.equal(m.files, perNode.get(m.name), `files of ${m.name}`);
  });

  it('reads every file, byte-identical, through each seed alone', async () => {
    for (const seed of seeds()) {
      const one = DaxCluster.connect({ seeds: [seed], deadlineMs: 5_000 });
      try {
        for (let i = 0; i < FILES; i++) {
          const file = await one.lookup(fileName(i));
          assert.equal(file.node, files.get(fileName(i))!.node);
          assert.ok((await one.read(file, 0, 4096)).equals(content(i)), `${fileName(i)} through ${seed}`);
        }
      } finally {
        one.close();
      }
    }
  });

  it(`lists all ${FILES} files once, in name order, through each seed`, async () => {
    for (const seed of seeds()) {
      const one = DaxCluster.connect({ seeds: [seed], deadlineMs: 5_000 });
      try {
        const names: string[] = [];
        for await (const f of one.listAll('f/')) names.push(f.name);
        assert.deepEqual(names, [...Array(FILES).keys()].map(fileName));
        const volume = await one.statVolume();
        assert.equal(volume.nodes, 3);
        assert.equal(volume.files, FILES);
      } finally {
        one.close();
      }
    }
  });

  it('daxd cluster status --json, ls, and drain of an unknown node (test/cluster/drain.test.ts drains)', async () => {
    const seedsFlag = ['--seeds', seeds().join(',')];
    const status = await runCli(['cluster', 'status', '--json', ...seedsFlag]);
    assert.equal(status.code, 0, status.stderr);
    const nodes = (JSON.parse(status.stdout) as { nodes: Array<{ name: string; live: boolean; files: number }> }).nodes;
    assert.deepEqual(nodes.map((n) => [n.name, n.live]), NAMES.map((n) => [n, true]));
    assert.equal(nodes.reduce((sum, n) => sum + n.files, 0), FILES);
    const ls = await runCli(['cluster', 'ls', 'f/', ...seedsFlag]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.deepEqual(ls.stdout.trim().split('\n'), [...Array(FILES).keys()].map((i) => `${files.get(fileName(i))!.node}\t${fileName(i)}`));
    const drain = await runCli(['cluster', 'drain', 'no-such-node', ...seedsFlag]);
    assert.equal(drain.code, 1);
    assert.match(drain.stderr, /NOT_FOUND: ENOENT: no node named no-such-node/);
  });

  it('the file commands with --cluster SEEDS: put, get, stat, ls, df, rm find each file on its node', async () => {
    const cluster = ['--cluster', seeds().join(',')];
    const local = path.join(tmp.dir, 'local.bin');
    const back = path.join(tmp.dir, 'back.bin');
    const bytes = Buffer.concat([content(1), content(2), content(3)]);
    fs.writeFileSync(local, bytes);
    const CLI_FILES = 2;
    for (let i = 0; i < CLI_FILES; i++) {
      const name = `cli/${i}`;
      const put = await runCli(['put', local, name, ...cluster]);
      assert.equal(put.code, 0, put.stderr);
      const stat = await runCli(['stat', name, '--json', ...cluster]);
      assert.equal(stat.code, 0, stat.stderr);
      const info = JSON.parse(stat.stdout) as { size: number; node: string };
      assert.equal(info.size, bytes.length);
      assert.ok(NAMES.includes(info.node), info.node);
      const get = await runCli(['get', name, back, ...cluster]);
      assert.equal(get.code, 0, get.stderr);
      assert.ok(fs.readFileSync(back).equals(bytes));
    }
    const ls = await runCli(['ls', 'cli/', ...cluster]);
    assert.deepEqual(ls.stdout.trim().split('\n'), [...Array(CLI_FILES).keys()].map((i) => `cli/${i}`));
    const df = await runCli(['df', '--json', ...cluster]);
    assert.equal((JSON.parse(df.stdout) as { files: number; nodes: number }).files, FILES + CLI_FILES);
    const rm = await runCli(['rm', ...[...Array(CLI_FILES).keys()].map((i) => `cli/${i}`), ...cluster]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal((await runCli(['ls', 'cli/', ...cluster])).stdout, '');
  });

  it('kill -9 of a node: its files NODE_DOWN within TTL + 2 s, the others fine, new creates avoid it; restarted, its files are back byte-identical', async () => {
    const victim = 'n2';
    const victimFiles = [...files.values()].filter((f) => f.node === victim);
    const otherFiles = [...files.values()].filter((f) => f.node !== victim);
    const killedAtMs = Date.now();
    await servers.get(victim)!.kill('SIGKILL');
    servers.delete(victim);
    const survivors = DaxCluster.connect({ seeds: seeds(), deadlineMs: 5_000 });
    try {
      const probe = victimFiles[0].name;
      let seen: DaxClientError | null = null;
      await until(async () => {
        try {
          await survivors.lookup(probe);
        } catch (err) {
          if (err instanceof DaxClientError && err.reason === 'NODE_DOWN') seen = err;
        }
        return seen !== null;
      }, `${probe} answering NODE_DOWN`, (TEST_TTL_S + 2) * 1000);
      const detectMs = Date.now() - killedAtMs;
      console.log(`      NODE_DOWN seen ${detectMs} ms after kill -9 (TTL ${TEST_TTL_S} s)`);
      assert.ok(detectMs <= (TEST_TTL_S + 2) * 1000);
      for (const f of victimFiles) {
        await assert.rejects(survivors.lookup(f.name), (err: DaxClientError) => err.reason === 'NODE_DOWN' && err.codeName === 'UNAVAILABLE');
      }
      for (const f of otherFiles.slice(0, 60)) {
        const file = await survivors.lookup(f.name);
        const i = Number(f.name.slice(2));
        assert.ok((await survivors.read(file, 0, 4096)).equals(content(i)));
      }
      for (let i = 0; i < 30; i++) {
        const file = await survivors.create(`new/${i}`, { exclusive: true });
        assert.notEqual(file.node, victim);
      }
      // Never re-created elsewhere: a Create of a name of the dead node is NODE_DOWN too.
      await assert.rejects(survivors.create(victimFiles[1].name), (err: DaxClientError) => err.reason === 'NODE_DOWN');

      servers.set(victim, await startNodeProcess(etcd.url, victim, volumeOf(victim)));
      await until(async () => (await survivors.members()).some((m) => m.name === victim && m.live), `${victim} live again`);
      for (const f of victimFiles) {
        const file = await survivors.lookup(f.name);
        assert.equal(file.node, victim);
        const i = Number(f.name.slice(2));
        assert.ok((await survivors.read(file, 0, 4096)).equals(content(i)), `${f.name} after the restart`);
      }
    } finally {
      survivors.close();
    }
  });

  it('concurrent exclusive Creates of one name through two seeds: exactly one succeeds', async () => {
    const [s1, s2] = seeds();
    for (let round = 0; round < 10; round++) {
      const a = DaxCluster.connect({ seeds: [s1], deadlineMs: 5_000 });
      const b = DaxCluster.connect({ seeds: [s2], deadlineMs: 5_000 });
      try {
        const name = `race/${round}`;
        const results = await Promise.allSettled([a.create(name, { exclusive: true }), b.create(name, { exclusive: true })]);
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        assert.equal(won.length, 1, `round ${round}: ${JSON.stringify(results.map((r) => r.status === 'rejected' ? String(r.reason) : 'ok'))}`);
        assert.equal((lost[0].reason as DaxClientError).reason, 'EEXIST');
      } finally {
        a.close();
        b.close();
      }
    }
  });

  it('concurrent redirected Creates of one name at two nodes: the placement transaction lets exactly one place it', async () => {
    // Each node is told the Create was redirected to it, so each places the name on itself
    // if it can: only etcd's transaction (name absent) decides.
    const [s1, s2] = seeds();
    const r1 = rawClients(s1);
    const r2 = rawClients(s2);
    const redirected = new grpc.Metadata();
    redirected.set(REDIRECTED_METADATA_KEY, '1');
    try {
      for (let round = 0; round < 10; round++) {
        const name = `txn-race/${round}`;
        const results = await Promise.allSettled([r1, r2].map((r) => call((cb) => r.files.Create({ name, exclusive: true }, redirected, cb))));
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, `round ${round}: ${JSON.stringify(results.map((r) => r.status === 'rejected' ? String(r.reason) : 'ok'))}`);
        const lost = (results.find((r): r is PromiseRejectedResult => r.status === 'rejected')!).reason as DaxClientError;
        assert.equal(lost.reason, 'NOT_OWNER', `round ${round}: the losing node redirects to the winner`);
        // Only the winner holds the file: each node's List is its own volume's.
        const held = await Promise.all([r1, r2].map(async (r) => (await call<{ files: unknown[] }>((cb) => r.files.List({ prefix: name }, cb))).files.length));
        assert.deepEqual(held.sort(), [0, 1], `round ${round}: files per node`);
      }
    } finally {
      r1.close();
      r2.close();
    }
  });
});
