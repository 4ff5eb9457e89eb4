/**
 * Self-fencing of cluster nodes (in this process: the keep-alive failpoint is reachable),
 * on a real etcd with a 3 s lease: mutating calls answer UNAVAILABLE / FENCED from ⅔ TTL
 * after the last renewal, while the lease still exists in etcd; reads go on; the node
 * recovers by itself once keep-alives get through again.
 */
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { DaxClient, DaxClientError } from '../../client';
import { assertEtcdInstalled, startEtcd, type StartedEtcd } from '../support/etcd';
import { RawNbd, W } from '../support/raw-nbd';
import { until } from '../support/until';
import { startNode, TEST_TTL_S, type InProcessNode } from './fixture';

const TTL_MS = TEST_TTL_S * 1000;

describe('cluster: fencing', function () {
  this.timeout(60_000);
  let etcd: StartedEtcd;
  let a: InProcessNode;
  let b: InProcessNode;
  let client: DaxClient;
  let ino: number;
  let mine: string;
  /** NOT_OWNER answers a gave in before(). */
  let redirectsSeen = 0;
  let kv: Etcd3;

  before(async function () {
    assertEtcdInstalled();
    etcd = await startEtcd();
    a = await startNode(etcd.url, 'a', { nbd: true });
    b = await startNode(etcd.url, 'b');
    kv = new Etcd3({ hosts: etcd.url });
    client = DaxClient.connect(a.address, { deadlineMs: 5_000 });
    // A file on a: the first name a places on itself.
    for (let i = 0; ; i++) {
      assert.ok(i < 100, 'a places no name on itself');
      try {
        mine = `mine/${i}`;
        ino = (await client.create(mine, { exclusive: true })).ino;
        break;
      } catch (err) {
        if (!(err instanceof DaxClientError && err.reason === 'NOT_OWNER')) throw err;
        redirectsSeen++;
      }
    }
    await client.write(ino, 0, Buffer.from('before'));
  });

  after(async () => {
    client?.close();
    kv?.close();
    for (const n of [a, b]) if (n) { await n.stop(); n.removeDir(); }
    await etcd?.stop();
  });

  /** A sample of a metric of the node's registry (the value of the sample with these labels). */
  async function gauge(node: InProcessNode, name: string, labels: Record<string, string> = {}): Promise<number> {
    const metric = (await node.daxd.metrics.registry.getSingleMetric(name)!.get());
    const sample = metric.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x));
    return sample?.value ?? NaN;
  }

  /** The reason of a one-byte write to a's file, or 'OK'. */
  async function writeOutcome(): Promise<string> {
    try {
      await client.write(ino, 0, Buffer.from('x'));
      return 'OK';
    } catch (err) {
      if (err instanceof DaxClientError) return `${err.codeName}/${err.reason}`;
      throw err;
    }
  }

  it('keep-alives dropped (failpoint): FENCED at ⅔ TTL while the lease still exists, reads go on; re-registers when they resume', async () => {
    const membership = a.daxd.cluster!.registration!;
    a.daxd.cluster!.dropKeepAlives(true);
    try {
      await fencedAndDown(membership);
    } finally {
      a.daxd.cluster!.dropKeepAlives(false);
    }
    await until(async () => (await writeOutcome()) === 'OK', 'a taking writes again', 3 * TTL_MS);
    assert.ok((await kv.get('/daxd/nodes/a').string()) !== null, 'a registered again');
    assert.equal(await gauge(a, 'daxd_cluster_fenced'), 0);
  });

  async function fencedAndDown(membership: { fencedAtMs: number; lastRenewalSentAtMs: number }): Promise<void> {
    await until(async () => (await writeOutcome()) === 'UNAVAILABLE/FENCED', 'a fenced', 2 * TTL_MS);
    const fencedAfterMs = membership.fencedAtMs - membership.lastRenewalSentAtMs;
    console.log(`      fenced ${fencedAfterMs} ms after the last renewal was sent (TTL ${TTL_MS} ms)`);
    assert.ok(fencedAfterMs >= (2 / 3) * TTL_MS - 50 && fencedAfterMs < TTL_MS, `fenced after ${fencedAfterMs} ms`);
    // The lease had not expired when a fenced: its registration was still in etcd.
    assert.notEqual(await kv.get('/daxd/nodes/a').string(), null, 'a fenced before its registration expired');
    assert.equal(await gauge(a, 'daxd_cluster_fenced'), 1);
    // Every mutating kind is refused; reads are not.
    await assert.rejects(client.create('while-fenced'), (err: DaxClientError) => err.reason === 'FENCED' && err.codeName === 'UNAVAILABLE');
    await assert.rejects(client.truncate(ino, 0), (err: DaxClientError) => err.reason === 'FENCED');
    // NBD too: WRITE, TRIM and WRITE_ZEROES fail (NBD_EIO, FENCED in the message); READ runs.
    const nbd = await RawNbd.connect(a.daxd.nbdAddress!);
    try {
      await nbd.greet();
      await nbd.go(mine, { structured: true });
      for (const type of [W.NBD_CMD_WRITE, W.NBD_CMD_TRIM, W.NBD_CMD_WRITE_ZEROES]) {
        const outcome = await nbd.command(type, type === W.NBD_CMD_WRITE ? { offset: 0, data: Buffer.from('n') } : { offset: 0, length: 1 });
        assert.equal(outcome.error, W.NBD_EIO, `command ${type}`);
        assert.match(outcome.message, /FENCED/);
      }
      assert.equal((await nbd.read(0, 6)).toString(), 'xefore');
    } finally {
      nbd.end();
    }
    // Dma.Stream is admitted as a reader: its writing ops are fenced one by one, its reads run.
    const session = await client.openSession();
    try {
      await assert.rejects(client.dma.writeCycle(session, ino, 0, 1, { page: 0, offset: 0, data: Buffer.from('d') }), (err: DaxClientError) => err.reason === 'FENCED');
      assert.equal((await client.dma.readCycle(session, ino, 0, 1, { page: 0, offset: 0, length: 6 })).toString(), 'xefore');
    } finally {
      await session.close();
    }
    // The polls above wrote 'x' until the fence: the reads see it.
    assert.equal((await client.read(ino, 0, 6)).toString(), 'xefore');
    assert.equal((await client.stat(ino)).size, 6);
    // The lease runs out: the others see a as down.
    const others = DaxClient.connect(b.address, { deadlineMs: 5_000 });
    try {
      await until(async () => {
        try {
          await others.lookup(mine);
          assert.fail('a lookup at b of a file of a succeeded');
        } catch (err) {
          if (!(err instanceof DaxClientError)) throw err;
          if (err.reason !== 'NODE_DOWN') assert.equal(err.reason, 'NOT_OWNER');
          return err.reason === 'NODE_DOWN';
        }
      }, 'b seeing a down', 3 * TTL_MS);
      assert.ok(Date.now() - membership.lastRenewalSentAtMs >= TTL_MS - 100, 'b saw a down only once its lease could have expired');
      assert.equal(await gauge(b, 'daxd_cluster_nodes', { state: 'down' }), 1);
      assert.equal(await gauge(b, 'daxd_cluster_nodes', { state: 'live' }), 1);
      assert.equal(await gauge(a, 'daxd_cluster_redirects_total'), redirectsSeen);
    } finally {
      others.close();
    }
  }

  it('etcd frozen (SIGSTOP): every node fences before its lease could expire, reads go on; SIGCONT, and they recover', async () => {
    await until(async () => (await writeOutcome()) === 'OK', 'a unfenced', 3 * TTL_MS);
    const pausedAtMs = Date.now();
    etcd.pause();
    try {
      await until(async () => (await writeOutcome()) === 'UNAVAILABLE/FENCED', 'a fenced', 2 * TTL_MS);
      const fencedMs = Date.now() - pausedAtMs;
      console.log(`      fenced ${fencedMs} ms after etcd was frozen (TTL ${TTL_MS} ms)`);
      assert.ok(fencedMs < TTL_MS, `fenced after ${fencedMs} ms`);
      assert.ok(b.daxd.cluster!.fenced, 'b fenced too');
      assert.equal((await client.read(ino, 0, 1)).toString(), 'x');
    } finally {
      etcd.resume();
    }
    await until(async () => (await writeOutcome()) === 'OK', 'a taking writes after SIGCONT', 4 * TTL_MS);
    await until(() => !b.daxd.cluster!.fenced, 'b unfenced', 4 * TTL_MS);
  });
});
