/** The operations of test/unit/fs-model.test.ts: their types and fast-check generators, and the data a write carries. */
import fc from 'fast-check';
import type { FallocateMode } from '../../../server/fs/types';
import { BLOCK_SIZE, FILE_BYTES_MAX } from '../../../server/limits';
import { GiB, MiB } from '../../support/units';
import { NAMES } from './model-file';

/** Where an offset or size lands: a fraction of the current size, or an absolute byte. */
export type Pos =
  | { kind: 'rel'; frac: number; aligned: boolean; delta: number }
  | { kind: 'abs'; at: number };

export type DataOp =
  | { t: 'write'; f: number; pos: Pos; len: number; sync: boolean; seed: number }
  | { t: 'read'; f: number; pos: Pos; len: number }
  | { t: 'truncate'; f: number; pos: Pos }
  | { t: 'fallocate'; f: number; mode: FallocateMode; pos: Pos; len: number }
  | { t: 'fsync'; f: number }
  | { t: 'stat'; f: number };

export type BadOp =
  | 'emptyName' | 'nulName' | 'longName' | 'loneSurrogate' | 'unlinkEmpty' | 'lookupLong'
  | 'readTooLong' | 'readNegativeLength' | 'writeNegativeOffset' | 'fallocateZeroLength'
  | 'fallocateNegativeOffset' | 'fallocateBadMode' | 'truncateNegative' | 'truncatePastMax'
  | 'writePastMax' | 'badIno';

export type Op =
  | DataOp
  | { t: 'create'; f: number; exclusive: boolean }
  | { t: 'lookup'; f: number }
  | { t: 'unlink'; f: number }
  | { t: 'list'; pageSize: number; prefix: string }
  | { t: 'remount'; kind: 'unmount' | 'reboot' }
  | { t: 'pair'; a: DataOp; b: DataOp }
  | { t: 'bad'; f: number; what: BadOp };

export interface OpWeights {
  /** Weight of large writes and ranges, and their maximum length. */
  large: number;
  largeMaxBytes: number;
  /** Weight of offsets at the edges of the map tree and of the maximum file size. */
  far: number;
}

export function arbPos(w: OpWeights): fc.Arbitrary<Pos> {
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

export function arbLen(w: OpWeights): fc.Arbitrary<number> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 200 }) },
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 3 * BLOCK_SIZE + 17 }) },
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 8 }).map((n) => n * BLOCK_SIZE) },
    { weight: 1 + w.large, arbitrary: fc.integer({ min: 1, max: 1 * MiB }) },
    { weight: w.large, arbitrary: fc.integer({ min: 1, max: w.largeMaxBytes / (4 * BLOCK_SIZE) }).map((n) => n * 4 * BLOCK_SIZE) },
  );
}

export function arbDataOp(w: OpWeights): fc.Arbitrary<DataOp> {
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

export function arbOp(w: OpWeights, withPairs: boolean): fc.Arbitrary<Op> {
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
export const PATTERN_PERIOD_BYTES = 4099;
export function patternBytes(seed: number, lengthBytes: number): Buffer {
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
