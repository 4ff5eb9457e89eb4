/**
 * Cluster membership on a real etcd: refusals at start (EBUSY naming the holder), the
 * Cluster service (Members, Locate, Watch; Drain not built), the start-up reconcile pass,
 * bad flags and an unreachable etcd, and etcd3's calls through daxd's grpc-js hooks.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import pino from 'pino';
import { DaxClient, DaxClientError, loadDaxdProto } from '../../client';
import { Daxd } from '../../server/server';
import type { ClusterClient } from '../../wire/generated/daxd/v1/Cluster';
import type { ClusterEvent__Output } from '../../wire/generated/daxd/v1/ClusterEvent';
import type { MembersResponse__Output } from '../../wire/generated/daxd/v1/MembersResponse';
import type { Placement__Output } from '../../wire/generated/daxd/v1/Placement';
import { frameRepliesInPlace, frameRequestsInPlace } from '../../wire/frame-in-place';
import { assertEtcdInstalled, freePort, startEtcd, type StartedEtcd } from '../support/etcd';
import { call, failure } from '../support/raw-rpc';
import { runCli, tempDir } from '../support/start-server';
import { until } from '../support/until';
import { MiB } from '../support/units';
import { startNode, TEST_TTL_S, type InProcessNode } from './fixture';
import * as grpc from '@grpc/grpc-js';

function clusterStub(address: string): ClusterClient {
  return new (loadDaxdProto().daxd.v1.Cluster)(address, grpc.credentials.createInsecure());
}

/** A file placed on `node`, created through it (names it redirects elsewhere are skipped). */
async function createOn(client: DaxClient, prefix: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    try {
      await client.create(`${prefix}${i}`, { exclusive: true });
      return `${prefix}${i}`;
    } catch (err) {
      if (!(err instanceof DaxClientError && err.reason === 'NOT_OWNER')) throw err;
    }
  }
  assert.fail('no name placed on the node');
}

describe('cluster: membership, the Cluster service, reconcile', function () {
  this.timeout(60_000);
  let etcd: StartedEtcd;
  let a: InProcessNode;
  let b: InProcessNode;
  let kv: Etcd3;
  const tmp = tempDir('daxd-membership-');

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

  it('refuses a second process with a live node\'s name, or with a copy of its volume, with EBUSY naming the holder', async () => {
    await assert.rejects(startNode(etcd.url, 'a'), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'EBUSY');
      assert.match(err.message, /node name a is held by a live registration/);
      return true;
    });
    const copy = path.join(tmp.dir, 'copy-of-a.vol');
    fs.copyFileSync(a.volumePath, copy);
    await assert.rejects(startNode(etcd.url, 'c', { volumePath: copy }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'EBUSY');
      assert.match(err.message, /is held by live node a/);
      return true;
    });
    // Neither refusal touched the holder's registration.
    const stub = clusterStub(b.address);
    try {
      const members = await call<MembersResponse__Output>((cb) => stub.Members({}, cb));
      assert.deepEqual(members.nodes.map((n) => [n.name, n.live]), [['a', true], ['b', true]]);
    } finally {
      stub.close();
    }
  });

  it('a node restarted while its previous run\'s registration (same name, same volume) is leased waits for it to expire', async () => {
    // The volume of node "phoenix", served once alone to learn its uuid.
    const volumePath = path.join(tmp.dir, 'phoenix.vol');
    const lone = await Daxd.start({ volumePath, sizeBytes: 64 * MiB, grpcAddress: '127.0.0.1:0', log: pino({ level: 'silent' }) });
    const uuid = lone.fs.statVolume().uuid;
    await lone.stop();
    // What a kill -9 leaves behind: both keys under a lease nobody renews.
    const lease = kv.lease(TEST_TTL_S, { autoKeepAlive: false });
    const record = { name: 'phoenix', grpc: '127.0.0.1:1', nbd: '', http: '', volumeUuid: uuid, capacity: 1, free: 1, version: 'old', startedAtMs: 1 };
    await lease.put('/daxd/nodes/phoenix').value(JSON.stringify(record));
    await lease.put('/daxd/volumes/' + uuid).value(JSON.stringify({ node: 'phoenix' }));
    const grantedAtMs = Date.now();
    const node = await startNode(etcd.url, 'phoenix', { volumePath });
    const stub = clusterStub(a.address);
    try {
      const waitedMs = Date.now() - grantedAtMs;
      assert.ok(waitedMs >= 1000, `started after ${waitedMs} ms, before the old lease could expire`);
      await until(async () => (await call<MembersResponse__Output>((cb) => stub.Members({}, cb))).nodes.some((n) => n.name === 'phoenix' && n.grpc === node.address), 'phoenix registered anew');
    } finally {
      stub.close();
      await node.stop();
      node.removeDir();
      lease.release();
    }
  });

  it('answers Members, Locate and Watch from its etcd cache; Drain of another node is NOT_OWNER naming it', async () => {
    const stub = clusterStub(a.address);
    const client = DaxClient.connect(a.address, { deadlineMs: 5_000 });
    const watch = stub.Watch({});
    const events: ClusterEvent__Output[] = [];
    watch.on('data', (e: ClusterEvent__Output) => events.push(e));
    watch.on('error', () => undefined);
    try {
      await until(() => events.some((e) => e.kind === 'SYNCED'), 'Watch SYNCED');
      assert.deepEqual(events.filter((e) => e.kind === 'NODE_UP').map((e) => e.node!.name).sort(), ['a', 'b']);
      const name = await createOn(client, 'located/');
      const placement = await call<Placement__Output>((cb) => stub.Locate({ name }, cb));
      assert.equal(placement.node, 'a');
      assert.equal(placement.node_live, true);
      assert.equal(placement.grpc, a.address);
      assert.ok(Number(placement.ino) > 0);
      await until(() => events.some((e) => e.kind === 'PLACED' && e.placement!.name === name && Number(e.placement!.ino) > 0), 'Watch PLACED');
      const missing = await failure(call((cb) => stub.Locate({ name: 'placed-nowhere' }, cb)));
      assert.equal(missing.reason, 'ENOENT');
      const members = await call<MembersResponse__Output>((cb) => stub.Members({}, cb));
      assert.equal(members.self, 'a');
      assert.ok(Number(members.nodes.find((n) => n.name === 'a')!.files) >= 1);
      // The drained node drives its own drain: another node sends the caller there.
      const drain = await new Promise<grpc.ServiceError>((resolve, reject) => {
        const s = stub.Drain({ node: 'b' });
        s.on('data', () => reject(new Error('a Drain of b at a sent progress')));
        s.on('error', resolve);
        s.on('end', () => reject(new Error('a Drain of b at a ended without an error')));
      });
      assert.equal(drain.code, grpc.status.FAILED_PRECONDITION);
      assert.equal(drain.metadata.get('daxd-reason')[0], 'NOT_OWNER');
      assert.equal(drain.metadata.get('daxd-owner-node')[0], 'b');
    } finally {
      watch.cancel();
      client.close();
      stub.close();
    }
  });

  it('NOT_OWNER names the owner in the daxd-owner trailers; Unlink removes the placement after the local unlink', async () => {
    const viaA = DaxClient.connect(a.address, { deadlineMs: 5_000 });
    const viaB = DaxClient.connect(b.address, { deadlineMs: 5_000 });
    try {
      const name = await createOn(viaB, 'owned-by-b/');
      const trailers = await new Promise<grpc.Metadata>((resolve, reject) => {
        viaA.raw.files.Lookup({ name }, (err) => (err ? resolve(err.metadata) : reject(new Error('Lookup at a succeeded'))));
      });
      assert.equal(trailers.get('daxd-reason')[0], 'NOT_OWNER');
      assert.equal(trailers.get('daxd-owner')[0], b.address);
      assert.equal(trailers.get('daxd-owner-node')[0], 'b');
      // Unlink through the wrong node is redirected too, and changes nothing.
      assert.equal((await failure(viaA.unlink(name))).reason, 'NOT_OWNER');
      assert.notEqual(await kv.get(`/daxd/files/${name}`).string(), null);
      await viaB.unlink(name);
      assert.equal(await kv.get(`/daxd/files/${name}`).string(), null);
      assert.equal((await failure(viaB.lookup(name))).reason, 'ENOENT');
      assert.equal((await failure(viaA.lookup(name))).reason, 'ENOENT');
    } finally {
      viaA.close();
      viaB.close();
    }
  });

  it('a server without --etcd answers the Cluster service UNIMPLEMENTED / ENOTSUP', async () => {
    const lone = await Daxd.start({ volumePath: path.join(tmp.dir, 'lone.vol'), sizeBytes: 64 * MiB, grpcAddress: '127.0.0.1:0', log: pino({ level: 'silent' }) });
    const stub = clusterStub(lone.grpcAddress);
    try {
      const err = await failure(call((cb) => stub.Members({}, cb)));
      assert.equal(err.codeName, 'UNIMPLEMENTED');
      assert.equal(err.reason, 'ENOTSUP');
    } finally {
      stub.close();
      await lone.stop();
    }
  });

  it('reconciles at start: a key whose file is gone is removed, a file without a key is registered', async () => {
    const client = DaxClient.connect(b.address, { deadlineMs: 5_000 });
    let keyless: string;
    try {
      keyless = await createOn(client, 'keyless/');
    } finally {
      client.close();
    }
    await b.stop();
    // As after crashes between a local change and its key:
    await kv.put('/daxd/files/ghost').value(JSON.stringify({ node: 'b', ino: 0 }));
    await kv.delete().key(`/daxd/files/${keyless}`);
    const again = await startNode(etcd.url, 'b', { volumePath: b.volumePath });
    const oldB = b;
    b = again;
    const report = again.daxd.cluster!.lastReconcile!;
    assert.deepEqual(report.removed, ['ghost']);
    assert.deepEqual(report.registered, [keyless]);
    assert.equal(await kv.get('/daxd/files/ghost').string(), null);
    assert.equal(JSON.parse((await kv.get(`/daxd/files/${keyless}`).string())!).node, 'b');
    oldB.removeDir = () => undefined; // the restarted node owns the directory now
  });

  it('etcd3 calls work through daxd\'s grpc-js framing hooks (wire/frame-in-place.ts)', async () => {
    assert.equal(frameRepliesInPlace(), true);
    assert.equal(frameRequestsInPlace(), true);
    const value = Buffer.alloc(512 * 1024, 7);
    await kv.put('/wire-check').value(value);
    assert.ok((await kv.get('/wire-check').buffer())!.equals(value));
    const txn = await kv.if('/wire-check', 'Create', '==', 0).then(kv.put('/wire-check').value('x')).commit();
    assert.equal(txn.succeeded, false);
  });

  it('bad flags and an unreachable etcd: a clear error, nothing served', async () => {
    const volume = ['--volume', path.join(tmp.dir, 'cli.vol'), '--size', '16M', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--nbd', 'off'];
    const cases: Array<[string[], RegExp]> = [
      [['--etcd', 'ftp://127.0.0.1:2379', '--node-name', 'x'], /--etcd: "ftp:\/\/127.0.0.1:2379" is not http:\/\/HOST:PORT/],
      [['--etcd', 'not a url', '--node-name', 'x'], /--etcd: "not a url" is not a URL/],
      [['--etcd', 'http://127.0.0.1:2379'], /--node-name: is required with --etcd/],
      [['--etcd', 'http://127.0.0.1:2379', '--node-name', 'a b'], /--node-name: "a b" is not/],
      [['--etcd', 'http://127.0.0.1:2379', '--node-name', 'x', '--node-ttl-s', '1'], /--node-ttl-s: "1" is not a whole number of seconds in \[2, 300\]/],
      [['--node-name', 'x'], /--node-name needs --etcd/],
    ];
    for (const [flags, message] of cases) {
      const result = await runCli(['serve', ...volume, ...flags]);
      assert.equal(result.code, 2, `${flags.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, message);
    }
    const down = `http://127.0.0.1:${await freePort()}`;
    const result = await runCli(['serve', ...volume, '--etcd', down, '--node-name', 'x']);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`cluster: etcd at ${down} did not answer .*is it running\\?`));
  });
});
