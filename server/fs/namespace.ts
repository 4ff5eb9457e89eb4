/**
 * The flat namespace: name -> ino, plus the names kept sorted so List pages by prefix
 * in O(log n + page) with a stable continuation token (the last name returned).
 */
import assert from 'node:assert';
import { InvalidArgumentError, NameTooLongError } from '../errors';
import { NAME_BYTES_MAX } from '../limits';

/** 1..255 bytes of UTF-8, no NUL, and a valid Unicode string (no lone surrogates). */
export function validateName(name: string): void {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 0) throw new InvalidArgumentError('name is empty (1..255 bytes of UTF-8 required)');
  if (bytes > NAME_BYTES_MAX) throw new NameTooLongError(bytes, NAME_BYTES_MAX);
  if (name.includes('\0')) throw new InvalidArgumentError('name contains a NUL byte');
  if (!name.isWellFormed()) throw new InvalidArgumentError('name is not valid UTF-8 (lone surrogate)');
}

export class Namespace {
  private readonly byName = new Map<string, number>();
  private readonly sorted: string[] = [];

  get size(): number {
    return this.byName.size;
  }

  get(name: string): number | undefined {
    return this.byName.get(name);
  }

  /** Bulk load at mount: one sort instead of n insertions. */
  loadAll(entries: Iterable<[string, number]>): void {
    for (const [name, ino] of entries) {
      if (this.byName.has(name)) assert.fail(`duplicate name ${JSON.stringify(name)} on media`);
      this.byName.set(name, ino);
      this.sorted.push(name);
    }
    this.sorted.sort(compare);
  }

  add(name: string, ino: number): void {
    assert(!this.byName.has(name));
    this.byName.set(name, ino);
    this.sorted.splice(this.lowerBound(name), 0, name);
  }

  remove(name: string): void {
    assert(this.byName.delete(name));
    const i = this.lowerBound(name);
    assert(this.sorted[i] === name);
    this.sorted.splice(i, 1);
  }

  /** Names with `prefix`, strictly after `after`, at most `limit`; `more` if any follow. */
  page(prefix: string, after: string, limit: number): { names: string[]; more: boolean } {
    // UTF-8 order, as the list: JavaScript's `>` compares UTF-16 code units.
    let i = this.lowerBound(compare(after, prefix) > 0 ? after : prefix);
    if (i < this.sorted.length && this.sorted[i] === after) i++;
    const names: string[] = [];
    for (; i < this.sorted.length && names.length < limit; i++) {
      if (!this.sorted[i].startsWith(prefix)) break;
      names.push(this.sorted[i]);
    }
    const more = i < this.sorted.length && this.sorted[i].startsWith(prefix);
    return { names, more };
  }

  private lowerBound(name: string): number {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(this.sorted[mid], name) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/**
 * Byte order of UTF-8 (what clients see), not UTF-16 code unit order. For well-formed
 * strings (names are validated, and decoding from media yields well-formed strings) UTF-8
 * byte order is code point order, which UTF-16 code unit order matches except between a
 * surrogate (a code point above U+FFFF) and a unit in U+E000..U+FFFF: at the first
 * difference those two ranges swap. Allocation-free: mount sorts 100k names with it.
 */
export function compare(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}
