/**
 * The process test/crash/kill.test.ts kills: it mounts a real volume file (MmapStorage)
 * with freed blocks filled with CANARY, and runs a seeded random workload on a few files
 * until SIGKILL arrives.
 *
 * Protocol: one JSON object per line on stdout, each written with a blocking write(2)
 * BEFORE the step it describes happens, so the parent knows every operation that may
 * have started (even one the kill interrupted):
 *   {"mounting":true}                          about to mount (replay the journal, free orphans)
 *   {"ready":true,"replay":"replayed"}         mounted (journal replayed / empty / discarded)
 *   {"i":7,"op":"write","f":1,...}              operation 7 is about to start (a CrashOp)
 *   {"done":7}                                  operation 7 returned; an fsync's done line
 *                                               is its acknowledgement (a durable point)
 *   {"done":7,"err":"EINVAL"}                   operation 7 failed with a coded error
 *   {"done":7,"sha1":"..."}                     a read returned these bytes (hash)
 *   {"fatal":"..."}                             an uncoded error (engine bug): exit 3
 *
 * The child runs the server's engine: the file layer and the dax layer (mappings, MAP_SYNC
 * faults, DMA pins) over the volume file, as `daxd serve` does minus the RPC edge.
 * Durable points acknowledged by a done line: fsync (dax fsync: writeback, then the file
 * layer's), a sync write, a mapped store's Msync ('mapstore', after a plain or a MAP_SYNC
 * write fault), and a DMA write through a writable pin followed by Fsync ('dma').
 *
 * The data written to file f only uses the bytes of alphabetOf(f), never 0 and never
 * CANARY, so after a crash the parent can tell stale or foreign data from the file's own.
 *
 * Run: node dist/test/crash/kill-child.js '{"volume":"/tmp/x/vol","seed":1}'
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { DaxError } from '../../server/errors';
import { FileSystem } from '../../server/fs/filesystem';
import type { FallocateMode } from '../../server/fs/types';
import { BLOCK_SIZE } from '../../server/limits';
import { MmapStorage } from '../../server/media/mmap-storage';
import { Dax } from '../../server/dax/dax';
import type { MappingOwner, OwnerEvent } from '../../server/dax/owner';
import { fallocateRequest } from '../../server/rpc/validate';
import { seededRng } from '../support/rng';

export const CANARY = 0xcc;
export const FILE_NAMES = ['k0', 'k1', 'k2', 'k3'] as const;
/** Files stay below this size, so 4 of them (plus preallocation) never fill a 16 MiB volume. */
export const FILE_SPAN_BYTES = 1536 * 1024;
/** Bounds the workload if the parent never kills (it always should). */
const OPS_MAX = 20_000;
const ALPHABET_SIZE = 40;

export type CrashOp =
  | { op: 'write'; f: number; off: number; len: number; seed: number; sync: boolean }
  | { op: 'read'; f: number; off: number; len: number }
  | { op: 'fsync'; f: number }
  | { op: 'truncate'; f: number; size: number }
  | { op: 'fallocate'; f: number; mode: FallocateMode; off: number; len: number }
  | { op: 'create'; f: number; exclusive: boolean }
  | { op: 'unlink'; f: number }
  /** Write fault (MAP_SYNC when sync) on the page of off, Store [off, off + len) in it, Msync the page. */
  | { op: 'mapstore'; f: number; off: number; len: number; seed: number; sync: boolean }
  /** Writable pin of the page of off, DMA write [off, off + len) in it, unpin, Fsync. */
  | { op: 'dma'; f: number; off: number; len: number; seed: number };

export type ChildLine =
  | { mounting: true }
  | { ready: true; replay: string }
  | ({ i: number } & CrashOp)
  | { done: number; err?: string; sha1?: string }
  | { fatal: string };

/** File f writes only bytes [lo, lo + 40): 1..40, 41..80, 81..120, 121..160 (CANARY is 204). */
export function alphabetOf(f: number): { lo: number; hi: number } {
  const lo = 1 + f * ALPHABET_SIZE;
  return { lo, hi: lo + ALPHABET_SIZE - 1 };
}

/** The bytes a write puts in file f: a function of (f, seed, length) only. */
export function crashData(f: number, seed: number, lengthBytes: number): Buffer {
  const { lo } = alphabetOf(f);
  const out = Buffer.allocUnsafe(lengthBytes);
  let s = (seed ^ (f * 0x9e3779b1)) >>> 0 || 1;
  for (let i = 0; i < lengthBytes; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = lo + (s % ALPHABET_SIZE);
  }
  return out;
}

export function sha1(data: Uint8Array): string {
  return crypto.createHash('sha1').update(data).digest('hex');
}

// ---- the child -----------------------------------------------------------------------

/** A blocking write(2) of one line: it is in the pipe before the next step starts. */
function emit(line: ChildLine): void {
  const bytes = Buffer.from(`${JSON.stringify(line)}\n`);
  for (let done = 0; done < bytes.length;) {
    try {
      done += fs.writeSync(1, bytes, done);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    }
  }
}

/** The child's one mapping owner (a session that never ends). */
class ChildOwner implements MappingOwner {
  readonly id = 'kill-child';
  private next = 1;
  notify(_event: OwnerEvent): void { /* the workload re-faults for every mapped store */ }
  attach(): number { return this.next++; }
  detach(): boolean { return true; }
}

class Workload {
  private readonly inos: Array<number | undefined>;
  private readonly dax: Dax;
  private readonly owner = new ChildOwner();

  constructor(private readonly fs: FileSystem, private readonly rng: () => number) {
    this.dax = new Dax(fs);
    this.inos = FILE_NAMES.map((name) => {
      try {
        return fs.lookup(name).ino;
      } catch (err) {
        if (err instanceof DaxError && err.code === 'ENOENT') return undefined;
        throw err;
      }
    });
  }

  private int(maxExclusive: number): number {
    return Math.floor(this.rng() * maxExclusive);
  }

  private pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** A length: tiny, about a page (partial pages), or large (many blocks). */
  private length(): number {
    const r = this.rng();
    if (r < 0.35) return 1 + this.int(300);
    if (r < 0.75) return 1 + this.int(3 * BLOCK_SIZE + 100);
    if (r < 0.9) return (1 + this.int(8)) * BLOCK_SIZE;
    return 1 + this.int(256 * 1024);
  }

  private offset(sizeBytes: number, len: number): number {
    const r = this.rng();
    const at = r < 0.5 ? this.int(Math.max(1, sizeBytes + 1)) : r < 0.8 ? this.int(16) * BLOCK_SIZE : this.int(FILE_SPAN_BYTES);
    return Math.max(0, Math.min(at, FILE_SPAN_BYTES - len));
  }

  next(): CrashOp {
    const f = this.int(FILE_NAMES.length);
    const ino = this.inos[f];
    if (ino === undefined) return { op: 'create', f, exclusive: this.rng() < 0.5 };
    const size = this.fs.stat(ino).sizeBytes;
    const r = this.rng();
    if (r < 0.40) {
      const len = this.length();
      return { op: 'write', f, off: this.offset(size, len), len, seed: 1 + this.int(0x7ffffffe), sync: this.rng() < 0.15 };
    }
    if (r < 0.58) return { op: 'fsync', f };
    if (r < 0.66) return { op: 'read', f, off: this.int(size + 10), len: this.length() };
    if (r < 0.69 && size > 0) return this.inPage('mapstore', f, size);
    if (r < 0.72 && size > 0) return this.inPage('dma', f, size);
    if (r < 0.78) return { op: 'truncate', f, size: this.rng() < 0.6 ? this.int(size + 1) : this.int(FILE_SPAN_BYTES) };
    if (r < 0.95) return this.fallocate(f, size);
    if (r < 0.97) return { op: 'create', f, exclusive: this.rng() < 0.5 };
    return { op: 'unlink', f };
  }

  /** A mapped store or DMA write inside one page of the file (below EOF). */
  private inPage(op: 'mapstore' | 'dma', f: number, size: number): CrashOp {
    const off = this.int(size);
    const len = 1 + this.int(Math.min(size - off, BLOCK_SIZE - (off % BLOCK_SIZE), 600));
    const seed = 1 + this.int(0x7ffffffe);
    return op === 'dma' ? { op, f, off, len, seed } : { op, f, off, len, seed, sync: this.rng() < 0.5 };
  }

  private fallocate(f: number, size: number): CrashOp {
    const mode = this.pick<FallocateMode>(['ALLOCATE', 'KEEP_SIZE', 'PUNCH_HOLE', 'ZERO_RANGE', 'COLLAPSE_RANGE', 'COLLAPSE_RANGE']);
    if (mode === 'COLLAPSE_RANGE' && this.rng() < 0.85) {
      // Mostly valid: aligned, ending before EOF (when the file has a page to spare).
      const pages = Math.floor(size / BLOCK_SIZE);
      const off = this.int(Math.max(1, pages)) * BLOCK_SIZE;
      const len = (1 + this.int(Math.max(1, Math.min(8, pages - off / BLOCK_SIZE)))) * BLOCK_SIZE;
      return { op: 'fallocate', f, mode, off, len };
    }
    const len = this.length();
    return { op: 'fallocate', f, mode, off: this.offset(size, len), len };
  }

  async run(op: CrashOp): Promise<{ sha1?: string }> {
    const name = FILE_NAMES[op.f];
    const ino = this.inos[op.f] ?? -1;
    switch (op.op) {
      case 'create':
        this.inos[op.f] = (await this.fs.create(name, op.exclusive)).ino;
        return {};
      case 'unlink':
        await this.fs.unlink(name);
        this.inos[op.f] = undefined;
        return {};
      case 'write':
        await this.fs.write(ino, op.off, crashData(op.f, op.seed, op.len), op.sync);
        return {};
      case 'read':
        return { sha1: sha1(await this.fs.read(ino, op.off, op.len)) };
      case 'fsync':
        await this.dax.fsync(ino, false);
        return {};
      case 'mapstore': {
        const pg = Math.floor(op.off / BLOCK_SIZE);
        const { pte } = await this.dax.fault(this.owner, ino, pg, 'WRITE', op.sync);
        // Nothing runs between the fault and the store here (one operation at a time).
        this.dax.store(this.owner, pte!.token, op.off - pg * BLOCK_SIZE, crashData(op.f, op.seed, op.len));
        await this.dax.msync(ino, pg, pg);
        this.dax.unmap(this.owner, ino, pg, pg);
        return {};
      }
      case 'dma': {
        const pg = Math.floor(op.off / BLOCK_SIZE);
        const p = await this.dax.pin(this.owner, { ino, firstPgoff: pg, npages: 1, writable: true, leaseMs: 0 });
        try {
          await this.dax.dmaWrite(this.owner, p.id, 0, op.off - pg * BLOCK_SIZE, crashData(op.f, op.seed, op.len));
        } finally {
          this.dax.unpin(this.owner, p.id);
        }
        await this.dax.fsync(ino, false);
        return {};
      }
      case 'truncate':
        await this.fs.truncate(ino, op.size);
        return {};
      case 'fallocate': {
        // Through the edge's check, as every caller (it refuses an unaligned collapse).
        const r = fallocateRequest(op.mode, op.off, op.len);
        await this.fs.fallocate(ino, r.mode, r.offset, r.length);
        return {};
      }
    }
  }
}

/** Truncate scenario: the child waits this long for its SIGKILL, then exits by itself. */
const SCENARIO_WAIT_MS = 30_000;

/**
 * The repro, one step at a time: a 4 KiB sync write to k0 (acknowledged), then
 * Truncate(100); then nothing (no commit from this process) until the parent's SIGKILL,
 * which it sends as soon as it sees the truncate start.
 */
async function truncateScenario(fsys: FileSystem): Promise<void> {
  const { ino } = await fsys.create(FILE_NAMES[0], false);
  const write: CrashOp = { op: 'write', f: 0, off: 0, len: BLOCK_SIZE, seed: 42, sync: true };
  emit({ i: 0, ...write });
  await fsys.write(ino, 0, crashData(0, 42, BLOCK_SIZE), true);
  emit({ done: 0 });
  emit({ i: 1, op: 'truncate', f: 0, size: 100 });
  await fsys.truncate(ino, 100);
  emit({ done: 1 });
  await new Promise((resolve) => setTimeout(resolve, SCENARIO_WAIT_MS));
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2]) as { volume: string; seed: number; scenario?: 'truncate' };
  const storage = MmapStorage.open(args.volume);
  emit({ mounting: true });
  const fsys = await FileSystem.mount(storage, { canaryByte: CANARY });
  emit({ ready: true, replay: fsys.mountReport.replay.state });
  if (args.scenario === 'truncate') return truncateScenario(fsys);
  const workload = new Workload(fsys, seededRng(args.seed));
  for (let i = 0; i < OPS_MAX; i++) {
    const op = workload.next();
    emit({ i, ...op });
    try {
      const result = await workload.run(op);
      emit({ done: i, ...result });
    } catch (err) {
      if (!(err instanceof DaxError)) throw err;
      emit({ done: i, err: err.code });
    }
  }
  await fsys.unmount();
}

if (require.main === module) {
  main().catch((err: unknown) => {
    try {
      emit({ fatal: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    } finally {
      process.exit(3);
    }
  });
}
