/**
 * The Cluster service's Watch and Locate on a real etcd: the state sent first holds the
 * placements made before the Watch opened (each before SYNCED), then changes follow
 * (REMOVED on unlink, NODE_DOWN when a node leaves); and a principal confined to a prefix
 * learns nothing by name outside it (Locate EACCES whether or not the name is placed;
 * Watch sends only its own names), as the Files service promises.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { DaxClient, DaxCluster, loadDaxdProto } from '../../client';
import { Authenticator } from '../../server/auth/authenticator';
import { loadAuthFile } from '../../server/auth/auth-file';
import { Daxd } from '../../server/server';
import type { ClusterClient } from '../../wire/generated/daxd/v1/Cluster';
import type { ClusterEvent__Output } from '../../wire/generated/daxd/v1/ClusterEvent';
import type { Placement__Output } from '../../wire/generated/daxd/v1/Placement';
import { writeAuthFile } from '../support/auth-server';
import { assertEtcdInstalled, startEtcd, type StartedEtcd } from '../support/etcd';
import { call, failure } from '../support/raw-rpc';
import { tempDir } from '../support/start-server';
import { until } from '../support/until';
import { MiB } from '../support/units';
import { startNode, TEST_TTL_S, type InProcessNode } from './fixture';

function clusterStub(address: string): ClusterClient {
  return new (loadDaxdProto().daxd.v1.Cluster)(address, grpc.credentials.createInsecure());
}

/** Call metadata carrying `token` (none: no token). */
function as(token?: string): grpc.Metadata {
  const md = new grpc.Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return md;
}

/** The events of a Watch, collected until cancel(). */
function watchAll(stub: ClusterClient, token?: string): { events: ClusterEvent__Output[]; cancel(): void } {
  const events: ClusterEvent__Output[] = [];
  const watch = stub.Watch({}, as(token));
  watch.on('data', (e: ClusterEvent__Output) => events.push(e));
  watch.on('error', () => undefined);
  return { events, cancel: () => watch.cancel() };
}

describe('cluster: the Cluster service (Watch state and changes, prefix confinement)', function () {
  this.timeout(30_000);
  let etcd: StartedEtcd;

  before(async function () {
    assertEtcdInstalled();
    etcd = await startEtcd();
  });

  after(async () => {
    await etcd?.stop();
  });

  it('Watch sends existing placements before SYNCED, then REMOVED on unlink and NODE_DOWN when a node leaves', async () => {
    const a = await startNode(etcd.url, 'wa', { prefix: '/watch' });
    let b: InProcessNode | null = await startNode(etcd.url, 'wb', { prefix: '/watch' });
    const client = DaxClient.connect(a.address, { deadlineMs: 5_000 });
    const cluster = DaxCluster.connect({ seeds: [a.address], deadlineMs: 5_000 });
    const stub = clusterStub(a.address);
    let watch: ReturnType<typeof watchAll> | null = null;
    try {
      // Placed before the Watch opens: only the initial state can carry them.
      const before = ['early/0', 'early/1', 'early/2', 'early/3', 'early/4', 'early/5'];
      const nodes = new Set<string>();
      for (const name of before) nodes.add((await cluster.create(name, { exclusive: true })).node);
      await until(async () => (await Promise.all(before.map((name) => call<Placement__Output>((cb) => stub.Locate({ name }, cb)).then(() => true, () => false)))).every(Boolean), 'placements cached');
      watch = watchAll(stub);
      const w = watch;
      await until(() => w.events.some((e) => e.kind === 'SYNCED'), 'Watch SYNCED');
      const synced = w.events.findIndex((e) => e.kind === 'SYNCED');
      const placedFirst = w.events.slice(0, synced).filter((e) => e.kind === 'PLACED').map((e) => e.placement!.name);
      for (const name of before) assert.ok(placedFirst.includes(name), `${name} is PLACED before SYNCED (got ${placedFirst.join(', ')})`);
      assert.deepEqual(w.events.slice(0, synced).filter((e) => e.kind === 'NODE_UP').map((e) => e.node!.name).sort(), ['wa', 'wb']);

      const mine = (await Promise.all(before.map(async (name) => ({ name, node: (await call<Placement__Output>((cb) => stub.Locate({ name }, cb))).node })))).find((p) => p.node === 'wa');
      assert.ok(mine !== undefined, `one early file is on wa (nodes: ${[...nodes].join(', ')})`);
      await client.unlink(mine.name);
      await until(() => w.events.slice(synced).some((e) => e.kind === 'REMOVED' && e.placement!.name === mine.name), `REMOVED ${mine.name}`);

      await b.stop();
      b = null;
      await until(() => w.events.slice(synced).some((e) => e.kind === 'NODE_DOWN' && e.node!.name === 'wb'), 'NODE_DOWN wb');
    } finally {
      watch?.cancel();
      stub.close();
      client.close();
      cluster.close();
      await b?.stop();
      await a.stop();
      a.removeDir();
    }
  });

  it('a principal confined to a prefix: Locate outside it is EACCES (placed or not), Watch sends only its names', async () => {
    const tmp = tempDir('daxd-cluster-auth-');
    const authFile = path.join(tmp.dir, 'auth.json');
    const tokens = writeAuthFile(authFile, [{ name: 'admin', role: 'admin' }, { name: 'alice', role: 'rw', prefix: 'alice/' }]);
    let node: Daxd | null = null;
    const stubs: ClusterClient[] = [];
    const clients: DaxClient[] = [];
    let watch: ReturnType<typeof watchAll> | null = null;
    try {
      node = await Daxd.start({
        volumePath: path.join(tmp.dir, 'v.vol'), sizeBytes: 64 * MiB, grpcAddress: '127.0.0.1:0', log: pino({ level: 'silent' }), shutdownGraceMs: 2_000,
        auth: new Authenticator(loadAuthFile(authFile), () => []),
        cluster: { etcdUrls: [etcd.url], nodeName: 'solo', prefix: '/confined', ttlS: TEST_TTL_S },
      });
      const admin = DaxClient.connect(node.grpcAddress, { deadlineMs: 5_000, token: tokens.admin });
      const alice = DaxClient.connect(node.grpcAddress, { deadlineMs: 5_000, token: tokens.alice });
      clients.push(admin, alice);
      const stub = clusterStub(node.grpcAddress);
      stubs.push(stub);
      await admin.create('bob/secret');
      await alice.create('alice/mine');
      await until(async () => (await call<Placement__Output>((cb) => stub.Locate({ name: 'bob/secret' }, as(tokens.admin), cb))).node === 'solo', 'bob/secret placed');

      assert.equal((await call<Placement__Output>((cb) => stub.Locate({ name: 'alice/mine' }, as(tokens.alice), cb))).node, 'solo');
      for (const name of ['bob/secret', 'bob/absent']) {
        const denied = await failure(call((cb) => stub.Locate({ name }, as(tokens.alice), cb)));
        assert.equal(denied.reason, 'EACCES', `Locate ${name} as alice`);
      }

      watch = watchAll(stub, tokens.alice);
      const w = watch;
      await until(() => w.events.some((e) => e.kind === 'SYNCED'), 'Watch SYNCED');
      await admin.create('bob/later');
      await alice.create('alice/later');
      await until(() => w.events.some((e) => e.kind === 'PLACED' && e.placement!.name === 'alice/later' && Number(e.placement!.ino) > 0), 'alice/later PLACED');
      await admin.unlink('bob/secret');
      await alice.unlink('alice/mine');
      await until(() => w.events.some((e) => e.kind === 'REMOVED' && e.placement!.name === 'alice/mine'), 'alice/mine REMOVED');
      // The admin's changes were made before alice's, so they would have arrived first.
      const names = w.events.filter((e) => e.kind === 'PLACED' || e.kind === 'REMOVED').map((e) => e.placement!.name);
      assert.deepEqual([...new Set(names)].sort(), ['alice/later', 'alice/mine']);
    } finally {
      watch?.cancel();
      for (const s of stubs) s.close();
      for (const c of clients) c.close();
      await node?.stop();
      tmp.remove();
    }
  });
});
