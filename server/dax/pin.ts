/**
 * DMA pins (S4, S7): get_user_pages over the network. A pin faults its pages in through
 * the fault path (mmap lock shared, entry locks; writable pins allocate pre-zeroed
 * blocks), then holds a reference on each block. DMA reads and writes go to the pinned
 * blocks, not the file: they stay valid whatever the file's layout does, until unpin or
 * revocation. Unlike the kernel, the server sits between device and memory, so it can
 * also revoke: a revoked pin's DMA is refused (PIN_REVOKED), and its references are
 * dropped only once no DMA on it is in flight.
 *
 * Pins belong to a session (released when it ends) and have a lease (revoked when it
 * runs out without Renew). The Pin record and the table of live pins are in pin-table.ts.
 */
import assert from 'node:assert';
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, LimitError, NotFoundError, PinRevokedError, ReadOnlyPinError, SigbusError } from '../errors';
import { BLOCK_SIZE, PIN_LEASE_MS_MAX, PIN_PAGES_MAX, PINS_PER_SESSION_MAX } from '../limits';
import type { AddressSpace, Entry, EntryLockOwner } from './address-space';
import type { DaxContext } from './dax-context';
import { assertHolds, newOwner, unlockEntry } from './entry-lock';
import { lockPage } from './pmd';
import type { MappingOwner } from './owner';
import type { CheckedPin } from '../checked-requests';
import type { Pin, PinTable } from './pin-table';
import { InvalidationNotices } from './pte';

/** A pin request as the edge checked it (server/rpc/validate.ts pinRequest), plus its lease. */
export interface PinRequestArgs extends CheckedPin {
  leaseMs: number;
}

export async function pin(ctx: DaxContext, pins: PinTable, owner: MappingOwner, args: PinRequestArgs): Promise<Pin> {
  const { ino, firstPgoff, npages, writable } = args;
  assert(Number.isSafeInteger(npages) && npages >= 1 && npages <= PIN_PAGES_MAX, `pin of ${npages} pages reached the engine unchecked`);
  if (pins.countOf(owner.id) >= PINS_PER_SESSION_MAX) throw new LimitError('pins per session', pins.countOf(owner.id) + 1, PINS_PER_SESSION_MAX);
  const leaseMs = Math.min(args.leaseMs === 0 ? PIN_LEASE_MS_MAX : args.leaseMs, PIN_LEASE_MS_MAX);
  ctx.fs.stat(ino);
  // A writable pin may allocate: keep the transaction bounded, and commit pending frees
  // when its pages might not fit, before taking any lock.
  if (writable) await ctx.fs.makeRoom(npages);
  const as = ctx.space(ino);
  const taken: Entry[] = [];
  const pfns: number[] = [];
  const entries: Array<Entry | null> = [];
  try {
    const unlockMmap = await as.mmapLock.lockShared();
    try {
      const sizeBytes = ctx.fs.sizeOf(ino);
      const lastPgoff = firstPgoff + npages - 1;
      if (lastPgoff >= Math.ceil(sizeBytes / BLOCK_SIZE)) throw new SigbusError(ino, lastPgoff, sizeBytes);
      const me = newOwner('pin');
      for (let pg = firstPgoff; pg <= lastPgoff; pg++) {
        // The page's entry, or the MAPPED PMD entry over it: a pin of a page inside a PMD
        // references the PMD entry, once per page (a PMD zero entry is downgraded first).
        const e = await lockPage(ctx, as, pg, me);
        try {
          if (writable) refuseReadOnlyMapping(ctx, as, owner, pg);
          as.mmapLock.assertHeld(unlockMmap); // faultForPin may allocate without the inode lock
          const pfn = faultForPin(ctx, as, e, writable, me, pg);
          pfns.push(pfn);
          entries.push(pfn === 0 ? null : e);
          if (pfn !== 0) {
            as.pinEntry(e);
            taken.push(e);
          }
        } finally {
          unlockEntry(as, e, me);
        }
      }
      await ctx.failpoints.hit('pin:after-fault', { ino, pgoff: firstPgoff });
    } finally {
      unlockMmap();
    }
    // Concurrent Pin calls of one session all passed the check above before any of them
    // registered: count again now that nothing awaits between here and pins.add.
    if (pins.countOf(owner.id) >= PINS_PER_SESSION_MAX) throw new LimitError('pins per session', pins.countOf(owner.id) + 1, PINS_PER_SESSION_MAX);
    const p: Pin = {
      id: newPinId(), owner, as, firstPgoff, writable, pfns, entries,
      state: 'active', revokedAtMs: 0, createdAtMs: Date.now(), leaseMs, leaseTimer: null, recallTimer: null, inflight: 0, drained: [], handle: 0,
    };
    // S7: attach after the last await: a session that ended meanwhile refuses, and the
    // references taken above are dropped in the catch below.
    p.handle = owner.attach({ kind: 'pin', release: () => releasePin(ctx, pins, p) });
    // Postcondition: one pfn per page, a reference on every non-zero one (S4).
    assert(pfns.length === npages && taken.length === entries.filter((e) => e !== null).length, `pin of ${npages} pages holds ${pfns.length} pfns, ${taken.length} references`);
    pins.add(p);
    pins.stats.pinnedBlocks += taken.length;
    renewLease(ctx, pins, p);
    return p;
  } catch (err) {
    for (const e of taken) as.unpinEntry(e);
    throw err;
  } finally {
    ctx.maybeDrop(as);
  }
}

/**
 * Pin ids: 16 random bytes (hex), drawn from a pool refilled PIN_ID_POOL ids at a time, so
 * a pin costs no getrandom() call of its own (pin + DMA + unpin cycles run at 10k/s). The
 * bytes are the CSPRNG's either way; an id is still checked against its session (S7).
 */
const PIN_ID_POOL = 256;
let pinIdPool = Buffer.alloc(0);
let pinIdAt = 0;

function newPinId(): string {
  if (pinIdAt >= pinIdPool.length) {
    pinIdPool = randomBytes(16 * PIN_ID_POOL);
    pinIdAt = 0;
  }
  const id = pinIdPool.toString('hex', pinIdAt, pinIdAt + 16);
  pinIdAt += 16;
  return id;
}

/** generic/462: a writable pin into pages the session maps read-only only is refused. */
function refuseReadOnlyMapping(ctx: DaxContext, as: AddressSpace, owner: MappingOwner, pgoff: number): void {
  const mine = as.mappings.get(owner.id);
  if (mine !== undefined && ctx.ptes.accessOf(mine, pgoff) === 'ro') {
    throw new ReadOnlyPinError(`writable pin of pgoff ${pgoff}, which this session maps read-only`);
  }
}

/**
 * The fault path for a pin of page `pgoff` (entry locked by `me`): a writable pin
 * allocates (S2), a read-only one maps. A MAPPED PMD entry gives the page's block of it.
 */
function faultForPin(ctx: DaxContext, as: AddressSpace, e: Entry, writable: boolean, me: EntryLockOwner, pgoff: number): number {
  assertHolds(e, me);
  if (e.state === 'MAPPED') {
    if (writable) e.dirty = true;
    return e.pfn + (pgoff - e.pgoff);
  }
  assert(e.order === 0 && e.pgoff === pgoff, `a pin of pgoff ${pgoff} holding a ${e.state} PMD entry`);
  if (!writable) {
    const m = ctx.fs.iomap(as.ino, e.pgoff);
    if (m.state !== 'WRITTEN') return 0; // the zero page: nothing to hold
    // A ZERO entry over a WRITTEN block: write(2) allocated it and its S3 invalidation
    // waits behind our entry lock. It drops only ZERO entries, so the zero-page PTEs must
    // go here, or their mappers would read zeros over the written data.
    if (e.state === 'ZERO') revokeZeroPage(ctx, as, e);
    e.state = 'MAPPED';
    e.pfn = m.pfn;
    return e.pfn;
  }
  const { pfn, allocated } = ctx.fs.allocateForFault(as.ino, e.pgoff);
  ctx.counters.faults[allocated ? 'allocate' : 'mapped']++;
  if (e.state === 'ZERO') revokeZeroPage(ctx, as, e);
  e.state = 'MAPPED';
  e.pfn = pfn;
  // DMA writes land in the block without a store: fsync must flush it (S5).
  e.dirty = true;
  return pfn;
}

/** S1: zero-page PTEs go before the entry points at a real block. */
function revokeZeroPage(ctx: DaxContext, as: AddressSpace, e: Entry): void {
  const notices = new InvalidationNotices('HOLE_FILLED');
  ctx.countInvalidations('HOLE_FILLED', ctx.ptes.revokeEntry(as, e, notices));
  notices.send();
}

export function lookupPin(pins: PinTable, owner: MappingOwner, pinId: string): Pin {
  const p = pins.byId.get(pinId);
  // Another session's pin answers exactly as an unknown one (S7): its holder learns
  // nothing about the other session's pins, and nothing is done through it.
  if (!p || p.owner.id !== owner.id) throw new NotFoundError(`no pin ${pinId} (unpinned, revoked long ago, or never issued)`);
  return p;
}

/**
 * The edge checked the access's shape (server/rpc/validate.ts dmaAccess, dmaRange); what
 * depends on the pin is checked here: revoked (PIN_REVOKED), and the range against its
 * pages. A range starts at byte `offset` of pinned page `page` and may run on into the
 * pin's following pages (Dma.Stream); the unary Read/Write keep to one page at the edge.
 */
function checkRange(p: Pin, page: number, offset: number, length: number): void {
  assert(Number.isSafeInteger(page) && page >= 0, `DMA page ${page} reached the engine unchecked`);
  assert(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset < BLOCK_SIZE,
    `DMA [${offset}, ${offset + length}) reached the engine unchecked`);
  if (p.state === 'revoked') throw new PinRevokedError(p.id);
  if (page >= p.pfns.length) throw new InvalidArgumentError(`page ${page} outside the pin (${p.pfns.length} pages)`);
  const endBytes = page * BLOCK_SIZE + offset + length;
  if (endBytes > p.pfns.length * BLOCK_SIZE) {
    throw new InvalidArgumentError(`DMA of ${length} bytes from page ${page} offset ${offset} runs past the pin's ${p.pfns.length} pages`);
  }
}

/**
 * Calls `each(pfn, offsetInBlock, length, at)` for every run of the range, in order: a run
 * covers pages whose blocks are physically contiguous (one copy for the run, not one per
 * page), or a single zero page (pfn 0); `at` is the run's position in the range.
 */
function forEachRun(p: Pin, page: number, offset: number, length: number, each: (pfn: number, offsetInBlock: number, len: number, at: number) => void): void {
  let at = 0;
  let pg = page;
  let off = offset;
  while (at < length) {
    const first = p.pfns[pg];
    let len = Math.min(BLOCK_SIZE - off, length - at);
    pg++;
    // Extend over the next pages while their blocks follow this one's (never over zero pages).
    while (first !== 0 && at + len < length && p.pfns[pg] === p.pfns[pg - 1] + 1) {
      len += Math.min(BLOCK_SIZE, length - at - len);
      pg++;
    }
    each(first, off, len, at);
    at += len;
    off = 0;
  }
}

/** DMA read from pinned blocks, [offset, offset + length) from page `page` on (it may span pages). */
export async function dmaRead(ctx: DaxContext, p: Pin, page: number, offset: number, length: number): Promise<Buffer> {
  checkRange(p, page, offset, length);
  return inFlight(ctx, p, page, () => {
    const out = Buffer.allocUnsafe(length);
    forEachRun(p, page, offset, length, (pfn, off, len, at) => {
      if (pfn === 0) out.fill(0, at, at + len); // the zero page of a read-only pin over a hole
      else out.set(ctx.fs.storage.view(pfn * BLOCK_SIZE + off, len), at);
    });
    return out;
  });
}

/** DMA write into pinned blocks from page `page` on (it may span pages). */
export async function dmaWrite(ctx: DaxContext, p: Pin, page: number, offset: number, data: Uint8Array): Promise<void> {
  checkRange(p, page, offset, data.length);
  if (!p.writable) throw new ReadOnlyPinError(`DMA write through read-only pin ${p.id}: the file is unchanged`);
  await inFlight(ctx, p, page, () => {
    forEachRun(p, page, offset, data.length, (pfn, off, len, at) => {
      assert(pfn !== 0, 'writable pin on the zero page');
      ctx.fs.storage.view(pfn * BLOCK_SIZE + off, len).set(data.subarray(at, at + len));
      // S6: "DMA followed by Fsync" is a durable point. The block joins the file's dirty
      // set (flushed by fsync), not the entry's DIRTY flag, which writeback may clear while
      // this pin keeps writing. Every block of the run.
      const last = pfn + Math.floor((off + len - 1) / BLOCK_SIZE);
      for (let b = pfn; b <= last; b++) ctx.fs.markDirty(p.as.ino, b);
    });
  });
}

async function inFlight<T>(ctx: DaxContext, p: Pin, page: number, copy: () => T): Promise<T> {
  p.inflight++;
  try {
    await ctx.failpoints.hit('dma:in-flight', { ino: p.as.ino, pgoff: p.firstPgoff + page });
    // Revoked while in flight (and maybe unpinned since): refused. Unpinned without
    // revocation: it completes, its blocks stay referenced until it ends (releasePin).
    if (p.revokedAtMs !== 0) throw new PinRevokedError(p.id);
    return copy();
  } finally {
    p.inflight--;
    if (p.inflight === 0) for (const done of p.drained.splice(0)) done();
  }
}

/** Unpin (or session end): drop every reference, waking waiting layout changes. */
export function releasePin(ctx: DaxContext, pins: PinTable, p: Pin): void {
  if (p.state === 'released') return;
  const wasRevoked = p.state === 'revoked';
  p.state = 'released';
  clearTimers(p);
  pins.remove(p);
  // References it still holds until its DMA in flight ends stay findable (dropReferences
  // takes it out): with no DMA in flight they are gone already, or go just below.
  // (A revoked pin whose references already went holds none: not kept, nothing would drop it.)
  if (p.inflight > 0 && p.entries.some((e) => e !== null)) pins.draining.add(p);
  // A revoked pin has dropped its references, or will when its DMA drains.
  if (wasRevoked) return;
  // S4: a DMA in flight (accepted before this unpin or session end) still copies into the
  // blocks: they stay referenced until it ends, so no layout change frees them under it.
  if (p.inflight === 0) dropReferences(ctx, pins, p);
  else p.drained.push(() => dropReferences(ctx, pins, p));
}

export function unpin(ctx: DaxContext, pins: PinTable, p: Pin): void {
  p.owner.detach(p.handle);
  releasePin(ctx, pins, p);
}

/**
 * Revocation (RECALL grace over, or lease expired): DMA is refused from now on; the
 * references go once the DMA in flight has finished, so the block is freed only after.
 */
export function revokePin(ctx: DaxContext, pins: PinTable, p: Pin): void {
  if (p.state === 'revoked' || p.state === 'released') return;
  p.state = 'revoked';
  p.revokedAtMs = Date.now();
  clearTimers(p);
  pins.stats.revocations++;
  p.owner.notify({ kind: 'pinRevoked', pinId: p.id });
  const drop = () => dropReferences(ctx, pins, p);
  if (p.inflight === 0) drop();
  else p.drained.push(drop);
}

/** RECALL: tell the holder, revoke after the grace period unless it unpins first. */
export function recallPin(ctx: DaxContext, pins: PinTable, p: Pin, graceMs: number): void {
  if (p.state !== 'active') return;
  p.state = 'recalled';
  pins.stats.recalls++;
  p.owner.notify({ kind: 'pinRecall', pinId: p.id, revokeAtMs: Date.now() + graceMs });
  p.recallTimer = setTimeout(() => revokePin(ctx, pins, p), graceMs);
  p.recallTimer.unref();
}

export function renewLease(ctx: DaxContext, pins: PinTable, p: Pin): void {
  if (p.state === 'revoked' || p.state === 'released') throw new PinRevokedError(p.id);
  if (p.leaseTimer) p.leaseTimer.refresh();
  else {
    p.leaseTimer = setTimeout(() => revokePin(ctx, pins, p), p.leaseMs);
    p.leaseTimer.unref();
  }
}

function dropReferences(ctx: DaxContext, pins: PinTable, p: Pin): void {
  for (const e of p.entries) {
    if (!e) continue;
    p.as.unpinEntry(e);
    pins.stats.pinnedBlocks--;
  }
  p.entries.fill(null);
  pins.draining.delete(p);
  // A writable pin left its entries DIRTY (DMA writes bypass stores, S5): a linked file
  // keeps them until writeback; an unlinked one with no pin or mapping left forgets them
  // and is freed (DaxContext.maybeDrop).
  ctx.maybeDrop(p.as);
}

function clearTimers(p: Pin): void {
  if (p.leaseTimer) clearTimeout(p.leaseTimer);
  if (p.recallTimer) clearTimeout(p.recallTimer);
  p.leaseTimer = p.recallTimer = null;
}
