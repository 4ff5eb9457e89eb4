/**
 * A namespace whose placements do not fit one etcd reply: grpc-js refuses replies over
 * 4 MiB, so a single range read of the prefix failed and no node could start. Loads of the
 * whole prefix are paged (server/cluster/etcd.ts readPrefix), all at one revision.
 */
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import pino from 'pino';
import { etcdClient, readPrefix } from '../../server/cluster/etcd';
import { ClusterKeys } from '../../server/cluster/keys';
import { WatchCache } from '../../server/cluster/watch-cache';
import { assertEtcdInstalled, startEtcd, type StartedEtcd } from '../support/etcd';
import { MiB } from '../support/units';
import { startNode } from './fixture';

/** Placements of node "far": long names and padded records (still under ETCD_RECORD_BYTES_MAX), over 4 MiB in all. */
const PLACEMENTS = 1_600;
const PAD_BYTES = 3_000;
const PER_TXN = 100;

describe('cluster: a namespace larger than one etcd reply', function () {
  this.timeout(60_000);
  let etcd: StartedEtcd;
  let kv: Etcd3;
  const keys = new ClusterKeys('/daxd');

  before(async function () {
    assertEtcdInstalled();
    etcd = await startEtcd();
    kv = new Etcd3({ hosts: etcd.url });
    const value = JSON.stringify({ node: 'far', ino: 1, pad: 'p'.repeat(PAD_BYTES) });
    let bytes = 0;
    for (let i = 0; i < PLACEMENTS; i += PER_TXN) {
      const puts = [];
      for (let j = i; j < i + PER_TXN; j++) {
        const key = keys.file(`dataset/${String(j).padStart(6, '0')}/${'n'.repeat(200)}`);
        bytes += key.length + value.length;
        puts.push(kv.put(key).value(value));
      }
      await kv.if('/unused', 'Create', '==', 0).then(...puts).commit();
    }
    assert.ok(bytes > 4 * MiB, `only ${bytes} bytes of placements`);
  });

  after(async () => {
    kv?.close();
    await etcd?.stop();
  });

  it('the watch cache loads it, and a node starts (cache and reconcile)', async () => {
    const client = etcdClient([etcd.url]);
    try {
      const cache = await WatchCache.start(client, keys, pino({ level: 'silent' }));
      assert.equal(cache.files.size, PLACEMENTS);
      assert.equal(cache.filesPerNode.get('far'), PLACEMENTS);
      await cache.stop();
    } finally {
      client.close();
    }
    const a = await startNode(etcd.url, 'a');
    try {
      assert.equal(a.daxd.cluster!.cache.files.size, PLACEMENTS);
      assert.deepEqual(a.daxd.cluster!.lastReconcile!.conflicts, []);
    } finally {
      await a.stop();
      a.removeDir();
    }
  });

  it('readPrefix with small pages: every key once, in order, at the revision of its first page', async () => {
    const client = etcdClient([etcd.url]);
    try {
      const revision = (await kv.put('/daxd/marker').value('1')).header.revision;
      const snapshot = await readPrefix(client, keys.files, 64);
      assert.equal(snapshot.revision, revision);
      const names = snapshot.kvs.map((x: { key: Buffer }) => x.key.toString('utf8'));
      assert.equal(names.length, PLACEMENTS);
      assert.deepEqual(names, [...names].sort());
      assert.equal(new Set(names).size, PLACEMENTS);
    } finally {
      client.close();
    }
  });
});
