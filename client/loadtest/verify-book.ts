/**
 * What verify mode knows about every page it wrote: per file and page, the generation of
 * the newest acknowledged write (`acked`) and of the newest issued one (`issued`).
 *
 * The rule a read is checked against: a read issued when page p's acknowledged generation
 * was a, and completing when its issued generation is i, must see a generation in [a, i]
 * (0 meaning all zeros). For that to be exact, writes of one page never overlap in time:
 * writers take the page locks (PageLocks) of the range they write, in ascending order, and
 * hold them until the write is answered. Reads take no lock.
 *
 * A write that failed leaves `acked` where it was (its data may or may not have landed; the
 * range [a, i] covers both). Mismatches are kept (the first MISMATCHES_KEPT) with their
 * location, and counted.
 */
import assert from 'node:assert';
import { checkPage, PAGE_BYTES, PayloadPool, stampPage, type PageExpectation, type PageMismatch } from './block-header';
import { Rng } from './rng';

export const MISMATCHES_KEPT = 100;
/** Waiters on one page lock; more means a bug in the workload (locks are held for one op). */
const LOCK_WAITERS_MAX = 4096;

export interface VerifyFile {
  /** Index of the file in the run (what headers carry). */
  index: number;
  ino: number;
  name: string;
  pages: number;
}

export interface Mismatch extends PageMismatch {
  file: string;
  ino: number;
  index: number;
  page: number;
  offset: number;
  /** Which path read it (read, mapped load, DMA read, ...). */
  via: string;
  expected: { genMin: number; genMax: number; allowZero: boolean };
  atMs: number;
}

export class PageLocks {
  private readonly held = new Map<number, Array<() => void>>();

  private static key(file: number, page: number): number {
    return file * 2 ** 32 + page;
  }

  /** Locks pages [first, first + n) of file, in ascending order; returns the release. */
  async lock(file: number, first: number, n: number): Promise<() => void> {
    for (let p = first; p < first + n; p++) {
      const key = PageLocks.key(file, p);
      const waiters = this.held.get(key);
      if (waiters === undefined) this.held.set(key, []);
      else {
        assert(waiters.length < LOCK_WAITERS_MAX, 'page lock wait list overflow');
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    }
    return () => {
      for (let p = first; p < first + n; p++) {
        const key = PageLocks.key(file, p);
        const waiters = this.held.get(key);
        assert(waiters !== undefined, 'released a page lock that is not held');
        const next = waiters.shift();
        if (next) next(); // hand over: the page stays locked
        else this.held.delete(key);
      }
    };
  }
}

export class VerifyBook {
  readonly pool: PayloadPool;
  readonly locks = new PageLocks();
  readonly mismatches: Mismatch[] = [];
  mismatchCount = 0;
  pagesChecked = 0;
  pagesStamped = 0;
  private readonly acked: Uint32Array[] = [];
  private readonly issued: Uint32Array[] = [];
  private readonly startedAt = performance.now();

  constructor(readonly runTag: number, readonly files: readonly VerifyFile[], seed: number) {
    const rng = new Rng(seed ^ 0x5eed);
    this.pool = new PayloadPool(rng.fill(Buffer.alloc(64 * 1024)));
    for (const f of files) {
      assert.equal(f.index, this.acked.length, 'verify files must be indexed 0..n-1 in order');
      this.acked.push(new Uint32Array(f.pages));
      this.issued.push(new Uint32Array(f.pages));
    }
  }

  /** The generations a write of pages [first, first + n) will carry (the pages must be locked). */
  beginWrite(file: number, first: number, n: number): Uint32Array {
    const issued = this.issued[file];
    const gens = new Uint32Array(n);
    for (let i = 0; i < n; i++) gens[i] = ++issued[first + i];
    return gens;
  }

  /** Stamps n pages into buf (n * 4096 bytes) with the generations of beginWrite. */
  stamp(buf: Buffer, file: number, first: number, gens: Uint32Array, writer: number): void {
    assert(buf.length >= gens.length * PAGE_BYTES, 'buffer shorter than the stamped pages');
    for (let i = 0; i < gens.length; i++) {
      stampPage(buf.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES), this.pool, {
        runTag: this.runTag, file, page: first + i, generation: gens[i], writer,
      });
    }
    this.pagesStamped += gens.length;
  }

  /** The write was answered: its generations are now the ones reads must see (at least). */
  endWrite(file: number, first: number, gens: Uint32Array): void {
    const acked = this.acked[file];
    for (let i = 0; i < gens.length; i++) if (acked[first + i] < gens[i]) acked[first + i] = gens[i];
  }

  /** The lowest generations a read issued now may see. */
  snapshot(file: number, first: number, n: number): Uint32Array {
    return this.acked[file].slice(first, first + n);
  }

  /**
   * Checks the n pages of buf read from pages [first, first + n) of file, given the
   * generations snapshot() returned at issue. Returns false if any page is wrong.
   */
  check(buf: Buffer, file: number, first: number, genMins: Uint32Array, via: string, allowZero = false): boolean {
    const issued = this.issued[file];
    let ok = true;
    for (let i = 0; i < genMins.length; i++) {
      const page = first + i;
      const expect: PageExpectation = { runTag: this.runTag, file, page, genMin: genMins[i], genMax: issued[page], allowZero };
      ok = this.checkOne(buf.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES), expect, via) && ok;
    }
    return ok;
  }

  /** Checks one page against an explicit expectation (workloads with their own rules). */
  checkOne(page: Buffer, expect: PageExpectation, via: string): boolean {
    this.pagesChecked++;
    const bad = checkPage(page, expect);
    if (bad === null) return true;
    this.mismatchCount++;
    if (this.mismatches.length < MISMATCHES_KEPT) {
      const f = this.files[expect.file];
      this.mismatches.push({
        ...bad, file: f.name, ino: f.ino, index: f.index, page: expect.page, offset: expect.page * PAGE_BYTES, via,
        expected: { genMin: expect.genMin, genMax: expect.genMax, allowZero: expect.allowZero === true }, atMs: Math.round(performance.now() - this.startedAt),
      });
    }
    return false;
  }
}
