/**
 * A deterministic file workload on MemoryStorage, its durability model, and the checks a
 * volume must pass after a crash at any point of it (S2, S5, S6).
 *
 * The model keeps, per file incarnation (one create of a name: (ino, generation)):
 *   cur     the bytes the file holds now (what a read returns before any crash)
 *   acked   the bytes at its last completed durable point (fsync, or a sync write for its
 *           own range), with `dirty`: byte ranges an operation may have changed since. A
 *           range is marked dirty BEFORE the operation starts (a crash inside it may leave
 *           old, new or mixed bytes there) and only a completed durable point cleans it.
 *   size    every completed commit (fsync of any file, sync write) makes every file's
 *           current size durable; an operation that may change the size sets sizeDirty.
 * After a crash, each file present must be an incarnation we created, every byte outside
 * its dirty ranges (below both sizes) must equal acked, its size must equal the durable
 * size unless sizeDirty, and no byte may be the canary (a freed block's old content) or
 * belong to another incarnation's alphabet (another file's data): each incarnation writes
 * only bytes whose low nibble is its tag.
 */
import assert from 'node:assert/strict';
import { MemoryStorage } from '../../server/media/memory-storage';
import { SimulatedCrash } from '../../server/media/storage';
import { mkfs } from '../../server/fs/mkfs';
import { FileSystem } from '../../server/fs/filesystem';
import type { FallocateMode, FileInfo } from '../../server/fs/types';
import { BLOCK_SIZE } from '../../server/limits';
import { randInt, seededRng } from '../support/rng';
import { GiB, MiB } from '../support/units';

export const VOLUME_BYTES = 16 * MiB;
/** Freed blocks are filled with it; the workload never writes it (tag 12 is never used). */
export const CANARY_BYTE = 0xcc;
const TAGS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15];

type Range = [number, number];

export class Incarnation {
  readonly tag: number;
  cur = new Uint8Array(0);
  size = 0;
  acked: Uint8Array | null = null;
  ackedSize = 0;
  sizeDirty = true;
  /** Sorted, disjoint [lo, hi) ranges; hi may be Infinity. Everything is dirty until a durable point. */
  dirty: Range[] = [[0, Infinity]];
  createDurable = false;
  unlinkStarted = false;
  unlinkDurable = false;

  constructor(readonly name: string, readonly ino: number, readonly generation: number, index: number) {
    assert(index < TAGS.length, 'more incarnations than tags');
    this.tag = TAGS[index];
  }

  markDirty(lo: number, hi: number): void {
    if (hi <= lo) return;
    const out: Range[] = [];
    let merged: Range = [lo, hi];
    for (const r of this.dirty) {
      if (r[1] < merged[0] || r[0] > merged[1]) out.push(r);
      else merged = [Math.min(r[0], merged[0]), Math.max(r[1], merged[1])];
    }
    out.push(merged);
    this.dirty = out.sort((a, b) => a[0] - b[0]);
  }

  clean(lo: number, hi: number): void {
    const out: Range[] = [];
    for (const r of this.dirty) {
      if (r[1] <= lo || r[0] >= hi) out.push(r);
      else {
        if (r[0] < lo) out.push([r[0], lo]);
        if (r[1] > hi) out.push([hi, r[1]]);
      }
    }
    this.dirty = out;
  }

  /** Byte ranges of [0, end) outside every dirty range. */
  cleanRanges(end: number): Range[] {
    const out: Range[] = [];
    let at = 0;
    for (const [lo, hi] of this.dirty) {
      if (lo > at) out.push([at, Math.min(lo, end)]);
      at = Math.max(at, hi);
      if (at >= end) break;
    }
    if (at < end) out.push([at, end]);
    return out.filter(([lo, hi]) => hi > lo);
  }

  setBytes(offset: number, data: Uint8Array): void {
    this.grow(offset + data.length);
    this.cur.set(data, offset);
  }

  grow(bytes: number): void {
    if (bytes <= this.cur.length) return;
    const next = new Uint8Array(Math.max(bytes, this.cur.length * 2));
    next.set(this.cur);
    this.cur = next;
  }
}

export class Model {
  readonly incarnations: Incarnation[] = [];
  /** A create in flight (it commits before it returns its inode, so a crash may keep it). */
  pendingCreate: string | null = null;

  byName(name: string): Incarnation | undefined {
    return this.incarnations.find((i) => i.name === name && !i.unlinkStarted);
  }

  /** A commit completed: every size and namespace change made before it is durable. */
  committed(): void {
    for (const inc of this.incarnations) {
      inc.createDurable = true;
      if (inc.unlinkStarted) inc.unlinkDurable = true;
      inc.ackedSize = inc.size;
      inc.sizeDirty = false;
    }
  }
}

/** The operations of the workload, each keeping the model (see the header comment). */
export class Workload {
  constructor(readonly fs: FileSystem, readonly model: Model, private readonly rng: () => number) {}

  async create(name: string): Promise<Incarnation> {
    this.model.pendingCreate = name;
    const info: FileInfo = await this.fs.create(name, true);
    this.model.pendingCreate = null;
    const inc = new Incarnation(name, info.ino, info.generation, this.model.incarnations.length);
    this.model.incarnations.push(inc);
    // Create is durable on return (it commits the journal): a commit completed.
    this.model.committed();
    return inc;
  }

  /** Bytes of `inc`'s alphabet: high nibble 1..15, low nibble the tag. */
  data(inc: Incarnation, length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; ) {
      const value = (randInt(this.rng, 1, 15) << 4) | inc.tag;
      const run = Math.min(length - i, randInt(this.rng, 1, 700));
      out.fill(value, i, i + run);
      i += run;
    }
    return out;
  }

  async write(inc: Incarnation, offset: number, length: number, sync = false): Promise<void> {
    const data = this.data(inc, length);
    inc.markDirty(Math.min(offset, inc.size), offset + length);
    if (offset + length > inc.size) inc.sizeDirty = true;
    await this.fs.write(inc.ino, offset, data, sync);
    inc.setBytes(offset, data);
    inc.size = Math.max(inc.size, offset + length);
    if (!sync) return;
    this.model.committed();
    inc.acked ??= new Uint8Array(0);
    if (inc.acked.length < offset + length) {
      const grown = new Uint8Array(offset + length);
      grown.set(inc.acked);
      inc.acked = grown;
    }
    inc.acked.set(data, offset);
    inc.clean(offset, offset + length);
  }

  async fsync(inc: Incarnation): Promise<void> {
    await this.fs.fsync(inc.ino, false);
    this.model.committed();
    inc.acked = inc.cur.slice(0, inc.size);
    inc.dirty = [];
  }

  async truncate(inc: Incarnation, size: number): Promise<void> {
    inc.markDirty(Math.min(size, inc.size), Infinity);
    inc.sizeDirty = true;
    await this.fs.truncate(inc.ino, size);
    inc.grow(Math.max(size, inc.size));
    inc.cur.fill(0, size);
    inc.size = size;
  }

  async fallocate(inc: Incarnation, mode: FallocateMode, offset: number, length: number): Promise<void> {
    const end = offset + length;
    if (mode === 'ALLOCATE' && end > inc.size) {
      inc.markDirty(inc.size, end);
      inc.sizeDirty = true;
    }
    if (mode === 'PUNCH_HOLE' || mode === 'ZERO_RANGE') inc.markDirty(offset, end);
    if (mode === 'ZERO_RANGE' && end > inc.size) {
      // ZERO_RANGE extends the size (as Linux without KEEP_SIZE).
      inc.markDirty(Math.min(offset, inc.size), end);
      inc.sizeDirty = true;
    }
    if (mode === 'COLLAPSE_RANGE') {
      inc.markDirty(offset, Infinity);
      inc.sizeDirty = true;
    }
    await this.fs.fallocate(inc.ino, mode, offset, length);
    if (mode === 'ALLOCATE' || mode === 'ZERO_RANGE') {
      inc.grow(end);
      inc.size = Math.max(inc.size, end);
    }
    if (mode === 'PUNCH_HOLE' || mode === 'ZERO_RANGE') inc.cur.fill(0, offset, Math.min(end, inc.size));
    if (mode === 'COLLAPSE_RANGE') {
      inc.cur.copyWithin(offset, end, inc.size);
      inc.size -= length;
      inc.cur.fill(0, inc.size);
    }
  }

  async unlink(inc: Incarnation): Promise<void> {
    inc.unlinkStarted = true;
    await this.fs.unlink(inc.name);
  }

  /** Unlink while a user holds the inode: it stays an ORPHAN with its blocks (mount frees it). */
  async unlinkHeld(inc: Incarnation): Promise<void> {
    this.fs.acquire(inc.ino);
    await this.unlink(inc);
  }
}


/** The scripted part: every kind of operation, multi-level maps, blocks past EOF, an orphan. */
async function scripted(w: Workload): Promise<void> {
  const a = await w.create('alpha');
  await w.write(a, 0, 10000);
  await w.write(a, 10000, 3000);
  await w.fsync(a);
  const b = await w.create('beta');
  await w.fallocate(b, 'KEEP_SIZE', 0, 64 * 1024);
  await w.write(b, 1000, 5000); // into UNWRITTEN: converts and zeroes the rest of the blocks
  await w.fallocate(b, 'KEEP_SIZE', 4 * GiB + 8192, 8192); // a depth-3 map, blocks past EOF
  await w.fsync(b);
  await w.write(a, 5 * MiB, 7000); // depth 2
  await w.write(a, 2000, 100); // overwrite in place
  await w.fsync(a);
  const c = await w.create('gamma');
  await w.write(c, 0, 40000, true);
  await w.fallocate(a, 'PUNCH_HOLE', BLOCK_SIZE + 100, 9000);
  await w.fallocate(a, 'ZERO_RANGE', 1000, 6000);
  await w.fsync(a);
  await w.fallocate(c, 'COLLAPSE_RANGE', 8192, 8192);
  await w.fallocate(c, 'ALLOCATE', 30000, 20000);
  await w.truncate(c, 12345);
  await w.fsync(c);
  await w.truncate(b, 3000); // drops the preallocation past EOF
  await w.unlink(a);
  await w.fsync(b);
  const a2 = await w.create('alpha'); // the name again, a new incarnation
  await w.write(a2, 0, 20000);
  const held = await w.create('held');
  await w.write(held, 0, 9000);
  await w.fsync(held);
  await w.unlinkHeld(held);
  await w.write(b, 2500, 1000);
  await w.fsync(b);
}

/** Seeded random operations on the live files. */
async function randomTail(w: Workload, rng: () => number, ops: number): Promise<void> {
  for (let n = 0; n < ops; n++) {
    const live = w.model.incarnations.filter((i) => !i.unlinkStarted);
    const inc = live[randInt(rng, 0, live.length - 1)];
    const choice = randInt(rng, 0, 9);
    const off = randInt(rng, 0, 200 * 1024);
    const len = randInt(rng, 1, 50000);
    if (choice <= 3) await w.write(inc, off, len, choice === 3);
    else if (choice === 4) await w.fallocate(inc, 'PUNCH_HOLE', off, len);
    else if (choice === 5) await w.fallocate(inc, 'ZERO_RANGE', off, len);
    else if (choice === 6) await w.fallocate(inc, 'KEEP_SIZE', off, len);
    else if (choice === 7 && inc.size > 2 * BLOCK_SIZE) {
      const pages = Math.floor(inc.size / BLOCK_SIZE);
      const first = randInt(rng, 0, pages - 2);
      await w.fallocate(inc, 'COLLAPSE_RANGE', first * BLOCK_SIZE, randInt(rng, 1, pages - 1 - first) * BLOCK_SIZE);
    } else if (choice === 8) await w.truncate(inc, randInt(rng, 0, 150 * 1024));
    else await w.fsync(inc);
  }
}

export interface WorkloadRun {
  storage: MemoryStorage;
  model: Model;
  /** Flushes from the first mount on (crash points are counted from there). */
  flushes: number;
  crashed: boolean;
}

export const WORKLOAD_SEED = 7;
const TAIL_OPS = 14;

/**
 * A freshly made volume, then `arm(storage)` (sets up a crash), then mount + the workload
 * until it ends or the storage dies. An error other than the simulated crash is a test
 * failure.
 */
export async function runWorkload(arm: (storage: MemoryStorage) => void, seed = WORKLOAD_SEED): Promise<WorkloadRun> {
  const storage = MemoryStorage.fromImage(await freshVolume());
  const base = storage.flushCount;
  muteDeadFlushes(storage);
  arm(storage);
  const model = new Model();
  await withFakeClock(async () => {
    try {
      const fs = await FileSystem.mount(storage, { canaryByte: CANARY_BYTE });
      const rng = seededRng(seed);
      const w = new Workload(fs, model, rng);
      await scripted(w);
      await randomTail(w, rng, TAIL_OPS);
    } catch (err) {
      // After the simulated power cut, whatever the dead process did next is irrelevant.
      if (!storage.crashed) throw err;
      assert(err instanceof SimulatedCrash || (err as { code?: string }).code === 'EIO', `unexpected error after the crash: ${String(err)}`);
    }
  });
  return { storage, model, flushes: storage.flushCount - base, crashed: storage.crashed };
}

let mkfsImage: Uint8Array | undefined;

/** One mkfs for every run: the same medium (uuid included) each time, so a crash point replays exactly. */
async function freshVolume(): Promise<Uint8Array> {
  if (!mkfsImage) {
    const storage = new MemoryStorage(VOLUME_BYTES);
    await mkfs(storage);
    mkfsImage = storage.durableImage();
  }
  return mkfsImage;
}

/** Inode times come from Date.now(): a counter instead, so runs write identical bytes. */
async function withFakeClock(fn: () => Promise<void>): Promise<void> {
  const now = Date.now;
  let t = 1_700_000_000_000;
  Date.now = () => ++t;
  try {
    await fn();
  } finally {
    Date.now = now;
  }
}

/**
 * MemoryStorage throws the crash synchronously from inside flush(), so an engine call that
 * started several flushes (Promise.all over a map) leaves the earlier ones rejecting with
 * nobody listening. The process is dead at that point: mark those rejections handled.
 */
export function muteDeadFlushes(storage: MemoryStorage): void {
  const flush = storage.flush.bind(storage);
  storage.flush = (offsetBytes: number, lengthBytes: number): Promise<void> => {
    const p = flush(offsetBytes, lengthBytes);
    p.catch(() => undefined);
    return p;
  };
}

/** The k-th flush from now loses power: every unflushed sector anywhere persists with probability p. */
export function armPowerLoss(storage: MemoryStorage, k: number, rng: () => number, p = 0.5): void {
  const target = storage.flushCount + k;
  const flushSync = storage.flushSync.bind(storage);
  storage.flushSync = (offsetBytes: number, lengthBytes: number): void => {
    if (storage.flushCount + 1 === target) {
      storage.crash(rng, p);
      throw new SimulatedCrash(`power loss at flush #${target}`);
    }
    flushSync(offsetBytes, lengthBytes);
  };
}

/** Records each flush's range (a dry run tells which flush writes the journal or a superblock). */
export function traceFlushes(storage: MemoryStorage, into: Array<[number, number]>): void {
  const flushSync = storage.flushSync.bind(storage);
  storage.flushSync = (offsetBytes: number, lengthBytes: number): void => {
    into.push([offsetBytes, lengthBytes]);
    flushSync(offsetBytes, lengthBytes);
  };
}

/**
 * Checks a mounted, recovered volume against the model: namespace, durable bytes and
 * sizes, no canary, no foreign bytes. Throws with the incarnation and offset on failure.
 */
export async function verifyAgainstModel(fs: FileSystem, model: Model, context: string): Promise<void> {
  const present = fs.list('', '', 1000).files;
  for (const f of present) {
    const inc = model.incarnations.find((i) => i.ino === f.ino && i.generation === f.generation);
    if (!inc && f.name === model.pendingCreate) {
      assert.equal(f.sizeBytes, 0, `${context}: ${f.name}, created when the crash hit, is not empty`);
      continue;
    }
    assert(inc, `${context}: file ${JSON.stringify(f.name)} (inode ${f.ino} generation ${f.generation}) was never created`);
    assert.equal(f.name, inc.name, `${context}: inode ${f.ino} has the name of another file`);
    assert(!inc.unlinkDurable, `${context}: ${inc.name} (inode ${inc.ino}) came back after a durable unlink`);
    await verifyFile(fs, inc, f, context);
  }
  for (const inc of model.incarnations) {
    if (!inc.createDurable || inc.unlinkStarted) continue;
    assert(present.some((f) => f.ino === inc.ino && f.generation === inc.generation), `${context}: ${inc.name} (inode ${inc.ino}) was durably created and is missing`);
  }
}

async function verifyFile(fs: FileSystem, inc: Incarnation, f: FileInfo, context: string): Promise<void> {
  const where = `${context}: ${inc.name} (inode ${inc.ino} gen ${inc.generation})`;
  if (!inc.sizeDirty) assert.equal(f.sizeBytes, inc.ackedSize, `${where}: size ${f.sizeBytes}, durable size ${inc.ackedSize}`);
  const bytes = await fs.read(inc.ino, 0, f.sizeBytes);
  const canary = bytes.indexOf(CANARY_BYTE);
  assert.equal(canary, -1, `${where}: reads the canary byte at offset ${canary} (a freed block's stale content)`);
  for (let i = 0; i < bytes.length; i++) {
    const v = bytes[i];
    if (v !== 0 && (v & 15) !== inc.tag) assert.fail(`${where}: byte ${i} is 0x${v.toString(16)}, not of this file's alphabet (tag ${inc.tag}): another file's data`);
  }
  if (inc.acked === null) return;
  for (const [lo, hi] of inc.cleanRanges(Math.min(f.sizeBytes, inc.ackedSize))) {
    const got = bytes.subarray(lo, hi);
    const want = inc.acked.subarray(lo, Math.min(hi, inc.acked.length));
    if (Buffer.compare(got.subarray(0, want.length), want) === 0 && got.subarray(want.length).every((b) => b === 0)) continue;
    const at = got.findIndex((b, j) => b !== (j < want.length ? want[j] : 0));
    assert.fail(`${where}: acknowledged byte ${lo + at} is 0x${got[at].toString(16)}, expected 0x${(lo + at < inc.acked.length ? inc.acked[lo + at] : 0).toString(16)}`);
  }
}

/**
 * Extends every file by two pages and checks the new bytes read as zeros: bytes past EOF
 * on the medium (a truncated tail, an uncommitted extension) must never come back.
 */
export async function verifyExtensionReadsZeros(fs: FileSystem, context: string): Promise<void> {
  for (const f of fs.list('', '', 1000).files) {
    await fs.truncate(f.ino, f.sizeBytes + 2 * BLOCK_SIZE);
    const tail = await fs.read(f.ino, f.sizeBytes, 2 * BLOCK_SIZE);
    const at = tail.findIndex((b) => b !== 0);
    assert.equal(at, -1, `${context}: ${f.name} extended from ${f.sizeBytes} bytes reads 0x${tail[at]?.toString(16)} at ${f.sizeBytes + at}, not zero`);
  }
}
