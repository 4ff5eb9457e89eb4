/**
 * Property tests of the volume engine (server/fs) against an in-memory model: random
 * sequences of file operations on a few files, each checked against what Linux would do
 * with a byte array per file.
 *
 * The model (ModelFile) keeps, per file, its size, its bytes (sparse: a map of 4 KiB pages,
 * so a file may reach 1 TiB) and the set of allocated pages (what stat.blocks counts).
 * Semantics modelled, Linux's unless noted:
 * - holes and preallocated (UNWRITTEN) pages read as zeros; reads are short at EOF;
 * - write extends the size and allocates every page it touches;
 * - truncate sets the size; down (or to the same size) it zeroes the tail of the last page
 *   and frees every page at or past ceil(size / 4096), preallocated ones included; up it
 *   keeps every block (preallocated pages past the old EOF now read as zeros inside the file);
 * - fallocate ALLOCATE allocates and extends the size; KEEP_SIZE allocates and keeps it;
 *   PUNCH_HOLE zeroes the range, frees the pages wholly inside it, keeps the size;
 *   ZERO_RANGE zeroes the range, preallocates the pages wholly inside it, and extends the
 *   size to the range's end (as Linux without FALLOC_FL_KEEP_SIZE; daxd has no KEEP_SIZE
 *   variant of it); partial pages keep their allocation state (a hole stays a hole);
 *   COLLAPSE_RANGE needs offset and length multiples of 4096 and offset + length < size
 *   (EINVAL otherwise), removes the range, shifts the rest down and shrinks the size;
 *   a zero length is EINVAL for every mode;
 * - error codes: EINVAL (bad arguments or names), ENAMETOOLONG, EFBIG (past the maximum
 *   file size), ELIMIT (I/O per call), EEXIST, ENOENT (missing name or stale inode),
 *   ENOSPC only when the volume cannot hold the change (checked against the engine's own
 *   reservation bound, and required when even the data blocks do not fit; an overwrite of
 *   allocated pages never fails ENOSPC). When an error names both a bad argument and a
 *   missing file, either code is accepted.
 * - ENOSPC from write/ALLOCATE/KEEP_SIZE/COLLAPSE_RANGE changes nothing; from ZERO_RANGE it
 *   may leave the range partly zeroed, size unchanged (each byte old or zero; the model then
 *   adopts what the engine shows).
 *
 * After every operation: stat size and blocks of the files it touched equal the model's.
 * In the middle: remounts, either sync + unmount (clean) or sync and a reboot of the
 * MemoryStorage without unmount (journal replay). At the end of each run: every file is
 * compared in full, the volume is remounted and compared again, fsck (when built) is clean,
 * and after unlinking everything and syncing, blocksFree is back to its initial value.
 *
 * Reproduce a failure: DAXD_FC_SEED=<seed> DAXD_FC_PATH=<path> (printed by fast-check).
 * More runs: DAXD_FC_RUNS_FACTOR=10. Report the first failure without shrinking it
 * (shrinking long sequences takes minutes): DAXD_FC_NO_SHRINK=1.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DaxError } from '../../server/errors';
import { mapBlocksBound } from '../../server/fs/file-data';
import { FileSystem } from '../../server/fs/filesystem';
import { fallocateRequest } from '../../server/rpc/validate';
import { mkfs } from '../../server/fs/mkfs';
import type { FallocateMode, FileInfo } from '../../server/fs/types';
import { BLOCK_SIZE, FILE_BYTES_MAX, IO_BYTES_MAX, NAME_BYTES_MAX } from '../../server/limits';
import { MemoryStorage } from '../../server/media/memory-storage';
import { assertFsckClean } from '../support/fsck';
import { MiB } from '../support/units';

const GiB = 1024 * MiB;
const CANARY = 0xcc;
/** Files with a name of two bytes of UTF-8 in one, so byte order and char order differ. */
const NAMES = ['f0', 'f1', 'é2', 'f3'] as const;
/** An inode number no volume of these tests has (maxFiles is 2048 at 32 MiB). */
const NO_SUCH_INO = 1_000_000;
/** Files larger than this are compared page by page instead of in one read. */
const FULL_READ_BYTES_MAX = 32 * MiB;

const RUNS_FACTOR = Number(process.env.DAXD_FC_RUNS_FACTOR ?? '1');

// ---- the model ---------------------------------------------------------------------

function pageOf(offsetBytes: number): number {
  return Math.floor(offsetBytes / BLOCK_SIZE);
}

class ModelFile {
  sizeBytes = 0;
  /** Pages that may hold non-zero bytes; bytes past EOF inside them are always zero. */
  readonly pages = new Map<number, Uint8Array>();
  /** Allocated pages (WRITTEN or UNWRITTEN): stat.blocks. Always a superset of pages' keys. */
  readonly alloc = new Set<number>();

  constructor(readonly ino: number) {}

  read(offsetBytes: number, lengthBytes: number): Buffer {
    const n = Math.max(0, Math.min(lengthBytes, this.sizeBytes - offsetBytes));
    const out = Buffer.alloc(n);
    if (n === 0) return out;
    for (let pg = pageOf(offsetBytes); pg <= pageOf(offsetBytes + n - 1); pg++) {
      const page = this.pages.get(pg);
      if (!page) continue;
      const from = Math.max(offsetBytes, pg * BLOCK_SIZE);
      const to = Math.min(offsetBytes + n, (pg + 1) * BLOCK_SIZE);
      out.set(page.subarray(from - pg * BLOCK_SIZE, to - pg * BLOCK_SIZE), from - offsetBytes);
    }
    return out;
  }

  write(offsetBytes: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const end = offsetBytes + data.length;
    for (let pg = pageOf(offsetBytes); pg <= pageOf(end - 1); pg++) {
      let page = this.pages.get(pg);
      if (!page) this.pages.set(pg, (page = new Uint8Array(BLOCK_SIZE)));
      const from = Math.max(offsetBytes, pg * BLOCK_SIZE);
      const to = Math.min(end, (pg + 1) * BLOCK_SIZE);
      page.set(data.subarray(from - offsetBytes, to - offsetBytes), from - pg * BLOCK_SIZE);
      this.alloc.add(pg);
    }
    this.sizeBytes = Math.max(this.sizeBytes, end);
  }

  /** Zeroes [offsetBytes, endBytes); walks the stored pages, not the range (which may span 1 TiB). */
  zero(offsetBytes: number, endBytes: number): void {
    for (const [pg, page] of this.pages) {
      const from = Math.max(offsetBytes, pg * BLOCK_SIZE);
      const to = Math.min(endBytes, (pg + 1) * BLOCK_SIZE);
      if (from < to) page.fill(0, from - pg * BLOCK_SIZE, to - pg * BLOCK_SIZE);
    }
  }

  /** Forgets pages [first, last]: data and allocation. */
  drop(first: number, last: number): void {
    for (const pg of [...this.alloc]) {
      if (pg >= first && pg <= last) {
        this.alloc.delete(pg);
        this.pages.delete(pg);
      }
    }
  }

  holesIn(first: number, last: number): number {
    if (last < first) return 0;
    let allocated = 0;
    for (const pg of this.alloc) if (pg >= first && pg <= last) allocated++;
    return last - first + 1 - allocated;
  }

  allocate(first: number, last: number): void {
    for (let pg = first; pg <= last; pg++) this.alloc.add(pg);
  }

  truncate(sizeBytes: number): void {
    if (sizeBytes <= this.sizeBytes) {
      const firstGone = Math.ceil(sizeBytes / BLOCK_SIZE);
      this.zero(sizeBytes, firstGone * BLOCK_SIZE);
      this.drop(firstGone, Number.MAX_SAFE_INTEGER);
    }
    this.sizeBytes = sizeBytes;
  }

  collapse(offsetBytes: number, lengthBytes: number): void {
    const first = pageOf(offsetBytes);
    const shift = lengthBytes / BLOCK_SIZE;
    this.drop(first, first + shift - 1);
    const moved = [...this.alloc].filter((pg) => pg >= first + shift).sort((a, b) => a - b);
    for (const pg of moved) {
      const page = this.pages.get(pg);
      this.alloc.delete(pg);
      this.pages.delete(pg);
      this.alloc.add(pg - shift);
      if (page) this.pages.set(pg - shift, page);
    }
    this.sizeBytes -= lengthBytes;
  }
}

// ---- operations (generated up front; offsets relative to the size are resolved when run) ----

/** Where an offset or size lands: a fraction of the current size, or an absolute byte. */
type Pos =
  | { kind: 'rel'; frac: number; aligned: boolean; delta: number }
  | { kind: 'abs'; at: number };

type DataOp =
  | { t: 'write'; f: number; pos: Pos; len: number; sync: boolean; seed: number }
  | { t: 'read'; f: number; pos: Pos; len: number }
  | { t: 'truncate'; f: number; pos: Pos }
  | { t: 'fallocate'; f: number; mode: FallocateMode; pos: Pos; len: number }
  | { t: 'fsync'; f: number }
  | { t: 'stat'; f: number };

type BadOp =
  | 'emptyName' | 'nulName' | 'longName' | 'loneSurrogate' | 'unlinkEmpty' | 'lookupLong'
  | 'readTooLong' | 'readNegativeLength' | 'writeNegativeOffset' | 'fallocateZeroLength'
  | 'fallocateNegativeOffset' | 'fallocateBadMode' | 'truncateNegative' | 'truncatePastMax'
  | 'writePastMax' | 'badIno';

type Op =
  | DataOp
  | { t: 'create'; f: number; exclusive: boolean }
  | { t: 'lookup'; f: number }
  | { t: 'unlink'; f: number }
  | { t: 'list'; pageSize: number; prefix: string }
  | { t: 'remount'; kind: 'unmount' | 'reboot' }
  | { t: 'pair'; a: DataOp; b: DataOp }
  | { t: 'bad'; f: number; what: BadOp };

interface OpWeights {
  /** Weight of large writes and ranges, and their maximum length. */
  large: number;
  largeMaxBytes: number;
  /** Weight of offsets at the edges of the map tree and of the maximum file size. */
  far: number;
}

function arbPos(w: OpWeights): fc.Arbitrary<Pos> {
  const rel = fc.record({
    kind: fc.constant('rel' as const),
    frac: fc.double({ min: 0, max: 1.25, noNaN: true }),
    aligned: fc.boolean(),
    delta: fc.integer({ min: -2, max: 2 }),
  });
  const abs = (max: number) => fc.record({ kind: fc.constant('abs' as const), at: fc.integer({ min: 0, max }) });
  // Map-tree edges: depth 1 ends at 4 MiB, depth 2 at 4 GiB; 1 TiB is the largest file.
  const edges = fc.constantFrom(4 * MiB - 1, 4 * MiB, 4 * GiB - BLOCK_SIZE, 4 * GiB + 100, FILE_BYTES_MAX - BLOCK_SIZE, FILE_BYTES_MAX)
    .map((at) => ({ kind: 'abs' as const, at }));
  return fc.oneof(
    { weight: 5, arbitrary: rel },
    { weight: 4, arbitrary: abs(12 * BLOCK_SIZE + 100) },
    { weight: 1 + w.large, arbitrary: abs(8 * MiB) },
    { weight: w.far, arbitrary: edges },
  );
}

function arbLen(w: OpWeights): fc.Arbitrary<number> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 200 }) },
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 3 * BLOCK_SIZE + 17 }) },
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 8 }).map((n) => n * BLOCK_SIZE) },
    { weight: 1 + w.large, arbitrary: fc.integer({ min: 1, max: 1 * MiB }) },
    { weight: w.large, arbitrary: fc.integer({ min: 1, max: w.largeMaxBytes / (4 * BLOCK_SIZE) }).map((n) => n * 4 * BLOCK_SIZE) },
  );
}

function arbDataOp(w: OpWeights): fc.Arbitrary<DataOp> {
  const f = fc.integer({ min: 0, max: NAMES.length - 1 });
  const pos = arbPos(w);
  const len = arbLen(w);
  return fc.oneof(
    { weight: 8, arbitrary: fc.record({ t: fc.constant('write' as const), f, pos, len, sync: fc.boolean(), seed: fc.integer({ min: 1, max: 0x7fffffff }) }) },
    { weight: 4, arbitrary: fc.record({ t: fc.constant('read' as const), f, pos, len }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('truncate' as const), f, pos }) },
    {
      weight: 5,
      arbitrary: fc.record({
        t: fc.constant('fallocate' as const), f,
        mode: fc.constantFrom<FallocateMode>('ALLOCATE', 'KEEP_SIZE', 'PUNCH_HOLE', 'ZERO_RANGE', 'COLLAPSE_RANGE'),
        pos, len,
      }),
    },
    // COLLAPSE_RANGE with aligned arguments inside the file (mostly valid; at or past EOF: EINVAL).
    {
      weight: 2,
      arbitrary: fc.record({
        t: fc.constant('fallocate' as const), f, mode: fc.constant<FallocateMode>('COLLAPSE_RANGE'),
        pos: fc.record({ kind: fc.constant('rel' as const), frac: fc.double({ min: 0, max: 0.9, noNaN: true }), aligned: fc.constant(true), delta: fc.integer({ min: -1, max: 1 }) }),
        len: fc.integer({ min: 1, max: 20 }).map((n) => n * BLOCK_SIZE),
      }),
    },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('fsync' as const), f }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('stat' as const), f }) },
  );
}

function arbOp(w: OpWeights, withPairs: boolean): fc.Arbitrary<Op> {
  const f = fc.integer({ min: 0, max: NAMES.length - 1 });
  const bad = fc.constantFrom<BadOp>('emptyName', 'nulName', 'longName', 'loneSurrogate', 'unlinkEmpty', 'lookupLong',
    'readTooLong', 'readNegativeLength', 'writeNegativeOffset', 'fallocateZeroLength', 'fallocateNegativeOffset',
    'fallocateBadMode', 'truncateNegative', 'truncatePastMax', 'writePastMax', 'badIno');
  return fc.oneof(
    { weight: 24, arbitrary: arbDataOp(w) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('create' as const), f, exclusive: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('lookup' as const), f }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('unlink' as const), f }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('list' as const), pageSize: fc.integer({ min: 1, max: 5 }), prefix: fc.constantFrom('', 'f', 'é', 'x') }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('remount' as const), kind: fc.constantFrom('unmount' as const, 'reboot' as const) }) },
    { weight: withPairs ? 3 : 0, arbitrary: fc.record({ t: fc.constant('pair' as const), a: arbDataOp(w), b: arbDataOp(w) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('bad' as const), f, what: bad }) },
  );
}

// ---- running a sequence --------------------------------------------------------------

/**
 * A write's data is a function of its seed (so counterexamples stay short): xorshift32
 * bytes with a period of PATTERN_PERIOD_BYTES, a prime, so no two pages of one write are
 * equal and a page moved by whole pages never matches what the model expects there.
 */
const PATTERN_PERIOD_BYTES = 4099;
function patternBytes(seed: number, lengthBytes: number): Buffer {
  const period = Buffer.allocUnsafe(PATTERN_PERIOD_BYTES);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < PATTERN_PERIOD_BYTES; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    period[i] = s & 0xff;
  }
  const out = Buffer.allocUnsafe(lengthBytes);
  if (lengthBytes > 0) out.fill(period);
  return out;
}

function resolve(pos: Pos, sizeBytes: number): number {
  if (pos.kind === 'abs') return pos.at;
  let at = Math.floor(pos.frac * sizeBytes);
  if (pos.aligned) at = (pageOf(at) + pos.delta) * BLOCK_SIZE;
  else at += pos.delta;
  return Math.max(0, at);
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

function assertBytes(actual: Buffer, expected: Buffer, what: string): void {
  if (actual.equals(expected)) return;
  const i = firstDifference(actual, expected);
  assert.fail(`${what}: length ${actual.length} vs. model ${expected.length}; first difference at +${i}: `
    + `engine ${actual[i]} vs. model ${expected[i]}${actual[i] === CANARY ? ' (the freed-block CANARY: stale data exposed)' : ''}`);
}

/** One step's expectations, built from the model before the call runs. */
interface Plan {
  label: string;
  call: () => Promise<unknown>;
  /** The error codes the call may fail with; empty: it must succeed. */
  expect: string[];
  /** Data blocks the change needs at least (ENOSPC is required when fewer are free). */
  needBlocks: number;
  /** Upper bound of blocks the engine may reserve; ENOSPC is legal only below it. 0: never ENOSPC. */
  boundBlocks: number;
  onSuccess: (result: unknown) => void;
  /** After ENOSPC (default: the model is unchanged). */
  onEnospc?: () => Promise<void>;
  /** Model index of the file whose stat is compared afterwards. */
  file?: number;
}

/** Outcome counts across all runs, printed once: shows which branches the properties reach. */
const coverage = new Map<string, number>();
function count(key: string): void {
  coverage.set(key, (coverage.get(key) ?? 0) + 1);
}

class Run {
  storage!: MemoryStorage;
  fs!: FileSystem;
  initialFreeBlocks = 0;
  readonly files: Array<ModelFile | undefined> = NAMES.map(() => undefined);
  /** The ino each name last had, for operations through a stale inode. */
  readonly lastIno: Array<number | undefined> = NAMES.map(() => undefined);
  /** ino -> last generation seen: (ino, generation) must never repeat. */
  readonly generations = new Map<number, number>();

  constructor(private readonly volumeBytes: number) {}

  async start(): Promise<void> {
    this.storage = new MemoryStorage(this.volumeBytes);
    await mkfs(this.storage);
    this.fs = await FileSystem.mount(this.storage, { canaryByte: CANARY });
    this.initialFreeBlocks = this.fs.statVolume().blocksFree;
    assert.equal(this.fs.statVolume().blocksUsed, 0);
    for (let f = 0; f < NAMES.length; f++) await this.step({ t: 'create', f, exclusive: true });
  }

  /** The inode to use for file f: its own, or a stale one no live file has now. */
  ino(f: number): number {
    const file = this.files[f];
    if (file) return file.ino;
    const stale = this.lastIno[f];
    return stale !== undefined && !this.files.some((m) => m?.ino === stale) ? stale : NO_SUCH_INO;
  }

  async step(op: Op): Promise<void> {
    switch (op.t) {
      case 'remount':
        return this.remount(op.kind);
      case 'list':
        return this.checkList(op.prefix, op.pageSize);
      case 'pair':
        // Operations on two files run concurrently (group commit, per-inode locks); on one file, in order.
        if (op.a.f !== op.b.f) return this.execute([this.plan(op.a), this.plan(op.b)]);
        await this.execute([this.plan(op.a)]);
        return this.execute([this.plan(op.b)]);
      default:
        return this.execute([this.plan(op)]);
    }
  }

  private plan(op: Exclude<Op, { t: 'remount' | 'list' | 'pair' }>): Plan {
    switch (op.t) {
      case 'create': return this.planCreate(op.f, op.exclusive);
      case 'lookup': return this.planLookup(op.f);
      case 'unlink': return this.planUnlink(op.f);
      case 'write': return this.planWrite(op.f, resolve(op.pos, this.sizeOf(op.f)), patternBytes(op.seed, op.len), op.sync);
      case 'read': return this.planRead(op.f, resolve(op.pos, this.sizeOf(op.f)), op.len);
      case 'truncate': return this.planTruncate(op.f, resolve(op.pos, this.sizeOf(op.f)));
      case 'fallocate': return this.planFallocate(op.f, op.mode, resolve(op.pos, this.sizeOf(op.f)), op.len);
      case 'fsync': return this.simple(`fsync ${NAMES[op.f]}`, op.f, () => this.fs.fsync(this.ino(op.f), false));
      case 'stat': return this.simple(`stat ${NAMES[op.f]}`, op.f, async () => this.fs.stat(this.ino(op.f)));
      case 'bad': return this.planBad(op.f, op.what);
    }
  }

  private sizeOf(f: number): number {
    return this.files[f]?.sizeBytes ?? 0;
  }

  private missing(f: number): string[] {
    return this.files[f] ? [] : ['ENOENT'];
  }

  private simple(label: string, f: number, call: () => Promise<unknown>): Plan {
    return { label, call, expect: this.missing(f), needBlocks: 0, boundBlocks: 0, onSuccess: () => undefined, file: f };
  }

  private planCreate(f: number, exclusive: boolean): Plan {
    const existing = this.files[f];
    return {
      label: `create ${NAMES[f]} exclusive=${exclusive}`,
      call: () => this.fs.create(NAMES[f], exclusive),
      expect: existing && exclusive ? ['EEXIST'] : [],
      needBlocks: 0, boundBlocks: 0,
      onSuccess: (r) => {
        const info = r as FileInfo;
        assert.equal(info.name, NAMES[f]);
        if (existing) {
          assert.equal(info.ino, existing.ino, 'non-exclusive create of an existing name returns that file');
          return;
        }
        assert.equal(info.sizeBytes, 0);
        assert.equal(info.blocks, 0);
        const previous = this.generations.get(info.ino);
        if (previous !== undefined) assert.ok(info.generation > previous, `ino ${info.ino} reused with generation ${info.generation} <= ${previous}`);
        this.generations.set(info.ino, info.generation);
        this.files[f] = new ModelFile(info.ino);
      },
      file: f,
    };
  }

  private planLookup(f: number): Plan {
    return {
      label: `lookup ${NAMES[f]}`, call: async () => this.fs.lookup(NAMES[f]),
      expect: this.missing(f), needBlocks: 0, boundBlocks: 0,
      onSuccess: (r) => assert.equal((r as FileInfo).ino, this.files[f]!.ino), file: f,
    };
  }

  private planUnlink(f: number): Plan {
    return {
      label: `unlink ${NAMES[f]}`, call: () => this.fs.unlink(NAMES[f]),
      expect: this.missing(f), needBlocks: 0, boundBlocks: 0,
      onSuccess: () => {
        this.lastIno[f] = this.files[f]!.ino;
        this.files[f] = undefined;
      },
    };
  }

  /** Argument errors come before the inode lookup in the engine; either is accepted together. */
  private expectArgs(f: number, argError: string | null): string[] {
    if (argError === null) return this.missing(f);
    return this.files[f] ? [argError] : [argError, 'ENOENT'];
  }

  private planWrite(f: number, offsetBytes: number, data: Buffer, sync: boolean): Plan {
    const end = offsetBytes + data.length;
    const argError = offsetBytes > FILE_BYTES_MAX || end > FILE_BYTES_MAX ? 'EFBIG' : null;
    const model = this.files[f];
    const pages = data.length === 0 ? 0 : pageOf(end - 1) - pageOf(offsetBytes) + 1;
    const need = model && pages > 0 ? model.holesIn(pageOf(offsetBytes), pageOf(end - 1)) : 0;
    return {
      label: `write ${NAMES[f]} [${offsetBytes}, +${data.length}) sync=${sync}`,
      call: () => this.fs.write(this.ino(f), offsetBytes, data, sync),
      expect: this.expectArgs(f, argError),
      needBlocks: need, boundBlocks: need > 0 ? need + mapBlocksBound(pages) : 0,
      onSuccess: (r) => {
        const m = this.files[f]!;
        m.write(offsetBytes, data);
        assert.deepEqual(r, { written: data.length, sizeBytes: m.sizeBytes });
      },
      file: f,
    };
  }

  private planRead(f: number, offsetBytes: number, lengthBytes: number): Plan {
    return {
      label: `read ${NAMES[f]} [${offsetBytes}, +${lengthBytes})`,
      call: () => this.fs.read(this.ino(f), offsetBytes, lengthBytes),
      expect: this.expectArgs(f, offsetBytes > FILE_BYTES_MAX ? 'EFBIG' : null),
      needBlocks: 0, boundBlocks: 0,
      onSuccess: (r) => assertBytes(r as Buffer, this.files[f]!.read(offsetBytes, lengthBytes), `read ${NAMES[f]} [${offsetBytes}, +${lengthBytes})`),
      file: f,
    };
  }

  private planTruncate(f: number, sizeBytes: number): Plan {
    return {
      label: `truncate ${NAMES[f]} to ${sizeBytes}`,
      call: () => this.fs.truncate(this.ino(f), sizeBytes),
      expect: this.expectArgs(f, sizeBytes > FILE_BYTES_MAX ? 'EFBIG' : null),
      needBlocks: 0, boundBlocks: 0,
      onSuccess: () => this.files[f]!.truncate(sizeBytes),
      file: f,
    };
  }

  private planFallocate(f: number, mode: FallocateMode, offsetBytes: number, lengthBytes: number): Plan {
    const end = offsetBytes + lengthBytes;
    const first = pageOf(offsetBytes);
    const last = pageOf(end - 1);
    const label = `fallocate ${NAMES[f]} ${mode} [${offsetBytes}, +${lengthBytes})`;
    let argError: string | null = null;
    if (offsetBytes > FILE_BYTES_MAX || end > FILE_BYTES_MAX) argError = 'EFBIG';
    else if (lengthBytes === 0) argError = 'EINVAL';
    else if (mode === 'COLLAPSE_RANGE' && (offsetBytes % BLOCK_SIZE !== 0 || lengthBytes % BLOCK_SIZE !== 0)) argError = 'EINVAL';
    const model = this.files[f];
    let expect = this.expectArgs(f, argError);
    if (expect.length === 0 && mode === 'COLLAPSE_RANGE' && end >= model!.sizeBytes) expect = ['EINVAL'];
    // Whole pages inside the range (ZERO_RANGE preallocates only those).
    const wholeFirst = Math.ceil(offsetBytes / BLOCK_SIZE);
    const wholeLast = Math.floor(end / BLOCK_SIZE) - 1;
    let need = 0;
    let pages = 0;
    if (expect.length === 0 && model) {
      if (mode === 'ALLOCATE' || mode === 'KEEP_SIZE') [need, pages] = [model.holesIn(first, last), last - first + 1];
      if (mode === 'ZERO_RANGE') [need, pages] = [model.holesIn(wholeFirst, wholeLast), Math.max(0, wholeLast - wholeFirst + 1)];
    }
    // COLLAPSE_RANGE allocates no data block, but its shift may need map blocks (for the
    // span of the pages it moves): ENOSPC is legal below that bound, and changes nothing.
    let shiftBound = 0;
    if (expect.length === 0 && mode === 'COLLAPSE_RANGE') {
      const moved = [...model!.alloc].filter((pg) => pg > last);
      if (moved.length > 0) shiftBound = mapBlocksBound(Math.max(...moved) - Math.min(...moved) + 1);
    }
    return {
      label,
      // Through the edge's check, as every caller (the engine asserts what it refuses).
      call: async () => {
        const r = fallocateRequest(mode, offsetBytes, lengthBytes);
        return this.fs.fallocate(this.ino(f), r.mode, r.offset, r.length);
      },
      expect, needBlocks: need, boundBlocks: need > 0 ? need + mapBlocksBound(pages) : shiftBound,
      onSuccess: () => {
        const m = this.files[f]!;
        switch (mode) {
          case 'ALLOCATE':
          case 'KEEP_SIZE':
            m.allocate(first, last);
            if (mode === 'ALLOCATE') m.sizeBytes = Math.max(m.sizeBytes, end);
            break;
          case 'PUNCH_HOLE':
            m.zero(offsetBytes, end);
            m.drop(wholeFirst, wholeLast);
            break;
          case 'ZERO_RANGE':
            m.zero(offsetBytes, end);
            if (wholeFirst <= wholeLast) {
              for (const pg of [...m.pages.keys()]) if (pg >= wholeFirst && pg <= wholeLast) m.pages.delete(pg);
              m.allocate(wholeFirst, wholeLast);
            }
            m.sizeBytes = Math.max(m.sizeBytes, end);
            break;
          case 'COLLAPSE_RANGE':
            m.collapse(offsetBytes, lengthBytes);
            break;
        }
      },
      onEnospc: mode === 'ZERO_RANGE' ? () => this.adoptPartialZero(f, offsetBytes, end) : undefined,
      file: f,
    };
  }

  /** ZERO_RANGE failed with ENOSPC: each byte of the range is old or zero; the model takes the engine's state. */
  private async adoptPartialZero(f: number, offsetBytes: number, endBytes: number): Promise<void> {
    const m = this.files[f]!;
    const to = Math.min(endBytes, m.sizeBytes);
    if (to > offsetBytes) {
      const actual = await this.fs.read(m.ino, offsetBytes, to - offsetBytes);
      const old = m.read(offsetBytes, to - offsetBytes);
      for (let i = 0; i < actual.length; i++) {
        if (actual[i] !== old[i] && actual[i] !== 0) assert.fail(`ZERO_RANGE after ENOSPC: byte ${offsetBytes + i} is ${actual[i]}, neither old ${old[i]} nor zero`);
      }
      m.zero(offsetBytes, to);
      m.write(offsetBytes, actual);
    }
    for (let pg = pageOf(offsetBytes); pg <= pageOf(endBytes - 1); pg++) {
      if (this.fs.iomap(m.ino, pg).state === 'HOLE') {
        assert.ok(!m.pages.has(pg) || m.pages.get(pg)!.every((b) => b === 0), `ZERO_RANGE after ENOSPC freed page ${pg} holding data`);
        m.pages.delete(pg);
        m.alloc.delete(pg);
      } else {
        m.alloc.add(pg);
      }
    }
  }

  private planBad(f: number, what: BadOp): Plan {
    const ino = this.ino(f);
    const none = (label: string, call: () => Promise<unknown>, expect: string[]): Plan =>
      ({ label, call, expect, needBlocks: 0, boundBlocks: 0, onSuccess: () => undefined });
    const withArgs = (label: string, call: () => Promise<unknown>, code: string): Plan => none(label, call, this.expectArgs(f, code));
    switch (what) {
      case 'emptyName': return none('create ""', () => this.fs.create('', false), ['EINVAL']);
      case 'nulName': return none('create "a\\0b"', () => this.fs.create('a\0b', true), ['EINVAL']);
      case 'longName': return none('create 256-byte name', () => this.fs.create('n'.repeat(NAME_BYTES_MAX + 1), true), ['ENAMETOOLONG']);
      case 'loneSurrogate': return none('create lone surrogate', () => this.fs.create('x\uD800', true), ['EINVAL']);
      case 'unlinkEmpty': return none('unlink ""', () => this.fs.unlink(''), ['EINVAL']);
      case 'lookupLong': return none('lookup 256 x é', async () => this.fs.lookup('é'.repeat(128)), ['ENAMETOOLONG']);
      case 'readTooLong': return withArgs('read past IO_MAX', () => this.fs.read(ino, 0, IO_BYTES_MAX + 1), 'ELIMIT');
      case 'readNegativeLength': return withArgs('read length -1', () => this.fs.read(ino, 0, -1), 'EINVAL');
      case 'writeNegativeOffset': return withArgs('write at -1', () => this.fs.write(ino, -1, Buffer.from('x'), false), 'EINVAL');
      // Length 0 is refused at the edge (server/rpc/validate.ts); the engine asserts it.
      case 'fallocateZeroLength': return withArgs('fallocate length 0', async () => { fallocateRequest('ALLOCATE', 0, 0); await this.fs.fallocate(ino, 'ALLOCATE', 0, 0); }, 'EINVAL');
      case 'fallocateNegativeOffset': return withArgs('fallocate at -4096', () => this.fs.fallocate(ino, 'PUNCH_HOLE', -BLOCK_SIZE, BLOCK_SIZE), 'EINVAL');
      case 'fallocateBadMode':
        return withArgs('fallocate mode BOGUS', () => this.fs.fallocate(ino, 'BOGUS' as FallocateMode, 0, BLOCK_SIZE), this.files[f] ? 'EINVAL' : 'ENOENT');
      case 'truncateNegative': return withArgs('truncate to -1', () => this.fs.truncate(ino, -1), 'EINVAL');
      case 'truncatePastMax': return withArgs('truncate past max', () => this.fs.truncate(ino, FILE_BYTES_MAX + 1), 'EFBIG');
      case 'writePastMax': return withArgs('write across max', () => this.fs.write(ino, FILE_BYTES_MAX - 2, Buffer.from('abc'), false), 'EFBIG');
      case 'badIno': return none('stat ino -1 / NaN', async () => { assert.throws(() => this.fs.stat(-1), { code: 'ENOENT' }); return this.fs.stat(Number.NaN); }, ['ENOENT']);
    }
  }

  private async execute(plans: Plan[]): Promise<void> {
    // A write short of space commits pending frees first, so they count as free here.
    const volume = this.fs.statVolume();
    const free = volume.blocksFree + volume.blocksPendingFree;
    const bound = plans.reduce((s, p) => s + p.boundBlocks, 0);
    const outcomes = await Promise.allSettled(plans.map((p) => p.call()));
    for (let i = 0; i < plans.length; i++) {
      const p = plans[i];
      const outcome = outcomes[i];
      const kind = p.label.split(' ').filter((w, j) => j === 0 || /^[A-Z_]+$/.test(w)).join(' ');
      if (outcome.status === 'fulfilled') {
        assert.equal(p.expect.length, 0, `${p.label}: succeeded, expected ${p.expect.join(' or ')}`);
        if (plans.length === 1) assert.ok(p.needBlocks <= free, `${p.label}: succeeded needing ${p.needBlocks} blocks with ${free} free`);
        p.onSuccess(outcome.value);
        count(`${kind}: ok`);
      } else {
        const err: unknown = outcome.reason;
        if (!(err instanceof DaxError)) throw err;
        count(`${kind}: ${err.code}`);
        if (err.code === 'ENOSPC' && p.expect.length === 0) {
          assert.ok(p.boundBlocks > 0 && free < bound, `${p.label}: ENOSPC with ${free} blocks free (bound ${bound}): ${err.message}`);
          await p.onEnospc?.();
        } else {
          assert.ok(p.expect.includes(err.code), `${p.label}: ${err.message}; expected ${p.expect.length ? p.expect.join(' or ') : 'success'}`);
        }
      }
      if (p.file !== undefined) this.checkStat(p.file, p.label);
    }
  }

  private checkStat(f: number, after: string): void {
    const m = this.files[f];
    if (!m) return;
    const info = this.fs.stat(m.ino);
    assert.equal(info.sizeBytes, m.sizeBytes, `after ${after}: size of ${NAMES[f]}`);
    assert.equal(info.blocks, m.alloc.size, `after ${after}: blocks of ${NAMES[f]}`);
  }

  private checkList(prefix: string, pageSize: number): void {
    const names: string[] = [];
    let token = '';
    for (let pages = 0; ; pages++) {
      assert.ok(pages <= NAMES.length, 'list does not terminate');
      const page = this.fs.list(prefix, token, pageSize);
      assert.ok(page.files.length <= pageSize);
      for (const info of page.files) {
        names.push(info.name);
        const f = NAMES.indexOf(info.name as (typeof NAMES)[number]);
        assert.equal(info.ino, this.files[f]?.ino, `list: ino of ${info.name}`);
      }
      if (page.nextPageToken === '') break;
      token = page.nextPageToken;
    }
    const expected = NAMES.filter((n, f) => this.files[f] && n.startsWith(prefix))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    assert.deepEqual(names, expected, `list prefix ${JSON.stringify(prefix)} page size ${pageSize}`);
  }

  private async remount(kind: 'unmount' | 'reboot'): Promise<void> {
    if (kind === 'unmount') {
      await this.fs.unmount();
    } else {
      // Power goes after a sync: nothing volatile matters, but mount must replay the journal.
      await this.fs.sync();
      this.storage.close();
    }
    this.storage = this.storage.reboot();
    this.fs = await FileSystem.mount(this.storage, { canaryByte: CANARY });
    assert.equal(this.fs.mountReport.wasClean, kind === 'unmount', `${kind}: clean flag`);
    assert.equal(this.fs.mountReport.orphansFreed, 0);
    count(`remount ${kind}`);
  }

  /** Every file against the model: names, stat, allocation, every byte. */
  async checkAll(when: string): Promise<void> {
    this.checkList('', 3);
    for (let f = 0; f < NAMES.length; f++) {
      const m = this.files[f];
      if (!m) {
        assert.throws(() => this.fs.lookup(NAMES[f]), { code: 'ENOENT' }, `${when}: ${NAMES[f]} was unlinked`);
        continue;
      }
      assert.equal(this.fs.lookup(NAMES[f]).ino, m.ino, `${when}: ino of ${NAMES[f]}`);
      this.checkStat(f, when);
      for (const pg of m.alloc) assert.notEqual(this.fs.iomap(m.ino, pg).state, 'HOLE', `${when}: ${NAMES[f]} page ${pg} allocated in the model`);
      if (m.sizeBytes <= FULL_READ_BYTES_MAX) {
        assertBytes(await this.fs.read(m.ino, 0, m.sizeBytes + BLOCK_SIZE), m.read(0, m.sizeBytes + BLOCK_SIZE), `${when}: all of ${NAMES[f]}`);
        continue;
      }
      // Sparse giants: every page the model stores or allocates, the head, and the tail.
      const pages = new Set([...m.alloc, ...Array.from({ length: 64 }, (_, i) => i), pageOf(m.sizeBytes - 1)]);
      for (const pg of pages) {
        const at = pg * BLOCK_SIZE;
        assertBytes(await this.fs.read(m.ino, at, BLOCK_SIZE), m.read(at, BLOCK_SIZE), `${when}: ${NAMES[f]} page ${pg}`);
      }
    }
  }

  /**
   * End of a run: compare, remount and compare, fsck, unlink all, no leaked block.
   * (fsck of the live storage after a sync is legal: it only reads, and a sync leaves the
   * media complete; a reboot of MemoryStorage costs a copy of the volume, so one is enough.)
   */
  async finish(): Promise<void> {
    await this.checkAll('end of run');
    await this.fs.unmount();
    this.storage = this.storage.reboot();
    await assertFsckClean(this.storage, 'at the end of the run');
    this.fs = await FileSystem.mount(this.storage, { canaryByte: CANARY });
    assert.equal(this.fs.mountReport.wasClean, true);
    await this.checkAll('after the final remount');
    for (let f = 0; f < NAMES.length; f++) if (this.files[f]) await this.step({ t: 'unlink', f });
    await this.fs.sync();
    const volume = this.fs.statVolume();
    assert.equal(volume.files, 0);
    assert.equal(volume.blocksFree, this.initialFreeBlocks, `blocks leaked: ${this.initialFreeBlocks - volume.blocksFree}`);
    await assertFsckClean(this.storage, 'after unlinking everything');
    await this.fs.unmount();
  }
}

async function runSequence(volumeBytes: number, ops: Op[]): Promise<Run> {
  const run = new Run(volumeBytes);
  await run.start();
  for (const op of ops) await run.step(op);
  await run.finish();
  return run;
}

function fcParams(numRuns: number): fc.Parameters<[Op[]]> {
  const params: fc.Parameters<[Op[]]> = { numRuns: Math.max(1, Math.round(numRuns * RUNS_FACTOR)) };
  if (process.env.DAXD_FC_SEED !== undefined) params.seed = Number(process.env.DAXD_FC_SEED);
  if (process.env.DAXD_FC_PATH !== undefined) params.path = process.env.DAXD_FC_PATH;
  if (process.env.DAXD_FC_NO_SHRINK !== undefined) params.endOnFailure = true;
  return params;
}

describe('file system against a model (fast-check)', function () {
  this.timeout(300_000);

  after(() => {
    const lines = [...coverage].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k} x${n}`);
    process.stdout.write(`      outcomes: ${lines.join(', ')}\n`);
  });

  it('random operation sequences on a 32 MiB volume match the model (remounts, pairs, tree edges, errors)', async () => {
    const weights = { large: 1, largeMaxBytes: 4 * MiB, far: 1 };
    await fc.assert(
      fc.asyncProperty(fc.array(arbOp(weights, true), { minLength: 1, maxLength: 80, size: 'medium' }), async (ops) => {
        await runSequence(32 * MiB, ops);
      }),
      fcParams(70),
    );
  });

  it('a full 16 MiB volume: ENOSPC is clean, required when space is short, and leaks nothing', async () => {
    const weights = { large: 6, largeMaxBytes: 16 * MiB, far: 0 };
    const before = coverage.get('write: ENOSPC') ?? 0;
    await fc.assert(
      fc.asyncProperty(fc.array(arbOp(weights, false), { minLength: 20, maxLength: 80, size: 'medium' }), async (ops) => {
        await runSequence(16 * MiB, ops);
      }),
      fcParams(30),
    );
    const enospc = (coverage.get('write: ENOSPC') ?? 0) - before;
    assert.ok(enospc > 0, 'no write hit ENOSPC: the property no longer fills the volume');
  });

  it('regression: COLLAPSE_RANGE near a full volume punched the range, then failed ENOSPC without shifting', async () => {
    const storage = new MemoryStorage(16 * MiB);
    await mkfs(storage);
    const fs = await FileSystem.mount(storage, { canaryByte: CANARY });
    const data = patternBytes(3, 5 * BLOCK_SIZE);
    // a: pages 0..4, map depth 2 (a byte once written at 5 MiB); c: pages 0..4 and 100000.
    const a = await fs.create('a', true);
    await fs.write(a.ino, 0, data, false);
    await fs.write(a.ino, 5 * MiB, Buffer.from('x'), false);
    await fs.truncate(a.ino, 5 * BLOCK_SIZE);
    const c = await fs.create('c', true);
    await fs.write(c.ino, 0, data, false);
    await fs.write(c.ino, 100_000 * BLOCK_SIZE, Buffer.from('y'), false);
    const b = await fs.create('b', true);
    await fs.fallocate(b.ino, 'KEEP_SIZE', 0, (fs.statVolume().blocksFree - 100) * BLOCK_SIZE);
    await fs.sync();
    const free = fs.statVolume().blocksFree;
    assert.ok(free > mapBlocksBound(4) && free < mapBlocksBound(100_000), `${free} blocks free`);
    // The shift of a's 4 pages needs few map blocks: it used to reserve for a whole
    // 2^18-page step (265 blocks at depth 2), after the range was already removed.
    await fs.fallocate(a.ino, 'COLLAPSE_RANGE', 0, BLOCK_SIZE);
    assert.equal(fs.stat(a.ino).sizeBytes, 4 * BLOCK_SIZE);
    assertBytes(await fs.read(a.ino, 0, 4 * BLOCK_SIZE), data.subarray(BLOCK_SIZE), 'a after collapse');
    // Shifting c's far page may really need more than is free: ENOSPC, and nothing changed.
    const sizeBytes = fs.stat(c.ino).sizeBytes;
    await assert.rejects(fs.fallocate(c.ino, 'COLLAPSE_RANGE', 0, BLOCK_SIZE), { code: 'ENOSPC' });
    assert.equal(fs.stat(c.ino).sizeBytes, sizeBytes);
    assert.equal(fs.stat(c.ino).blocks, 6);
    assertBytes(await fs.read(c.ino, 0, 5 * BLOCK_SIZE), data, 'c after a failed collapse');
    assertBytes(await fs.read(c.ino, 100_000 * BLOCK_SIZE, 1), Buffer.from('y'), 'c far page');
    await fs.unmount();
  });

  it('regression: overwriting allocated pages of a nearly full volume failed ENOSPC (reserved map blocks it never needs)', async () => {
    const storage = new MemoryStorage(16 * MiB);
    await mkfs(storage);
    const fs = await FileSystem.mount(storage, { canaryByte: CANARY });
    const a = await fs.create('a', true);
    await fs.write(a.ino, 0, patternBytes(5, 2 * BLOCK_SIZE), false);
    await fs.fallocate(a.ino, 'KEEP_SIZE', 2 * BLOCK_SIZE, BLOCK_SIZE);
    const b = await fs.create('b', true);
    const free = (): number => fs.statVolume().blocksFree;
    await fs.fallocate(b.ino, 'KEEP_SIZE', 0, (free() - mapBlocksBound(free()) - 40) * BLOCK_SIZE);
    // Down to 8 free blocks (fewer than the 9 of one page's map bound): a page in a new
    // leaf takes 2 blocks (the page and its map block), so first make the count even.
    const c = await fs.create('c', true);
    if (free() % 2 === 1) await fs.write(c.ino, 0, Buffer.from('c'), false);
    for (let leaf = 1; free() >= 1 + mapBlocksBound(1); leaf++) await fs.write(c.ino, leaf * 1024 * BLOCK_SIZE, Buffer.from('c'), false);
    await fs.sync();
    assert.equal(free(), mapBlocksBound(1) - 1);
    await fs.write(a.ino, 100, Buffer.from('overwrite'), true); // WRITTEN page
    await fs.write(a.ino, 2 * BLOCK_SIZE + 1, Buffer.from('convert'), true); // UNWRITTEN page
    await assert.rejects(fs.write(a.ino, 3 * BLOCK_SIZE, Buffer.from('hole'), false), { code: 'ENOSPC' });
    assert.equal((await fs.read(a.ino, 100, 9)).toString(), 'overwrite');
    assert.equal((await fs.read(a.ino, 2 * BLOCK_SIZE + 1, 7)).toString(), 'convert');
    assert.equal(fs.stat(a.ino).blocks, 3);
    await fs.unmount();
  });

  it('every fallocate mode on one file, remounts in between', async () => {
    const f = 0;
    const abs = (at: number): Pos => ({ kind: 'abs', at });
    const ops: Op[] = [
      { t: 'write', f, pos: abs(100), len: 5 * BLOCK_SIZE, sync: false, seed: 7 },
      { t: 'fallocate', f, mode: 'KEEP_SIZE', pos: abs(0), len: 64 * BLOCK_SIZE },
      { t: 'fallocate', f, mode: 'PUNCH_HOLE', pos: abs(BLOCK_SIZE - 1), len: BLOCK_SIZE + 2 },
      { t: 'fallocate', f, mode: 'ZERO_RANGE', pos: abs(3 * BLOCK_SIZE + 5), len: 2 * BLOCK_SIZE },
      { t: 'remount', kind: 'reboot' },
      { t: 'fallocate', f, mode: 'COLLAPSE_RANGE', pos: abs(BLOCK_SIZE), len: BLOCK_SIZE },
      { t: 'fallocate', f, mode: 'COLLAPSE_RANGE', pos: abs(0), len: 10 * BLOCK_SIZE },
      { t: 'fallocate', f, mode: 'COLLAPSE_RANGE', pos: abs(1), len: BLOCK_SIZE },
      { t: 'fallocate', f, mode: 'ALLOCATE', pos: abs(4 * GiB), len: 3 },
      { t: 'remount', kind: 'unmount' },
      { t: 'fallocate', f, mode: 'COLLAPSE_RANGE', pos: abs(BLOCK_SIZE), len: BLOCK_SIZE },
      { t: 'truncate', f, pos: abs(BLOCK_SIZE + 1) },
      { t: 'read', f, pos: abs(0), len: 3 * BLOCK_SIZE },
    ];
    await runSequence(32 * MiB, ops);
  });
});
