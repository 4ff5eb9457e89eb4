/**
 * One session's page table for one file: its PTEs, keyed by virtual page number
 * vpn = pgoff * 2 + (writable ? 1 : 0) (a session holds at most a read-only and a writable
 * PTE per page), each with the 128-bit random key its token carries. An open-addressing
 * hash (linear probing) over typed arrays: 24 bytes a slot, no object per PTE, so memory
 * stays O(PTEs held) for sparse and dense mappings alike. A leaf module: no imports.
 *
 * Invariants: vpn[i] is EMPTY, DELETED or a vpn present once; `size` counts present
 * slots, `used` present + deleted; used <= cap * MAX_LOAD, so every probe ends at an
 * EMPTY slot.
 */

const EMPTY = -1;
const DELETED = -2;
const MIN_CAP = 8;
const MAX_LOAD = 0.8;
const TWO_32 = 2 ** 32;

/** The largest vpn (pgoff * 2 + 1) a table holds: tokens carry it in 48 bits. */
export const VPN_MAX = 2 ** 48 - 1;

export class PageTable {
  private vpns = new Float64Array(MIN_CAP).fill(EMPTY);
  private keys = new Uint32Array(MIN_CAP * 4);
  private mask = MIN_CAP - 1;
  private used = 0;
  /** PTEs in the table. */
  size = 0;

  /** Bytes of the table's arrays (what it costs besides its object). */
  get bytes(): number {
    return this.vpns.byteLength + this.keys.byteLength;
  }

  private home(vpn: number): number {
    const lo = vpn >>> 0;
    const hi = (vpn / TWO_32) >>> 0;
    return (Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> 0) & this.mask;
  }

  /** The slot holding `vpn`, or -1. */
  find(vpn: number): number {
    for (let i = this.home(vpn); ; i = (i + 1) & this.mask) {
      const v = this.vpns[i];
      if (v === vpn) return i;
      if (v === EMPTY) return -1;
    }
  }

  /** True when `vpn` is present with exactly this key. */
  matches(vpn: number, k0: number, k1: number, k2: number, k3: number): boolean {
    const i = this.find(vpn);
    if (i < 0) return false;
    const k = this.keys;
    const o = i * 4;
    return k[o] === k0 && k[o + 1] === k1 && k[o + 2] === k2 && k[o + 3] === k3;
  }

  /** Copies the key of slot `i` into `out` at `at` (4 words). */
  keyOf(i: number, out: Uint32Array, at: number): void {
    const k = this.keys;
    const o = i * 4;
    out[at] = k[o];
    out[at + 1] = k[o + 1];
    out[at + 2] = k[o + 2];
    out[at + 3] = k[o + 3];
  }

  /** Inserts an absent `vpn` with the key `src[at..at+4)`. */
  insert(vpn: number, src: Uint32Array, at: number): void {
    if (this.used + 1 > (this.mask + 1) * MAX_LOAD) this.rehash();
    let i = this.home(vpn);
    while (this.vpns[i] >= 0) i = (i + 1) & this.mask;
    if (this.vpns[i] === EMPTY) this.used++;
    this.vpns[i] = vpn;
    const k = this.keys;
    const o = i * 4;
    k[o] = src[at];
    k[o + 1] = src[at + 1];
    k[o + 2] = src[at + 2];
    k[o + 3] = src[at + 3];
    this.size++;
  }

  /** Removes `vpn`; false when absent. */
  remove(vpn: number): boolean {
    const i = this.find(vpn);
    if (i < 0) return false;
    this.vpns[i] = DELETED;
    this.keys.fill(0, i * 4, i * 4 + 4);
    this.size--;
    if (this.size === 0) this.clear();
    return true;
  }

  /** Every vpn present, in table order (a copy: the caller may remove while it walks). */
  vpnList(): number[] {
    const out: number[] = [];
    for (const v of this.vpns) if (v >= 0) out.push(v);
    return out;
  }

  clear(): void {
    if (this.mask + 1 > MIN_CAP) {
      this.vpns = new Float64Array(MIN_CAP);
      this.keys = new Uint32Array(MIN_CAP * 4);
      this.mask = MIN_CAP - 1;
    }
    this.vpns.fill(EMPTY);
    this.keys.fill(0);
    this.used = 0;
    this.size = 0;
  }

  /** Grows (doubling) when more than half the load is live, else only drops DELETED slots. */
  private rehash(): void {
    const oldV = this.vpns;
    const oldK = this.keys;
    let cap = this.mask + 1;
    while ((this.size + 1) > cap * MAX_LOAD / 2 + 1) cap *= 2;
    this.vpns = new Float64Array(cap).fill(EMPTY);
    this.keys = new Uint32Array(cap * 4);
    this.mask = cap - 1;
    this.used = 0;
    this.size = 0;
    for (let j = 0; j < oldV.length; j++) if (oldV[j] >= 0) this.insert(oldV[j], oldK, j * 4);
  }
}
