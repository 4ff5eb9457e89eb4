/**
 * The operations of daxd-fsx. Each op draws its parameters from the seeded generator
 * (given the model's state), describes itself in one line for the log, runs against the
 * server, updates the model, and compares everything it reads with the model: the first
 * difference throws FsxMismatch.
 *
 * Ranges: Files writes and fallocate modes stay below the model's capacity (--max-size);
 * loads stay inside the file's pages (the tail of the last page reads as zeros); stores
 * and DMA writes stay below EOF (a store past EOF inside the last page is not file data).
 */
import * as grpc from '@grpc/grpc-js';
import { crc32 } from 'node:zlib';
import type { DaxClient } from '../../dax-client';
import { DaxClientError } from '../../errors';
import type { MappedFile } from '../../mapped-file';
import type { DaxSession } from '../../session';
import { PAGE_BYTES } from '../block-header';
import type { Rng } from '../rng';
import type { FileModel, PrivatePages } from './file-model';

export const FSX_OP_NAMES = [
  'write', 'read', 'mapread', 'mapwrite', 'cowread', 'cowwrite', 'cowremap', 'remap', 'truncate', 'punch', 'zero',
  'allocate', 'collapse', 'fsync', 'msync', 'pin', 'pinfail',
] as const;
export type FsxOpName = (typeof FSX_OP_NAMES)[number];

export const DEFAULT_WEIGHTS: Record<FsxOpName, number> = {
  write: 14, read: 14, mapread: 10, mapwrite: 10, cowread: 5, cowwrite: 5, cowremap: 1, remap: 1, truncate: 5,
  punch: 4, zero: 4, allocate: 2, collapse: 3, fsync: 2, msync: 3, pin: 6, pinfail: 2,
};

export const OP_HELP: Record<FsxOpName, string> = {
  write: 'Files write (extends the file)', read: 'Files read (short at EOF)',
  mapread: 'load through the session\'s shared mapping', mapwrite: 'store through the shared writable mapping',
  cowread: 'load through the session\'s private (COW) mapping', cowwrite: 'store through the private mapping (COW fault on first store)',
  cowremap: 'unmap the private mapping (its pages are dropped) and map again', remap: 'unmap the shared mapping and map again',
  truncate: 'truncate to a random size', punch: 'fallocate PUNCH_HOLE', zero: 'fallocate ZERO_RANGE (grows the size)',
  allocate: 'fallocate ALLOCATE (grows the size)', collapse: 'fallocate COLLAPSE_RANGE (page-aligned)',
  fsync: 'Files fsync', msync: 'msync of the shared mapping', pin: 'pin pages, DMA reads/writes (EFAULT through a read-only pin), unpin',
  pinfail: 'pin, then punch or truncate over the pin with layout_break FAIL: must be EBUSY with the file unchanged, then unpin',
};

export interface FsxSession {
  index: number;
  client: DaxClient;
  session: DaxSession;
  /**
   * Pins are taken in a session of their own on the same connection: daxd refuses a
   * writable pin of pages its session maps read-only (EFAULT), and whether the mapping
   * session holds such a PTE right now depends on invalidations, not on the model.
   */
  pinSession: DaxSession;
  shared: MappedFile;
  priv: MappedFile;
  privPages: PrivatePages;
}

export interface FsxContext {
  rng: Rng;
  model: FileModel;
  ino: number;
  sessions: FsxSession[];
  maxLenBytes: number;
  /** A new private pages model for a remapped private mapping. */
  newPrivatePages(): PrivatePages;
}

export class FsxMismatch extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FsxMismatch';
  }
}

/** A planned op: its log line, and how to run it. */
export interface PlannedOp {
  name: FsxOpName;
  text: string;
  run(): Promise<void>;
}

const hex = (n: number) => `0x${n.toString(16)}`;
const span = (offset: number, length: number) => `${hex(offset)}+${hex(length)}`;

/** Compares what was read with what the model says; throws at the first differing byte. */
export function expectBytes(what: string, expected: Buffer, actual: Buffer, baseOffset: number): void {
  if (actual.length !== expected.length) {
    throw new FsxMismatch(`${what}: ${actual.length} bytes returned, model says ${expected.length}`);
  }
  const i = expected.findIndex((b, k) => actual[k] !== b);
  if (i < 0) return;
  const at = baseOffset + i;
  const from = Math.max(0, i - 8);
  throw new FsxMismatch(`${what}: first difference at file offset ${hex(at)} (page ${Math.floor(at / PAGE_BYTES)}): `
    + `expected ${hex(expected[i])}, got ${hex(actual[i])}\n  expected ${expected.subarray(from, from + 32).toString('hex')}\n`
    + `  actual   ${actual.subarray(from, from + 32).toString('hex')} (from offset ${hex(baseOffset + from)})`);
}

/** A random range inside [0, endLimit): half of them page-aligned. */
function randomRange(ctx: FsxContext, endLimit: number): [number, number] {
  const { rng } = ctx;
  let offset = rng.int(endLimit);
  let length = 1 + rng.int(Math.min(ctx.maxLenBytes, endLimit - offset));
  if (rng.percent(50)) {
    offset -= offset % PAGE_BYTES;
    length = Math.min(endLimit - offset, Math.ceil(length / PAGE_BYTES) * PAGE_BYTES);
  }
  return [offset, length];
}

function randomBytes(ctx: FsxContext, length: number): Buffer {
  return ctx.rng.fill(Buffer.allocUnsafe(length));
}

async function expectFailure(what: string, reason: string, p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (err instanceof DaxClientError && err.reason === reason) return;
    throw err;
  }
  throw new FsxMismatch(`${what} succeeded; ${reason} was expected`);
}

async function checkSize(ctx: FsxContext, s: FsxSession, after: string): Promise<void> {
  const info = await s.client.stat(ctx.ino);
  if (info.size !== ctx.model.size) throw new FsxMismatch(`size after ${after} is ${hex(info.size)}, model says ${hex(ctx.model.size)}`);
}

/** Plans the next op (its name was drawn by weight); null if it cannot run in this state. */
export function planOp(ctx: FsxContext, name: FsxOpName, s: FsxSession): PlannedOp | null {
  const { rng, model, ino } = ctx;
  const cap = model.capacityBytes;
  const tag = `s${s.index} ${name}`;
  switch (name) {
    case 'write': {
      const [offset, length] = randomRange(ctx, cap);
      const data = randomBytes(ctx, length);
      return { name, text: `${tag} ${span(offset, length)} crc ${hex(crc32(data))}`, run: async () => {
        await s.client.write(ino, offset, data);
        model.write(offset, data);
        await checkSize(ctx, s, 'write');
      } };
    }
    case 'read': {
      const [offset, length] = randomRange(ctx, cap);
      return { name, text: `${tag} ${span(offset, length)}`, run: async () => {
        expectBytes(`read ${span(offset, length)}`, model.read(offset, length), await s.client.read(ino, offset, length), offset);
      } };
    }
    case 'mapread':
    case 'cowread': {
      if (model.pages === 0) return null;
      const [offset, length] = randomRange(ctx, model.pages * PAGE_BYTES);
      const map = name === 'mapread' ? s.shared : s.priv;
      return { name, text: `${tag} ${span(offset, length)}`, run: async () => {
        const expected = name === 'mapread' ? model.mapped(offset, length) : s.privPages.load(model, offset, length);
        expectBytes(`${name} ${span(offset, length)}`, expected, await map.read(offset, length), offset);
      } };
    }
    case 'mapwrite':
    case 'cowwrite': {
      if (model.size === 0) return null;
      const [offset, length] = randomRange(ctx, model.size);
      const data = randomBytes(ctx, length);
      return { name, text: `${tag} ${span(offset, length)} crc ${hex(crc32(data))}`, run: async () => {
        if (name === 'mapwrite') {
          await s.shared.write(offset, data);
          model.store(offset, data);
        } else {
          await s.priv.write(offset, data);
          s.privPages.store(model, offset, data);
        }
      } };
    }
    case 'remap':
    case 'cowremap':
      return { name, text: tag, run: async () => {
        if (name === 'remap') {
          await s.shared.unmap();
          s.shared = s.session.mmap(ino, { shared: true, writable: true });
        } else {
          await s.priv.unmap();
          s.priv = s.session.mmap(ino, { private: true, writable: true });
          s.privPages = ctx.newPrivatePages();
        }
      } };
    case 'truncate': {
      let size = rng.int(cap + 1);
      if (rng.percent(50)) size -= size % PAGE_BYTES;
      return { name, text: `${tag} to ${hex(size)}`, run: async () => {
        await s.client.truncate(ino, size);
        model.truncate(size);
        await checkSize(ctx, s, 'truncate');
      } };
    }
    case 'punch':
    case 'zero':
    case 'allocate': {
      const [offset, length] = randomRange(ctx, cap);
      const mode = name === 'punch' ? 'PUNCH_HOLE' : name === 'zero' ? 'ZERO_RANGE' : 'ALLOCATE';
      return { name, text: `${tag} ${span(offset, length)}`, run: async () => {
        await s.client.fallocate(ino, mode, offset, length);
        if (name === 'punch') model.punch(offset, length);
        else if (name === 'zero') model.zeroRange(offset, length);
        else model.allocate(offset, length);
        await checkSize(ctx, s, name);
      } };
    }
    case 'collapse': {
      const pages = Math.floor(model.size / PAGE_BYTES);
      if (pages < 2) return null;
      // offset + length must end before EOF.
      const first = rng.int(pages - 1);
      const n = 1 + rng.int(Math.min(pages - 1 - first, Math.max(1, ctx.maxLenBytes / PAGE_BYTES)));
      if ((first + n) * PAGE_BYTES >= model.size) return null;
      return { name, text: `${tag} ${span(first * PAGE_BYTES, n * PAGE_BYTES)}`, run: async () => {
        await s.client.fallocate(ino, 'COLLAPSE_RANGE', first * PAGE_BYTES, n * PAGE_BYTES);
        model.collapse(first * PAGE_BYTES, n * PAGE_BYTES);
        await checkSize(ctx, s, 'collapse');
      } };
    }
    case 'fsync':
      return { name, text: tag, run: () => s.client.fsync(ino) };
    case 'msync':
      return { name, text: tag, run: () => s.shared.msync() };
    case 'pin':
      return planPin(ctx, s, tag);
    case 'pinfail':
      return planPinFail(ctx, s, tag);
  }
}

function planPin(ctx: FsxContext, s: FsxSession, tag: string): PlannedOp | null {
  const { rng, model, ino } = ctx;
  if (model.pages === 0) return null;
  const first = rng.int(model.pages);
  const n = 1 + rng.int(Math.min(4, model.pages - first));
  const writable = rng.percent(70);
  type Dma = { page: number; write: Buffer | null; offset: number };
  const plan: Dma[] = [];
  for (let j = 0; j < n; j++) {
    const start = (first + j) * PAGE_BYTES;
    const room = Math.min(PAGE_BYTES, model.size - start);
    if (rng.percent(50) && room > 0) {
      const offset = rng.int(room);
      plan.push({ page: j, offset, write: randomBytes(ctx, 1 + rng.int(room - offset)) });
    } else plan.push({ page: j, offset: 0, write: null });
  }
  const steps = plan.map((d) => (d.write ? `w${d.page}@${hex(d.offset)}+${hex(d.write.length)}` : `r${d.page}`)).join(' ');
  return { name: 'pin', text: `${tag} pages ${first}..${first + n - 1} ${writable ? 'rw' : 'ro'}: ${steps}`, run: async () => {
    const pin = await s.client.pin(ino, first, n, { writable, session: s.pinSession });
    try {
      for (const d of plan) {
        const start = (first + d.page) * PAGE_BYTES;
        if (d.write && !writable) {
          await expectFailure(`DMA write through a read-only pin (page ${first + d.page})`, 'EFAULT', pin.dmaWrite(d.page, d.offset, d.write));
        } else if (d.write) {
          await pin.dmaWrite(d.page, d.offset, d.write);
          model.store(start + d.offset, d.write);
        } else {
          expectBytes(`DMA read of page ${first + d.page}`, model.mapped(start, PAGE_BYTES), await pin.dmaRead(d.page, 0, PAGE_BYTES), start);
        }
      }
    } finally {
      await pin.unpin();
    }
  } };
}

function planPinFail(ctx: FsxContext, s: FsxSession, tag: string): PlannedOp | null {
  const { rng, model, ino } = ctx;
  if (model.pages === 0) return null;
  const first = rng.int(model.pages);
  const n = 1 + rng.int(Math.min(4, model.pages - first));
  const pinnedEnd = Math.min(model.size, (first + n) * PAGE_BYTES);
  const punch = rng.percent(50);
  // A punch starting on a pinned page, or a truncate to inside the pinned pages (below EOF).
  const offset = first * PAGE_BYTES + rng.int(pinnedEnd - first * PAGE_BYTES);
  const length = 1 + rng.int(ctx.maxLenBytes);
  const what = punch ? `punch ${span(offset, length)}` : `truncate to ${hex(offset)}`;
  return { name: 'pinfail', text: `${tag} pages ${first}..${first + n - 1}, ${what} FAIL`, run: async () => {
    const pin = await s.client.pin(ino, first, n, { writable: true, session: s.pinSession });
    try {
      const layout = punch
        ? s.client.fallocate(ino, 'PUNCH_HOLE', offset, length, { layoutBreak: 'FAIL' })
        : s.client.truncate(ino, offset, { layoutBreak: 'FAIL' });
      await expectFailure(`${what} with layout_break FAIL over a pinned page`, 'EBUSY', layout);
      await checkSize(ctx, s, `a refused ${what}`);
      const start = first * PAGE_BYTES;
      expectBytes(`read of the pinned range after a refused ${what}`, model.read(start, n * PAGE_BYTES), await s.client.read(ino, start, n * PAGE_BYTES), start);
    } finally {
      await pin.unpin();
    }
  } };
}

/** Is this an error a broken server would cause, as opposed to a harness bug? (For the message.) */
export function describeError(err: unknown): string {
  if (err instanceof DaxClientError) return `${err.message} (status ${grpc.status[err.code] ?? err.code}, reason ${err.reason ?? 'none'})`;
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
