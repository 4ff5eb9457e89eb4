/**
 * npm run bench:cluster — reads through DaxCluster over 1, 2 and 3 real `daxd serve
 * --etcd` nodes (child processes) on one real etcd, and the routing cost of DaxCluster
 * over DaxClient direct on one node.
 *
 * Cases: 4 KiB reads at queue depth 64 and 1 MiB reads at QD 4, at random aligned offsets
 * of FILES_PER_NODE × nodes files of FILE_BYTES each (spread by the servers' placement).
 * Each case runs BENCH_SECONDS (default 2). Everything shares this machine's cores, so
 * the scaling ratio says how much the servers' work spreads, not what separate machines
 * would give: the client alone (one Node process) is a bottleneck at ~1 core.
 * Prints a table and one JSON line.
 */
import { DaxCluster, type ClusterFileInfo } from '../../client';
import { startEtcd } from '../support/etcd';
import { tempDir, type StartedServer } from '../support/start-server';
import { MiB } from '../support/units';
import { startNodeProcess } from '../cluster/fixture';
import path from 'node:path';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const FILES_PER_NODE = 8;
const FILE_BYTES = 4 * MiB;
const KIB4 = 4096;
const WARMUP_SECONDS = 0.5;

interface Row { case: string; nodes: number; via: string; opsPerSec: number; mbPerSec: number }

/** A warm-up of WARMUP_SECONDS (discarded), then SECONDS measured. */
async function run(qd: number, sizeBytes: number, read: (i: number, offset: number) => Promise<unknown>, files: number): Promise<{ opsPerSec: number; mbPerSec: number }> {
  await runFor(WARMUP_SECONDS, qd, sizeBytes, read, files);
  return runFor(SECONDS, qd, sizeBytes, read, files);
}

async function runFor(seconds: number, qd: number, sizeBytes: number, read: (i: number, offset: number) => Promise<unknown>, files: number): Promise<{ opsPerSec: number; mbPerSec: number }> {
  const endAt = Date.now() + seconds * 1000;
  let ops = 0;
  let seed = 1;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  await Promise.all([...Array(qd).keys()].map(async () => {
    while (Date.now() < endAt) {
      const i = next() % files;
      const offset = (next() % (FILE_BYTES / sizeBytes)) * sizeBytes;
      await read(i, offset);
      ops++;
    }
  }));
  return { opsPerSec: Math.round(ops / seconds), mbPerSec: Math.round((ops * sizeBytes) / seconds / MiB) };
}

async function main(): Promise<void> {
  const etcd = await startEtcd();
  const tmp = tempDir('daxd-bench-cluster-');
  const servers: StartedServer[] = [];
  const rows: Row[] = [];
  try {
    for (let nodes = 1; nodes <= 3; nodes++) {
      servers.push(await startNodeProcess(etcd.url, `n${nodes}`, path.join(tmp.dir, `n${nodes}.vol`), 10, '512M'));
      const cluster = DaxCluster.connect({ seeds: servers.map((s) => s.address) });
      const files: ClusterFileInfo[] = [];
      const count = FILES_PER_NODE * nodes;
      for (let i = 0; i < count; i++) {
        const file = await cluster.create(`bench-${nodes}-${i}`);
        await cluster.write(file, 0, Buffer.alloc(FILE_BYTES, i));
        files.push(file);
      }
      const clients = await Promise.all(files.map((f) => cluster.clientOf(f)));
      for (const [label, qd, size] of [['4 KiB QD64', 64, KIB4], ['1 MiB QD4', 4, MiB]] as const) {
        // Direct first on one node: the cluster run then finds the connection as warm as it was.
        const direct = await run(qd, size, (i, offset) => clients[i].read(files[i].ino, offset, size), count);
        rows.push({ case: label, nodes, via: 'DaxClient', ...direct });
        const r = await run(qd, size, (i, offset) => cluster.read(files[i], offset, size), count);
        rows.push({ case: label, nodes, via: 'DaxCluster', ...r });
      }
      cluster.close();
    }
  } finally {
    for (const s of servers) await s.stop();
    await etcd.stop();
    tmp.remove();
  }
  console.log('case         nodes  via         ops/s     MiB/s');
  for (const r of rows) console.log(`${r.case.padEnd(12)} ${String(r.nodes).padEnd(6)} ${r.via.padEnd(11)} ${String(r.opsPerSec).padStart(8)} ${String(r.mbPerSec).padStart(8)}`);
  console.log(JSON.stringify({ bench: 'cluster', seconds: SECONDS, rows }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
