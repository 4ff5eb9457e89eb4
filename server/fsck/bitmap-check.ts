/**
 * The block bitmap against the blocks the maps reference: they must be equal, bit for
 * bit, inside the data zone, and the bitmap must be clear past it. Compared a 32-bit word
 * at a time. Leaks come out as runs of blocks; missing bits one per block (their owners
 * are named afterwards, for the first TRACKED_BLOCKS_MAX of them).
 */
import { BITS_PER_BLOCK, Layout } from '../media/layout';
import { popcount } from '../alloc/allocator';
import type { BlockSet } from './block-set';
import { TRACKED_BLOCKS_MAX } from './block-refs';
import type { OverlayReader } from './overlay';
import type { FindingLog } from './report';

const WORDS_PER_BLOCK = BITS_PER_BLOCK / 32;
/** Bitmap blocks scanned between two dropResident hints (8 MiB). */
const DROP_STEP_BLOCKS = 2048;

export interface BitmapResult {
  /** Set bits inside the data zone. */
  used: number;
  /** Referenced blocks free in the bitmap: the first TRACKED_BLOCKS_MAX, and how many in all. */
  missing: number[];
  missingCount: number;
}

/** Leaks are reported only when `reportLeaks` (every map was walked completely). */
export function compareBlockBitmap(reader: OverlayReader, layout: Layout, seen: BlockSet, log: FindingLog, reportLeaks: boolean): BitmapResult {
  const result: BitmapResult = { used: 0, missing: [], missingCount: 0 };
  const dataBits = layout.data.count;
  const leaks = new RunLog((a, n) => {
    if (reportLeaks) log.add('BITMAP_LEAK', `blocks ${a}..${a + n - 1} (${n}) are allocated in the block bitmap but no file references them`);
  });
  for (let g = 0; g < layout.blockBitmap.count; g++) {
    if (g > 0 && g % DROP_STEP_BLOCKS === 0) reader.done(layout.blockBitmap.start + g - DROP_STEP_BLOCKS, DROP_STEP_BLOCKS);
    const words = reader.words(layout.blockBitmap.start + g);
    for (let w = 0; w < WORDS_PER_BLOCK; w++) {
      const bit0 = g * BITS_PER_BLOCK + w * 32;
      const valid = validMask(dataBits - bit0);
      const beyond = (words[w] & ~valid) >>> 0;
      if (beyond !== 0) {
        log.add('BITMAP_BEYOND_DATA', `block bitmap block ${layout.blockBitmap.start + g} word ${w}: bits 0x${beyond.toString(16)} set past the data zone (${dataBits} blocks)`);
      }
      if (valid === 0) continue;
      const inZone = (words[w] & valid) >>> 0;
      result.used += popcount(inZone);
      const sn = seen.words[bit0 >>> 5];
      const leak = (inZone & ~sn) >>> 0;
      const miss = (sn & ~inZone) >>> 0;
      if (leak === 0) leaks.cut();
      else for (let b = 0; b < 32; b++) leaks.bit(layout.data.start + bit0 + b, ((leak >>> b) & 1) === 1);
      if (miss === 0) continue;
      for (let b = 0; b < 32; b++) {
        if (((miss >>> b) & 1) === 0) continue;
        result.missingCount++;
        if (result.missing.length < TRACKED_BLOCKS_MAX) result.missing.push(layout.data.start + bit0 + b);
      }
    }
  }
  leaks.cut();
  reader.done(layout.blockBitmap.start, layout.blockBitmap.count);
  return result;
}

/** Mask of the bits of a word that lie in the data zone, given how many zone bits remain. */
function validMask(bitsLeft: number): number {
  if (bitsLeft <= 0) return 0;
  if (bitsLeft >= 32) return 0xffffffff;
  return 2 ** bitsLeft - 1;
}

/** Coalesces consecutive blocks into runs, reported as each run ends. */
class RunLog {
  private start = 0;
  private length = 0;

  constructor(private readonly report: (start: number, length: number) => void) {}

  bit(pfn: number, on: boolean): void {
    if (!on) return this.cut();
    if (this.length > 0 && this.start + this.length === pfn) {
      this.length++;
      return;
    }
    this.cut();
    this.start = pfn;
    this.length = 1;
  }

  cut(): void {
    if (this.length > 0) this.report(this.start, this.length);
    this.length = 0;
  }
}
