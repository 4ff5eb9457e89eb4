/**
 * The header daxd-load stamps on every 4 KiB page it writes in verify mode, and the check
 * every read applies to it (as fio's verify headers).
 *
 * Layout of a page (little-endian):
 *
 *   offset  size  field       what it catches
 *   0       4     magic       'DXLB': a page never written by daxd-load (stale data, zeros)
 *   4       4     runTag      a page written by another run (a block reused without zeroing)
 *   8       4     file        a page of another file (misdirected write or read)
 *   12      4     page low    a page of the same file at another offset (collapse/shift bugs,
 *   16      4     page high   wrong offsets in a pipeline)
 *   20      4     generation  an older write of the right page (lost or reordered write)
 *   24      4     writer      (diagnostic only: which worker wrote it)
 *   28      4     checksum    CRC-32 of bytes [0, 28) and [32, 4096): torn or flipped bytes
 *   32      ...   payload     pseudo-random bytes chosen by (file, page, generation)
 *
 * A page that was never written (generation 0) must read as all zeros.
 */
import { crc32 } from 'node:zlib';
import { PAGE_BYTES } from '../../wire/limits';

export { PAGE_BYTES };
export const HEADER_BYTES = 32;
export const BLOCK_MAGIC = 0x424c5844; // 'DXLB' little-endian

/** What a page must hold: the generation of the newest write that may be visible lies in [genMin, genMax]. */
export interface PageExpectation {
  runTag: number;
  file: number;
  page: number;
  genMin: number;
  genMax: number;
  /** All zeros is right too (the page may have been punched or truncated away). */
  allowZero?: boolean;
}

export interface PageHeader {
  magic: number;
  runTag: number;
  file: number;
  page: number;
  generation: number;
  writer: number;
  checksum: number;
}

export type MismatchKind = 'not-zero' | 'magic' | 'checksum' | 'run' | 'file' | 'page' | 'generation';

export interface PageMismatch {
  kind: MismatchKind;
  /** One sentence: what was expected and what was found. */
  detail: string;
  found: PageHeader | null;
}

/**
 * The payload pool: pages take their payload from it at an offset chosen by (file, page,
 * generation), so writes cost a copy, not a random fill. Built once from the run's seed.
 */
export class PayloadPool {
  readonly bytes: Buffer;

  constructor(seedBytes: Uint8Array, sizeBytes = 1024 * 1024) {
    this.bytes = Buffer.alloc(sizeBytes + PAGE_BYTES);
    for (let at = 0; at < this.bytes.length; at += seedBytes.length) this.bytes.set(seedBytes.subarray(0, Math.min(seedBytes.length, this.bytes.length - at)), at);
  }

  offsetFor(file: number, page: number, generation: number): number {
    let h = Math.imul(file ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(page | 0, 0xc2b2ae35) ^ Math.imul(Math.floor(page / 2 ** 32), 0x27d4eb2f) ^ Math.imul(generation, 0x165667b1);
    h ^= h >>> 15;
    return ((h >>> 0) % (this.bytes.length - PAGE_BYTES)) & ~7;
  }
}

export function pageChecksum(page: Uint8Array): number {
  return crc32(page.subarray(HEADER_BYTES), crc32(page.subarray(0, 28)));
}

/** Writes one stamped page into target[0, 4096). */
export function stampPage(
  target: Buffer, pool: PayloadPool,
  fields: { runTag: number; file: number; page: number; generation: number; writer: number },
): void {
  const from = pool.offsetFor(fields.file, fields.page, fields.generation);
  pool.bytes.copy(target, HEADER_BYTES, from + HEADER_BYTES, from + PAGE_BYTES);
  target.writeUInt32LE(BLOCK_MAGIC, 0);
  target.writeUInt32LE(fields.runTag >>> 0, 4);
  target.writeUInt32LE(fields.file >>> 0, 8);
  target.writeUInt32LE(fields.page % 2 ** 32, 12);
  target.writeUInt32LE(Math.floor(fields.page / 2 ** 32), 16);
  target.writeUInt32LE(fields.generation >>> 0, 20);
  target.writeUInt32LE(fields.writer >>> 0, 24);
  target.writeUInt32LE(pageChecksum(target.subarray(0, PAGE_BYTES)), 28);
}

export function readHeader(page: Buffer): PageHeader {
  return {
    magic: page.readUInt32LE(0), runTag: page.readUInt32LE(4), file: page.readUInt32LE(8),
    page: page.readUInt32LE(12) + page.readUInt32LE(16) * 2 ** 32, generation: page.readUInt32LE(20),
    writer: page.readUInt32LE(24), checksum: page.readUInt32LE(28),
  };
}

function isZero(page: Buffer): boolean {
  for (let i = 0; i < page.length; i += 8) if (page.readBigUInt64LE(i) !== 0n) return false;
  return true;
}

/** Checks one 4 KiB page read back against what it must hold; null when it is right. */
export function checkPage(page: Buffer, expect: PageExpectation): PageMismatch | null {
  if (page.length !== PAGE_BYTES) return { kind: 'checksum', detail: `read ${page.length} bytes, expected a ${PAGE_BYTES}-byte page`, found: null };
  const magic = page.readUInt32LE(0);
  if (magic !== BLOCK_MAGIC) {
    const zero = isZero(page);
    if ((expect.genMin === 0 || expect.allowZero === true) && zero) return null;
    if (expect.genMin === 0) return { kind: 'not-zero', detail: `expected zeros${expect.genMax > 0 ? ` or generation 1..${expect.genMax}` : ''}, found non-zero bytes without a header`, found: null };
    if (zero) return { kind: 'magic', detail: `page reads as zeros where generation ${describeRange(expect)} was expected (lost write)`, found: null };
    return { kind: 'magic', detail: `no daxd-load header (magic 0x${magic.toString(16)}) where generation ${describeRange(expect)} was expected`, found: null };
  }
  const found = readHeader(page);
  const sum = pageChecksum(page);
  if (sum !== found.checksum) return { kind: 'checksum', detail: `checksum 0x${sum.toString(16)} != stored 0x${found.checksum.toString(16)} (torn or corrupted page)`, found };
  if (found.runTag !== (expect.runTag >>> 0)) return { kind: 'run', detail: `page written by another run (tag ${found.runTag} != ${expect.runTag >>> 0})`, found };
  if (found.file !== (expect.file >>> 0)) return { kind: 'file', detail: `page belongs to file #${found.file}, not #${expect.file}`, found };
  if (found.page !== expect.page) return { kind: 'page', detail: `page belongs to page ${found.page}, not ${expect.page}`, found };
  if (found.generation < expect.genMin || found.generation > expect.genMax) {
    return { kind: 'generation', detail: `generation ${found.generation}, expected ${describeRange(expect)}`, found };
  }
  return null;
}

function describeRange(e: PageExpectation): string {
  return e.genMin === e.genMax ? String(e.genMin) : `${e.genMin}..${e.genMax}`;
}
