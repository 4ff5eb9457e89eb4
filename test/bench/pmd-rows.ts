/**
 * PMD fault rows for `npm run bench` (bench-all.ts EXTRA_ROWS), next to the 4 KiB (PTE)
 * faults of the same kind, per 4 KiB of address space covered: one PMD fault covers
 * PMD_PAGES pages, one PTE fault one page. In process (server/dax driven directly, on an
 * mmapped volume), this build only: an older build has no PMD faults to compare. Kinds:
 *   - READ on holes (the huge zero page vs. the zero page per page);
 *   - WRITE allocating (one aligned zeroed 2 MiB extent vs. one zeroed block per page);
 *   - READ on mapped pages (a written file; a fresh session per pass, so every fault
 *     installs a new PTE).
 * PTE and PMD passes alternate; figures are medians of `reps`.
 *
 *   node dist/test/bench/pmd-rows.js [--rounds N]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Dax } from '../../server/dax/dax';
import type { FaultSize } from '../../server/dax/fault';
import { FileSystem } from '../../server/fs/filesystem';
import { mkfs } from '../../server/fs/mkfs';
import { PMD_BYTES, PMD_PAGES } from '../../server/limits';
import { MmapStorage } from '../../server/media/mmap-storage';
import type { BenchRow, RowContext } from './bench-rows';
import { TestOwner } from '../support/test-owner';

/** Pages of each file faulted in one pass: 64 MiB, 32 PMD faults or 16,384 PTE faults. */
const PASS_PAGES = 16_384;
const VOLUME_BYTES = 4 * 2 ** 30;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface PmdFigures {
  readHole: Record<FaultSize, number>;
  writeAllocate: Record<FaultSize, number>;
  mapped: Record<FaultSize, number>;
  fallbacks: number;
}

/** Faults one pass of `size` over pages [0, PASS_PAGES) of `ino`; 4 KiB pages covered per second. */
async function pass(dax: Dax, ino: number, kind: 'READ' | 'WRITE', size: FaultSize): Promise<number> {
  const o = new TestOwner(`bench-${size}`);
  const step = size === 'PMD' ? PMD_PAGES : 1;
  const t0 = process.hrtime.bigint();
  for (let pg = 0; pg < PASS_PAGES; pg += step) {
    const r = await dax.fault(o, ino, pg, kind, false, size);
    if (r.fallback !== undefined) throw new Error(`PMD fault at ${pg} fell back (${r.fallback}): the bench measures PMD entries`);
  }
  const rate = PASS_PAGES / (Number(process.hrtime.bigint() - t0) / 1e9);
  await o.end();
  return rate;
}

export async function measurePmd(reps: number, dir: string, log: (line: string) => void): Promise<PmdFigures> {
  const storage = MmapStorage.open(path.join(dir, 'pmd.vol'), { create: { sizeBytes: VOLUME_BYTES } });
  await mkfs(storage);
  const fsys = await FileSystem.mount(storage);
  const dax = new Dax(fsys);
  const sizes: FaultSize[] = ['PAGE', 'PMD'];
  const runs = { readHole: { PAGE: [] as number[], PMD: [] as number[] }, writeAllocate: { PAGE: [] as number[], PMD: [] as number[] }, mapped: { PAGE: [] as number[], PMD: [] as number[] } };
  let files = 0;
  const fresh = async (): Promise<number> => {
    const { ino } = await fsys.create(`f${files++}`, true);
    await fsys.truncate(ino, PASS_PAGES * 4096);
    return ino;
  };
  try {
    // The mapped file: written through one PMD write fault per 2 MiB, so its extents are aligned.
    const mapped = await fresh();
    await pass(dax, mapped, 'WRITE', 'PMD');
    await dax.fsync(mapped, false);
    for (let r = 0; r < reps; r++) {
      for (const size of r % 2 === 0 ? sizes : [...sizes].reverse()) {
        const hole = await fresh();
        runs.readHole[size].push(await pass(dax, hole, 'READ', size));
        const alloc = await fresh();
        runs.writeAllocate[size].push(await pass(dax, alloc, 'WRITE', size));
        await dax.fsync(alloc, false);
        runs.mapped[size].push(await pass(dax, mapped, 'READ', size));
        for (const name of [`f${files - 2}`, `f${files - 1}`]) await fsys.unlink(name);
        log(`pmd rows: rep ${r + 1} ${size}: hole ${Math.round(runs.readHole[size].at(-1)!)}, allocate ${Math.round(runs.writeAllocate[size].at(-1)!)}, mapped ${Math.round(runs.mapped[size].at(-1)!)} pages/s`);
      }
    }
    const med = (k: keyof typeof runs): Record<FaultSize, number> => ({ PAGE: median(runs[k].PAGE), PMD: median(runs[k].PMD) });
    return { readHole: med('readHole'), writeAllocate: med('writeAllocate'), mapped: med('mapped'), fallbacks: dax.counters().faults.pmd_fallback };
  } finally {
    await fsys.unmount();
  }
}

export async function pmdRows(ctx: RowContext): Promise<BenchRow[]> {
  const dir = fs.mkdtempSync(path.join(ctx.tmpDir, 'pmd-'));
  try {
    const f = await measurePmd(Math.max(3, ctx.rounds), dir, ctx.log);
    const row = (id: string, label: string, k: 'readHole' | 'writeAllocate' | 'mapped'): BenchRow => ({
      id, label: `${label} (per 4 KiB covered; ref: PTE faults)`, unit: 'pages/s', daxd: f[k].PMD, ref: { name: 'PTE', value: f[k].PAGE },
    });
    return [
      row('pmd-inprocess-read-hole', 'in-process PMD READ faults on holes', 'readHole'),
      row('pmd-inprocess-write-allocate', 'in-process PMD WRITE faults allocating', 'writeAllocate'),
      row('pmd-inprocess-mapped', 'in-process PMD READ faults on mapped 2 MiB', 'mapped'),
    ];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const rounds = argv.includes('--rounds') ? Number(argv[argv.indexOf('--rounds') + 1]) : 5;
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'daxd-pmd-rows-'));
  pmdRows({ tmpDir, seconds: 0, rounds, beforeDir: null, log: (s) => process.stderr.write(`${s}\n`) })
    .then((rows) => {
      const lines = rows.map((r) => `${r.label}: PMD ${Math.round(r.daxd).toLocaleString('en-US')} vs PTE ${Math.round(r.ref!.value).toLocaleString('en-US')} pages/s = ${(r.daxd / r.ref!.value).toFixed(1)}x`);
      process.stdout.write(`load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}; ${PMD_BYTES / 2 ** 20} MiB per PMD fault\n${lines.join('\n')}\n${JSON.stringify({ bench: 'pmd-rows', loadAverage: os.loadavg(), rows })}\n`);
    })
    .catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    })
    .finally(() => fs.rmSync(tmpDir, { recursive: true, force: true }));
}
