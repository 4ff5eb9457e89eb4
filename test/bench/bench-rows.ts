/**
 * Rows of bench modules of their own (not daxd-load cases) for `npm run bench`: the shape
 * of a row, what a module is given, and the modules bench-all.ts's EXTRA_ROWS lists. A
 * module runs once, after the rounds, and its rows go to the second table and the JSON.
 */
import fs from 'node:fs';
import path from 'node:path';
import { runInProcess } from './faults-inprocess';

/**
 * A row of a bench module of its own (not a daxd-load case): its figures as they are, one
 * value per target it measured. `ref` is what the row is compared with (d/ref column).
 */
export interface BenchRow {
  id: string;
  label: string;
  unit: string;
  daxd: number;
  /** The same measured against the --before build, when the module can. */
  before?: number;
  ref?: { name: string; value: number };
  clientCpuUsPerOp?: number;
  serverCpuUsPerOp?: number;
}

/** What a row module gets: where to put files, how long to run, how to log, the --before build. */
export interface RowContext {
  tmpDir: string;
  seconds: number;
  rounds: number;
  beforeDir: string | null;
  log(line: string): void;
}

export type RowSource = (ctx: RowContext) => Promise<BenchRow[]>;

/** In-process faults (server/dax driven directly, faults-inprocess.ts), a short configuration. */
export async function faultsInProcessRows(ctx: RowContext): Promise<BenchRow[]> {
  const dir = fs.mkdtempSync(path.join(ctx.tmpDir, 'faults-'));
  const r = await runInProcess({
    reps: ctx.rounds, holePages: 8_192, allocPages: 4_096, mappedPasses: 2, lockOps: 50_000, faulters: 64, faultsPerFaulter: 100, memoryEntries: 50_000,
  }, dir, ctx.log);
  return [
    { id: 'faults-inprocess-read-hole', label: 'in-process READ faults on holes', unit: 'faults/s', daxd: r.readHoleFaultsPerSec, ref: { name: 'target', value: 500_000 } },
    { id: 'faults-inprocess-write-allocate', label: 'in-process WRITE faults allocating', unit: 'faults/s', daxd: r.writeAllocateFaultsPerSec },
    { id: 'faults-inprocess-mapped', label: 'in-process faults on mapped pages', unit: 'faults/s', daxd: r.mappedFaultsPerSec, ref: { name: 'target', value: 500_000 } },
  ];
}
