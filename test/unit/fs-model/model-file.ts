/** The model of test/unit/fs-model.test.ts: one file as Linux would keep it (size, sparse bytes, allocated pages). */
import { BLOCK_SIZE } from '../../../server/limits';
import { MiB } from '../../support/units';

export const CANARY = 0xcc;
/** Files with a name of two bytes of UTF-8 in one, so byte order and char order differ. */
export const NAMES = ['f0', 'f1', 'é2', 'f3'] as const;
/** An inode number no volume of these tests has (maxFiles is 2048 at 32 MiB). */
export const NO_SUCH_INO = 1_000_000;
/** Files larger than this are compared page by page instead of in one read. */
export const FULL_READ_BYTES_MAX = 32 * MiB;

// ---- the model ---------------------------------------------------------------------

export function pageOf(offsetBytes: number): number {
  return Math.floor(offsetBytes / BLOCK_SIZE);
}

export class ModelFile {
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
