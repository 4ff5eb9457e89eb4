/**
 * The in-memory model daxd-fsx checks the server against: the bytes and size of one file
 * as POSIX and daxd's documented semantics say they must be, and each session's private
 * (COW) pages.
 *
 * Invariant: bytes at and past `size` are zero in `data` (so growing the file, by any
 * operation, exposes zeros, as the server's zeroPastEof guarantees).
 */
import assert from 'node:assert';
import { PAGE_BYTES } from '../block-header';

export class FileModel {
  readonly data: Buffer;
  size = 0;

  constructor(readonly capacityBytes: number) {
    assert(capacityBytes % PAGE_BYTES === 0, 'model capacity must be whole pages');
    this.data = Buffer.alloc(capacityBytes);
  }

  get pages(): number {
    return Math.ceil(this.size / PAGE_BYTES);
  }

  /** What read(2) returns: short at EOF. */
  read(offset: number, length: number): Buffer {
    const end = Math.min(this.size, offset + length);
    return Buffer.from(this.data.subarray(Math.min(offset, end), end));
  }

  /** What a mapping shows: bytes past EOF inside the last page read as zeros. */
  mapped(offset: number, length: number): Buffer {
    return Buffer.from(this.data.subarray(offset, offset + length));
  }

  /** A copy of page pg as a COW fault would take it now. */
  page(pg: number): Buffer {
    return Buffer.from(this.data.subarray(pg * PAGE_BYTES, (pg + 1) * PAGE_BYTES));
  }

  write(offset: number, bytes: Uint8Array): void {
    this.fits(offset + bytes.length);
    this.data.set(bytes, offset);
    this.size = Math.max(this.size, offset + bytes.length);
  }

  /** A store through a mapping or DMA: inside the file only, the size never changes. */
  store(offset: number, bytes: Uint8Array): void {
    assert(offset + bytes.length <= this.size, 'stores stay below EOF');
    this.data.set(bytes, offset);
  }

  truncate(size: number): void {
    this.fits(size);
    if (size < this.size) this.data.fill(0, size, this.size);
    this.size = size;
  }

  punch(offset: number, length: number): void {
    const end = Math.min(this.size, offset + length);
    if (offset < end) this.data.fill(0, offset, end);
  }

  /** FALLOC_FL_ZERO_RANGE without KEEP_SIZE: zeros, and the size grows to cover the range. */
  zeroRange(offset: number, length: number): void {
    this.fits(offset + length);
    this.punch(offset, length);
    this.size = Math.max(this.size, offset + length);
  }

  /** fallocate mode ALLOCATE: contents unchanged, the size grows to cover the range. */
  allocate(offset: number, length: number): void {
    this.fits(offset + length);
    this.size = Math.max(this.size, offset + length);
  }

  collapse(offset: number, length: number): void {
    assert(offset % PAGE_BYTES === 0 && length % PAGE_BYTES === 0 && offset + length < this.size, 'collapse range');
    this.data.copy(this.data, offset, offset + length, this.size);
    this.data.fill(0, this.size - length, this.size);
    this.size -= length;
  }

  private fits(end: number): void {
    assert(end <= this.capacityBytes, `model capacity exceeded (${end} vs. max ${this.capacityBytes})`);
  }
}

/** A private (COW) mapping's own pages: copied on first store, then never touched by the file. */
export class PrivatePages {
  readonly pages = new Map<number, Buffer>();

  /** What a load of [offset, offset + length) through the private mapping must return. */
  load(file: FileModel, offset: number, length: number): Buffer {
    const out = file.mapped(offset, length);
    for (let pg = Math.floor(offset / PAGE_BYTES); pg * PAGE_BYTES < offset + length; pg++) {
      const copy = this.pages.get(pg);
      if (!copy) continue;
      const from = Math.max(offset, pg * PAGE_BYTES);
      const to = Math.min(offset + length, (pg + 1) * PAGE_BYTES);
      copy.copy(out, from - offset, from - pg * PAGE_BYTES, to - pg * PAGE_BYTES);
    }
    return out;
  }

  /** A store through the private mapping: each page copied from the file on its first store. */
  store(file: FileModel, offset: number, bytes: Uint8Array): void {
    for (let pg = Math.floor(offset / PAGE_BYTES); pg * PAGE_BYTES < offset + bytes.length; pg++) {
      let copy = this.pages.get(pg);
      if (!copy) this.pages.set(pg, (copy = file.page(pg)));
      const from = Math.max(offset, pg * PAGE_BYTES);
      const to = Math.min(offset + bytes.length, (pg + 1) * PAGE_BYTES);
      copy.set(bytes.subarray(from - offset, to - offset), from - pg * PAGE_BYTES);
    }
  }
}
