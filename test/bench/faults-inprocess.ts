/**
 * The in-process half of `npm run bench:faults`: server/dax driven directly (no gRPC) on a
 * real volume file (MmapStorage, sparse, in a temp dir), failpoints disabled as in
 * production. Each figure is the median of `reps` runs.
 *
 * - read-hole: READ faults on a sparse file, each page once (a ZERO entry + a PTE each).
 * - write-allocate: WRITE faults on a sparse file, each page once (allocate + zero a block).
 * - mapped: READ faults on pages whose entries are MAPPED already (the common fault).
 * - entry lock: lockEntry + unlockEntry on an uncontended entry (async, awaited) and
 *   tryLockEntry + unlockEntry (the synchronous fast path).
 * - 64 faulters: 64 sessions fault the same MAPPED index concurrently; throughput, and
 *   wait per fault (call to return) max and p99; then how long dropping their PTEs takes.
 * - memory: growth of the heap plus ArrayBuffer stores per entry for 1M READ-faulted
 *   entries with one PTE each, and per entry without PTE (1M entries installed under
 *   their locks, no session).
 */
import fs from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Dax } from '../../server/dax/dax';
import { lockEntry, tryLockEntry, unlockEntry } from '../../server/dax/entry-lock';
import type { InvalidateNotice, MappingOwner } from '../../server/dax/owner';
import { FileSystem } from '../../server/fs/filesystem';
import { mkfs } from '../../server/fs/mkfs';
import { MmapStorage } from '../../server/media/mmap-storage';
import { PAGE } from '../support/units';

export interface InProcessConfig {
  reps: number;
  holePages: number;
  allocPages: number;
  mappedPasses: number;
  lockOps: number;
  faulters: number;
  faultsPerFaulter: number;
  memoryEntries: number;
}

export interface InProcessResult {
  readHoleFaultsPerSec: number;
  writeAllocateFaultsPerSec: number;
  mappedFaultsPerSec: number;
  entryLockAwaitNsPerOp: number;
  entryLockSyncNsPerOp: number;
  contended: { faulters: number; faultsPerSec: number; waitMaxMs: number; waitP99Ms: number; ptesDroppedMs: number };
  memory: { entries: number; bytesPerEntryWithPte: number; bytesPerEntryOnly: number };
}

/** A session as the dax layer sees it, minus the network. */
class BenchOwner implements MappingOwner {
  private next = 1;
  private readonly resources = new Map<number, { release(reason: string): void | Promise<void> }>();
  constructor(readonly id: string) {}
  notify(_event: InvalidateNotice): void {}
  attach(resource: { release(reason: string): void | Promise<void> }): number {
    const handle = this.next++;
    this.resources.set(handle, resource);
    return handle;
  }
  detach(handle: number): boolean {
    return this.resources.delete(handle);
  }
  async end(): Promise<void> {
    const all = [...this.resources.values()];
    this.resources.clear();
    for (const r of all) await r.release('closed');
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function gcNow(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

async function volume(dir: string, sizeBytes: number): Promise<{ fs: FileSystem; dax: Dax; close(): Promise<void> }> {
  const storage = MmapStorage.open(path.join(dir, 'faults.vol'), { create: { sizeBytes } });
  await mkfs(storage);
  const fileSystem = await FileSystem.mount(storage);
  const dax = new Dax(fileSystem);
  return { fs: fileSystem, dax, close: () => fileSystem.unmount() };
}

async function timeFaults(dax: Dax, owner: MappingOwner, ino: number, pages: number, kind: 'READ' | 'WRITE'): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let pg = 0; pg < pages; pg++) await dax.fault(owner, ino, pg, kind, false);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export async function runInProcess(cfg: InProcessConfig, tmpDir: string, log: (s: string) => void): Promise<InProcessResult> {
  const gc = gcNow();
  const v = await volume(tmpDir, 2 * 1024 * 1024 * 1024);
  try {
    // ---- read-hole and write-allocate: a fresh sparse file per repetition.
    const hole: number[] = [];
    const alloc: number[] = [];
    let mappedIno = 0;
    for (let r = 0; r < cfg.reps; r++) {
      const holes = (await v.fs.create(`holes-${r}`, true)).ino;
      await v.fs.truncate(holes, cfg.holePages * PAGE);
      const ro = new BenchOwner(`hole-${r}`);
      hole.push(cfg.holePages / (await timeFaults(v.dax, ro, holes, cfg.holePages, 'READ')));
      await ro.end();

      const target = (await v.fs.create(`alloc-${r}`, true)).ino;
      await v.fs.truncate(target, cfg.allocPages * PAGE);
      const wo = new BenchOwner(`alloc-${r}`);
      alloc.push(cfg.allocPages / (await timeFaults(v.dax, wo, target, cfg.allocPages, 'WRITE')));
      await v.dax.fsync(target, false); // clean: the entries stay MAPPED only while mapped
      if (r === 0) mappedIno = target;
      else await wo.end();
    }
    log(`  read-hole ${Math.round(median(hole))}/s, write-allocate ${Math.round(median(alloc))}/s`);

    // ---- mapped: READ faults on MAPPED entries (the first file keeps its writer's PTEs).
    const mapped: number[] = [];
    for (let r = 0; r < cfg.reps; r++) {
      let pages = 0;
      let seconds = 0;
      for (let p = 0; p < cfg.mappedPasses; p++) {
        const o = new BenchOwner(`mapped-${r}-${p}`);
        seconds += await timeFaults(v.dax, o, mappedIno, cfg.allocPages, 'READ');
        pages += cfg.allocPages;
        await o.end();
      }
      mapped.push(pages / seconds);
    }
    log(`  mapped ${Math.round(median(mapped))}/s`);

    // ---- uncontended entry lock.
    const as = Dax.contextForTests(v.dax).spaces.get(mappedIno);
    if (!as) throw new Error('the mapped file has no address space');
    const awaitNs: number[] = [];
    const syncNs: number[] = [];
    for (let r = 0; r < cfg.reps; r++) {
      let t0 = process.hrtime.bigint();
      for (let i = 0; i < cfg.lockOps; i++) unlockEntry(as, await lockEntry(as, 1));
      awaitNs.push(Number(process.hrtime.bigint() - t0) / cfg.lockOps);
      t0 = process.hrtime.bigint();
      for (let i = 0; i < cfg.lockOps; i++) {
        const e = tryLockEntry(as, 1);
        if (!e) throw new Error('uncontended tryLockEntry failed');
        unlockEntry(as, e);
      }
      syncNs.push(Number(process.hrtime.bigint() - t0) / cfg.lockOps);
    }
    log(`  entry lock ${median(awaitNs).toFixed(0)} ns (await), ${median(syncNs).toFixed(0)} ns (sync)`);

    // ---- 64 concurrent faulters on one index.
    const contended = await contendedFaults(v.dax, mappedIno, cfg);
    log(`  ${cfg.faulters} faulters: ${Math.round(contended.faultsPerSec)}/s, max wait ${contended.waitMaxMs.toFixed(2)} ms`);

    // ---- memory per entry.
    const memory = await memoryPerEntry(v, cfg.memoryEntries, gc);
    log(`  memory: ${memory.bytesPerEntryWithPte.toFixed(0)} B/entry with a PTE, ${memory.bytesPerEntryOnly.toFixed(0)} B/entry alone`);

    return {
      readHoleFaultsPerSec: median(hole), writeAllocateFaultsPerSec: median(alloc), mappedFaultsPerSec: median(mapped),
      entryLockAwaitNsPerOp: median(awaitNs), entryLockSyncNsPerOp: median(syncNs), contended, memory,
    };
  } finally {
    await v.close();
  }
}

async function contendedFaults(dax: Dax, ino: number, cfg: InProcessConfig): Promise<InProcessResult['contended']> {
  const owners = Array.from({ length: cfg.faulters }, (_, i) => new BenchOwner(`faulter-${i}`));
  const waitsMs: number[] = [];
  const t0 = process.hrtime.bigint();
  await Promise.all(owners.map(async (o) => {
    for (let i = 0; i < cfg.faultsPerFaulter; i++) {
      const start = process.hrtime.bigint();
      await dax.fault(o, ino, 0, 'READ', false);
      waitsMs.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  }));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const d0 = process.hrtime.bigint();
  for (const o of owners) await o.end();
  const ptesDroppedMs = Number(process.hrtime.bigint() - d0) / 1e6;
  waitsMs.sort((a, b) => a - b);
  return {
    faulters: cfg.faulters, faultsPerSec: waitsMs.length / seconds, waitMaxMs: waitsMs[waitsMs.length - 1],
    waitP99Ms: waitsMs[Math.floor(waitsMs.length * 0.99)], ptesDroppedMs,
  };
}

async function memoryPerEntry(v: { fs: FileSystem; dax: Dax }, entries: number, gc: () => void): Promise<InProcessResult['memory']> {
  const ino = (await v.fs.create('memory', true)).ino;
  await v.fs.truncate(ino, entries * PAGE);
  const owner = new BenchOwner('memory');
  gc();
  const before = heapAndBuffers();
  for (let pg = 0; pg < entries; pg++) await v.dax.fault(owner, ino, pg, 'READ', false);
  gc();
  const withPte = (heapAndBuffers() - before) / entries;
  await owner.end(); // drops the PTEs, then the (idle) address space

  // Entries alone: installed under their locks as a read fault would, without a session.
  const as = Dax.contextForTests(v.dax).space(ino);
  gc();
  const before2 = heapAndBuffers();
  for (let pg = 0; pg < entries; pg++) {
    const e = await lockEntry(as, pg);
    e.state = 'ZERO';
    unlockEntry(as, e);
  }
  gc();
  const only = (heapAndBuffers() - before2) / entries;
  as.entries.clear();
  Dax.contextForTests(v.dax).maybeDrop(as);
  return { entries, bytesPerEntryWithPte: withPte, bytesPerEntryOnly: only };
}

/**
 * Heap plus ArrayBuffer backing stores: the session page tables keep their PTEs in typed
 * arrays, whose bytes are outside the V8 heap (heapUsed alone would not count them).
 */
function heapAndBuffers(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** Removes the temp volume (the caller's dir). */
export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}
