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
  | { op: 'unlink'; f: number };

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

class Workload {
  private readonly inos: Array<number | undefined>;

  constructor(private readonly fs: FileSystem, private readonly rng: () => number) {
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
    if (r < 0.72) return { op: 'truncate', f, size: this.rng() < 0.6 ? this.int(size + 1) : this.int(FILE_SPAN_BYTES) };
    if (r < 0.95) return this.fallocate(f, size);
    if (r < 0.97) return { op: 'create', f, exclusive: this.rng() < 0.5 };
    return { op: 'unlink', f };
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
        await this.fs.fsync(ino, false);
        return {};
      case 'truncate':
        await this.fs.truncate(ino, op.size);
        return {};
      case 'fallocate':
        await this.fs.fallocate(ino, op.mode, op.off, op.len);
        return {};
    }
  }
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2]) as { volume: string; seed: number };
  const storage = MmapStorage.open(args.volume);
  emit({ mounting: true });
  const fsys = await FileSystem.mount(storage, { canaryByte: CANARY });
  emit({ ready: true, replay: fsys.mountReport.replay.state });
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
