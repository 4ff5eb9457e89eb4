/**
 * One measured bulk run, in its own process (bulk.bench.ts spawns it): the SDK and load
 * engine of a given tree (`tree`/dist, so an older build can be driven by its own
 * client next to this one) run one workload against one server, after a short warm-up.
 *
 * Input: one JSON argument (DriverInput). Output: one JSON line (DriverOutput) on stdout.
 * Client CPU is this process's; GC is counted with perf_hooks 'gc' entries.
 */
import path from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import type { LoadOptions } from '../../client/loadtest/load-options';
import type { RunResult } from '../../client/loadtest/runner';

export interface DriverInput {
  tree: string;
  address: string;
  ino: number;
  sizeBytes: number;
  workload: 'seqread' | 'seqwrite';
  bsBytes: number;
  qd: number;
  /** Connections (SDK clients, one channel each), qd ops in flight on each; default 1. */
  clients?: number;
  seconds: number;
  warmupSeconds: number;
}

export interface DriverOutput {
  ops: number;
  opsPerSec: number;
  bytesPerSec: number;
  p50Us: number;
  p99Us: number;
  clientCpuUs: number;
  gcCount: number;
  gcMs: number;
}

interface RunnerModule {
  runLoad(options: LoadOptions, hooks: object, prepared: { files: object[] } | null): Promise<RunResult>;
}
interface OptionsModule {
  DEFAULT_LOAD_OPTIONS: Omit<LoadOptions, 'address' | 'seed'>;
}

async function main(): Promise<void> {
  const input = JSON.parse(process.argv[2]) as DriverInput;
  const dist = path.join(input.tree, 'dist', 'client', 'loadtest');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { runLoad } = require(path.join(dist, 'runner.js')) as RunnerModule;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { DEFAULT_LOAD_OPTIONS } = require(path.join(dist, 'load-options.js')) as OptionsModule;
  const file = { index: 0, ino: input.ino, name: 'bulk.data', pages: input.sizeBytes / 4096, sizeBytes: input.sizeBytes };
  const options = (seconds: number): LoadOptions => ({
    ...DEFAULT_LOAD_OPTIONS, address: input.address, workload: input.workload, clients: input.clients ?? 1, qd: input.qd, bsBytes: input.bsBytes,
    sizeBytes: input.sizeBytes, files: 1, durationMs: seconds * 1000, opsMax: null, seed: 1, verify: false, mixPct: 50, batch: 64,
    sampleMs: 500, progress: false,
  });
  await runLoad(options(input.warmupSeconds), {}, { files: [file] });
  let gcCount = 0;
  let gcMs = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcCount++;
      gcMs += entry.duration;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  process.stdout.write(`${JSON.stringify({ phase: 'measure' })}\n`);
  const cpu0 = process.cpuUsage();
  const r = await runLoad(options(input.seconds), {}, { files: [file] });
  const cpu = process.cpuUsage(cpu0);
  // Entries are delivered asynchronously: one turn of the loop lets the last ones in.
  await new Promise((resolve) => setImmediate(resolve));
  observer.disconnect();
  if (!r.passed) throw new Error(`bulk run failed: ${JSON.stringify(r.errors)}`);
  const out: DriverOutput = {
    ops: r.total.ops, opsPerSec: r.total.opsPerSec, bytesPerSec: r.total.bytesPerSec, p50Us: r.total.latencyUs.p50, p99Us: r.total.latencyUs.p99,
    clientCpuUs: cpu.user + cpu.system, gcCount, gcMs,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().then(() => process.exit(0), (err: unknown) => {
  console.error(err);
  process.exit(1);
});
