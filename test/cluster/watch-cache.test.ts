/**
 * The watch cache across a lost etcd connection (a TCP proxy between node a and etcd):
 * while the proxy is cut, a node goes down, a placement is removed, another is made, and
 * etcd compacts past them all. etcd cancels a watch that resumes at a compacted revision,
 * so the cache must load a fresh snapshot and pass the differences on as events (Members,
 * Locate and Watch subscribers see them), then watch again from there.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { Etcd3 } from 'etcd3';
import { loadDaxdProto } from '../../client';
import type { ClusterClient } from '../../wire/generated/daxd/v1/Cluster';
import type { ClusterEvent__Output } from '../../wire/generated/daxd/v1/ClusterEvent';
import type { MembersResponse__Output } from '../../wire/generated/daxd/v1/MembersResponse';
import type { Placement__Output } from '../../wire/generated/daxd/v1/Placement';
import { assertEtcdInstalled, startEtcd, type StartedEtcd } from '../support/etcd';
import { call, failure } from '../support/raw-rpc';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy';
import { until } from '../support/until';
import { startNode, TEST_TTL_S, type InProcessNode } from './fixture';

const TTL_MS = TEST_TTL_S * 1000;

describe('cluster: watch cache', function () {
  this.timeout(60_000);
  let etcd: StartedEtcd;
  let proxy: TcpProxy;
  let a: InProcessNode;
  let kv: Etcd3;
  let stub: ClusterClient;

  before(async function () {
    assertEtcdInstalled();
    etcd = await startEtcd();
    proxy = await startTcpProxy(Number(new URL(etcd.url).port));
    a = await startNode(proxy.url, 'a');
    kv = new Etcd3({ hosts: etcd.url });
    stub = new (loadDaxdProto().daxd.v1.Cluster)(a.address, grpc.credentials.createInsecure());
  });

  after(async () => {
    stub?.close();
    kv?.close();
    if (a) { await a.stop(); a.removeDir(); }
    await proxy?.close();
    await etcd?.stop();
  });

  it('after a cut during which etcd compacted past the changes: a node shows down, a removed name ENOENT, Watch sees both, within a bound', async () => {
    // A node "ghost" (its own lease) holding two files; a sees it live.
    const lease = kv.lease(60, { autoKeepAlive: false });
    const record = { name: 'ghost', grpc: '127.0.0.1:1', nbd: '', http: '', volumeUuid: 'ghost-volume', capacity: 1, free: 1, version: 'test', startedAtMs: 1 };
    await lease.put('/daxd/nodes/ghost').value(JSON.stringify(record));
    await kv.put('/daxd/files/ghost-stays').value(JSON.stringify({ node: 'ghost', ino: 7 }));
    await kv.put('/daxd/files/ghost-gone').value(JSON.stringify({ node: 'ghost', ino: 8 }));
    const watch = stub.Watch({});
    const events: ClusterEvent__Output[] = [];
    watch.on('data', (e: ClusterEvent__Output) => events.push(e));
    watch.on('error', () => undefined);
    try {
      await until(async () => {
        const members = await call<MembersResponse__Output>((cb) => stub.Members({}, cb));
        return members.nodes.some((n) => n.name === 'ghost' && n.live && Number(n.files) === 2);
      }, 'a seeing ghost and its files');
      await until(() => events.some((e) => e.kind === 'SYNCED'), 'Watch SYNCED');
      proxy.cut();
      // While a cannot hear: ghost goes down, one of its names is removed, a new one placed, and etcd compacts.
      await lease.revoke();
      await kv.delete().key('/daxd/files/ghost-gone');
      const last = await kv.put('/daxd/files/made-meanwhile').value(JSON.stringify({ node: 'ghost', ino: 9 }));
      await kv.kv.compact({ revision: last.header.revision, physical: true });
      const restoredAtMs = Date.now();
      proxy.restore();
      await until(async () => {
        const members = await call<MembersResponse__Output>((cb) => stub.Members({}, cb));
        return members.nodes.some((n) => n.name === 'ghost' && !n.live);
      }, 'a seeing ghost down', 3 * TTL_MS);
      assert.equal((await failure(call((cb) => stub.Locate({ name: 'ghost-gone' }, cb)))).reason, 'ENOENT');
      const made = await call<Placement__Output>((cb) => stub.Locate({ name: 'made-meanwhile' }, cb));
      assert.equal(made.node, 'ghost');
      assert.equal(made.node_live, false);
      console.log(`      caught up ${Date.now() - restoredAtMs} ms after the proxy was restored`);
      // Watch subscribers were told, as for any change.
      await until(() => events.some((e) => e.kind === 'NODE_DOWN' && e.node!.name === 'ghost'), 'Watch NODE_DOWN ghost');
      await until(() => events.some((e) => e.kind === 'REMOVED' && e.placement!.name === 'ghost-gone'), 'Watch REMOVED ghost-gone');
      await until(() => events.some((e) => e.kind === 'PLACED' && e.placement!.name === 'made-meanwhile'), 'Watch PLACED made-meanwhile');
      // And the cache watches again: a later change arrives.
      await kv.delete().key('/daxd/files/ghost-stays');
      await until(async () => {
        try {
          await call((cb) => stub.Locate({ name: 'ghost-stays' }, cb));
          return false;
        } catch {
          return true;
        }
      }, 'a seeing a change made after the catch-up', 3 * TTL_MS);
    } finally {
      watch.cancel();
      lease.release();
    }
  });
});
