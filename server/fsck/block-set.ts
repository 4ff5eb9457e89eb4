/**
 * A set of data-zone blocks as a bitmap: one bit per block, the same bit order as the
 * on-media block bitmap (bit i = pfn data.start + i, word i >>> 5, bit i & 31), so the
 * two compare word by word. 32 MiB for a 1 TiB volume, where a Set would take gigabytes.
 */
import assert from 'node:assert';

export class BlockSet {
  readonly words: Uint32Array;

  /** `bits` rounded up to whole words; bits past `bits` stay clear. */
  constructor(readonly bits: number) {
    assert(Number.isSafeInteger(bits) && bits >= 0, `bits ${bits}`);
    this.words = new Uint32Array(Math.ceil(bits / 32));
  }

  has(bit: number): boolean {
    return ((this.words[bit >>> 5] >>> (bit & 31)) & 1) === 1;
  }

  /** Sets the bit; returns whether it was already set. */
  testAndSet(bit: number): boolean {
    assert(bit >= 0 && bit < this.bits, `bit ${bit} outside [0, ${this.bits})`);
    const w = bit >>> 5;
    const mask = 1 << (bit & 31);
    const was = (this.words[w] & mask) !== 0;
    this.words[w] |= mask;
    return was;
  }
}
