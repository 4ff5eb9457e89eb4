/**
 * Page faults (S1, S2): mmap lock shared -> entry lock (a locked placeholder on an empty
 * index, BEFORE the block lookup: "dax: New fault locking" and the 2017 fix) -> block lookup or
 * allocation -> install the entry and a PTE -> unlock the entry -> drop the mmap lock.
 *
 * Awaits inside: the mmap lock, the entry lock, failpoints, and the journal commit of a
 * MAP_SYNC fault (taken with the entry lock held: a racing fault on the page waits).
 *
 * The common fault (a page already installed, nobody else on its locks) takes a
 * synchronous fast path, fastFault: the same locks in the same order, taken only when
 * they are free at once, so it never awaits.
 */
import assert from 'node:assert';
import { SigbusError } from '../errors';
import { BLOCK_SIZE } from '../limits';
import { EntryLockOwner, SessionMapping, type AddressSpace, type Entry, type Pte } from './address-space';
import type { DaxContext } from './dax-context';
import type { RwLockHold } from '../fs/rw-lock';
import { assertHolds, newOwner, tryLockEntry, unlockEntry } from './entry-lock';
import type { MappingOwner } from './owner';
import { InvalidationNotices } from './pte';
import { lockPage, noteFallback, pmdFault, type PmdFallbackReason } from './pmd';

export type FaultKind = 'READ' | 'WRITE' | 'COW';
/** PAGE: a 4 KiB PTE. PMD: a 2 MiB PTE over the aligned range holding the page, or a fallback. */
export type FaultSize = 'PAGE' | 'PMD';

/** The fast path's entry-lock token: it never awaits while holding, so one token serves all. */
const FAST_FAULT = new EntryLockOwner('fast fault');

export interface FaultResult {
  pte?: Pte;
  /** COW: the private copy of the page. */
  data?: Buffer;
  /** A PMD fault that fell back: why; `pte` (or `data`) is then the 4 KiB fault's. */
  fallback?: PmdFallbackReason;
}

/**
 * A PMD fault (pmd.ts), falling back to the 4 KiB fault on the same page with the reason
 * when the 2 MiB range cannot be one entry. COW always falls back (a private copy is a
 * page). The fallback runs after the PMD attempt released every lock it took.
 */
export async function faultPmd(ctx: DaxContext, owner: MappingOwner, ino: number, pgoff: number, kind: FaultKind, sync: boolean): Promise<FaultResult> {
  assert(Number.isSafeInteger(pgoff) && pgoff >= 0, `fault at pgoff ${pgoff}`);
  if (kind !== 'COW') {
    const got = await pmdFault(ctx, ino, pgoff, kind, sync, (as) => mappingOf(ctx, owner, as), owner);
    if ('pte' in got) {
      assert(got.pte.order === 9 && (kind === 'WRITE' || !got.pte.writable), `${kind} PMD fault result`);
      return { pte: got.pte };
    }
    noteFallback(ctx, ino, pgoff, got.fallback);
    return { ...(await fault(ctx, owner, ino, pgoff, kind, sync)), fallback: got.fallback };
  }
  noteFallback(ctx, ino, pgoff, 'COW');
  return { ...(await fault(ctx, owner, ino, pgoff, kind, sync)), fallback: 'COW' };
}

/**
 * `underLock` (WRITE faults only): runs with the new writable PTE while the fault still
 * holds the entry lock, so no writeback can downgrade the PTE before it (a Store with
 * fault_if_stale stores there). It must not throw.
 */
export function fault(
  ctx: DaxContext, owner: MappingOwner, ino: number, pgoff: number, kind: FaultKind, sync: boolean, underLock?: (pte: Pte) => void,
): Promise<FaultResult> {
  // The rpc layer validated the page (mapping-service.ts): below it, a bad one is a bug.
  assert(Number.isSafeInteger(pgoff) && pgoff >= 0, `fault at pgoff ${pgoff}`);
  try {
    const fast = fastFault(ctx, owner, ino, pgoff, kind, sync, underLock);
    if (fast !== null) return Promise.resolve(fast);
  } catch (err) {
    return Promise.reject(err);
  }
  return slowFault(ctx, owner, ino, pgoff, kind, sync, underLock);
}

/**
 * Postcondition of every fault, checked with the entry lock still held: COW hands out a
 * private page and no PTE; READ and WRITE a PTE on the locked entry and its block, never
 * writable for READ. Not "still valid": a session end or an unmap revokes PTEs without
 * the entry lock (S7), and may have run at the fault's last await.
 */
function assertFaultResult(r: FaultResult, e: Entry, kind: FaultKind, pgoff: number): FaultResult {
  if (kind === 'COW') {
    assert(r.pte === undefined && r.data?.length === BLOCK_SIZE, 'COW fault result');
  } else {
    const pfn = e.state === 'MAPPED' ? e.pfn + (pgoff - e.pgoff) : 0;
    assert(r.pte !== undefined && r.pte.order === 0 && r.pte.pgoff === pgoff && r.pte.pfn === pfn, `${kind} fault at pgoff ${pgoff}: no PTE on the entry's block`);
    assert(kind === 'WRITE' || !r.pte.writable, `READ fault at pgoff ${e.pgoff} returned a writable PTE`);
  }
  return r;
}

/**
 * A READ fault on a ZERO or MAPPED entry, or a WRITE fault (not MAP_SYNC) on a MAPPED one,
 * with no await: what slowFault does for them, when every lock it would wait for is free.
 * - mmap lock: not held exclusive and nobody queued for it. Taking it shared would be
 *   granted at once, and nothing can take it exclusive before this synchronous section
 *   ends, so holding it would exclude nothing more.
 * - entry lock: taken with tryLockEntry (unlocked, no waiters: FIFO order is kept), and
 *   released before returning (S1: the PTE is installed under it).
 * - no failpoint armed: a test pausing a fault gets the slow path, with its awaits.
 * Anything else (EMPTY index, past EOF, COW, sync, contention) returns null before any
 * state change, and the slow path runs the fault from the start.
 */
function fastFault(ctx: DaxContext, owner: MappingOwner, ino: number, pgoff: number, kind: FaultKind, sync: boolean, underLock?: (pte: Pte) => void): FaultResult | null {
  if (kind === 'COW' || sync || ctx.failpoints.anyArmed) return null;
  const sizeBytes = ctx.fs.sizeOf(ino); // ENOENT as slowFault's stat
  const as = ctx.spaces.get(ino);
  if (!as || as.mmapLock.heldExclusive || as.mmapLock.waiters > 0) return null;
  if (pgoff >= Math.ceil(sizeBytes / BLOCK_SIZE)) return null; // SIGBUS: the slow path says so
  const e = tryLockEntry(as, pgoff, FAST_FAULT);
  if (!e) return null;
  try {
    if (e.state === 'EMPTY' || (kind === 'WRITE' && e.state !== 'MAPPED')) return null;
    if (e.order !== 0 && e.state !== 'MAPPED') return null; // a PMD zero entry: the slow path downgrades it
    const mapping = mappingOf(ctx, owner, as); // may throw SESSION_EXPIRED: nothing changed yet
    if (kind === 'READ') {
      ctx.counters.faults[e.state === 'ZERO' ? 'hole' : 'mapped']++;
      return assertFaultResult({ pte: ctx.ptes.install(mapping, e, false, pgoff) }, e, kind, pgoff);
    }
    ctx.counters.faults.mapped++;
    e.dirty = true;
    const pte = ctx.ptes.install(mapping, e, true, pgoff);
    underLock?.(pte);
    return assertFaultResult({ pte }, e, kind, pgoff);
  } finally {
    unlockEntry(as, e, FAST_FAULT);
    ctx.maybeDrop(as);
  }
}

async function slowFault(
  ctx: DaxContext, owner: MappingOwner, ino: number, pgoff: number, kind: FaultKind, sync: boolean, underLock?: (pte: Pte) => void,
): Promise<FaultResult> {
  // A write fault may allocate (map block, bitmap, inode): keep the transaction bounded,
  // before taking any lock.
  // A write fault may allocate one block: commits pending frees first when short (no
  // ENOSPC while freed blocks await a commit), and keeps the transaction bounded.
  if (kind === 'WRITE') await ctx.fs.makeRoom(1);
  ctx.fs.stat(ino);
  const as = ctx.space(ino);
  try {
    const unlockMmap = await as.mmapLock.lockShared();
    try {
      // Reliable: only truncate shrinks the size, and it holds the mmap lock exclusive.
      const sizeBytes = ctx.fs.sizeOf(ino);
      if (pgoff >= Math.ceil(sizeBytes / BLOCK_SIZE)) throw new SigbusError(ino, pgoff, sizeBytes);
      const me = newOwner('fault');
      // The page's entry, or the MAPPED PMD entry over it (a PMD zero entry is downgraded).
      const e = await lockPage(ctx, as, pgoff, me);
      try {
        await ctx.failpoints.hit('fault:after-entry-lock', { ino, pgoff });
        if (kind === 'COW') return assertFaultResult({ data: await cowCopy(ctx, as, e, me, pgoff) }, e, kind, pgoff);
        // S7: the session's mapping is looked up (attached) only right before the PTE is
        // installed, after the fault's last await: a session that ended (or unmapped the
        // file) while the fault waited gets no PTE into a mapping nobody will release.
        const mappingNow = (): SessionMapping => mappingOf(ctx, owner, as);
        if (kind === 'READ') return assertFaultResult({ pte: await readFault(ctx, as, e, me, mappingNow, pgoff) }, e, kind, pgoff);
        const pte = await writeFault(ctx, as, { entry: e, me, mmap: unlockMmap }, mappingNow, sync, owner, pgoff);
        underLock?.(pte); // still under the entry lock (S1)
        return assertFaultResult({ pte }, e, kind, pgoff);
      } finally {
        unlockEntry(as, e, me);
      }
    } finally {
      unlockMmap();
    }
  } finally {
    ctx.maybeDrop(as);
  }
}

/** The session's mapping of this file, attached to the session on first use (S7). */
export function mappingOf(ctx: DaxContext, owner: MappingOwner, as: AddressSpace): SessionMapping {
  let m = as.mappings.get(owner.id);
  if (!m) {
    const mapping = ctx.ptes.newMapping(owner, as, (id) => new SessionMapping(id, owner, as));
    try {
      mapping.handle = owner.attach({ kind: 'mapping', release: () => dropMapping(ctx, mapping) });
    } catch (err) {
      ctx.ptes.dropMapping(mapping); // a session that ended: its token route goes too
      throw err;
    }
    as.mappings.set(owner.id, mapping);
    m = mapping;
  }
  return m;
}

/** Session end or full unmap: every PTE of the mapping goes. */
export function dropMapping(ctx: DaxContext, m: SessionMapping): void {
  ctx.counters.revokedPtes += ctx.ptes.dropMapping(m);
  if (m.as.mappings.get(m.owner.id) === m) m.as.mappings.delete(m.owner.id);
  ctx.maybeDrop(m.as);
}

/** The caller holds the mmap lock shared and the entry lock (as `me`). */
async function readFault(ctx: DaxContext, as: AddressSpace, e: Entry, me: EntryLockOwner, mappingNow: () => SessionMapping, pgoff: number): Promise<Pte> {
  assertHolds(e, me);
  if (e.state === 'EMPTY') {
    assert(e.order === 0, 'a 4 KiB fault holding an EMPTY PMD entry');
    const m = ctx.fs.iomap(as.ino, e.pgoff);
    // A hole or an unwritten block reads as zeros: the shared zero page, no allocation.
    const written = m.state === 'WRITTEN';
    ctx.counters.faults[written ? 'mapped' : 'hole']++;
    // The decision is made; a write(2) that allocates now waits in its S3 invalidation for
    // this entry lock and drops what is installed here (test/dax/fault-vs-write.test.ts).
    await ctx.failpoints.hit('fault:before-install', { ino: as.ino, pgoff: e.pgoff });
    e.state = written ? 'MAPPED' : 'ZERO';
    e.pfn = written ? m.pfn : 0;
  } else {
    ctx.counters.faults[e.state === 'ZERO' ? 'hole' : 'mapped']++;
  }
  assertHolds(e, me); // the await above did not lose it (S1: install under the entry lock)
  return ctx.ptes.install(mappingNow(), e, false, pgoff);
}

/** What a write fault holds: its entry (locked by `me`) and the mmap lock (shared). */
interface WriteFaultLocks {
  entry: Entry;
  me: EntryLockOwner;
  mmap: RwLockHold;
}

async function writeFault(ctx: DaxContext, as: AddressSpace, locks: WriteFaultLocks, mappingNow: () => SessionMapping, sync: boolean, owner: MappingOwner, pgoff: number): Promise<Pte> {
  const e = locks.entry;
  assertHolds(e, locks.me);
  if (e.state !== 'MAPPED') {
    assert(e.order === 0, `a 4 KiB write fault holding a ${e.state} PMD entry`);
    // S2: the block comes zeroed (or converted and zeroed) from the file layer, which
    // takes no inode lock here: the mmap lock (shared) and the entry lock exclude truncate
    // and other faults on the page (FileSystem.allocateForFault). Both checked.
    as.mmapLock.assertHeld(locks.mmap);
    const { pfn, allocated } = ctx.fs.allocateForFault(as.ino, e.pgoff);
    ctx.counters.faults[allocated ? 'allocate' : 'mapped']++;
    if (e.state === 'ZERO') {
      // S1: a ZERO entry is replaced only after every zero-page PTE on it is revoked.
      const notices = new InvalidationNotices('HOLE_FILLED');
      ctx.countInvalidations('HOLE_FILLED', ctx.ptes.revokeEntry(as, e, notices));
      notices.send(owner); // the faulting session's own zero-page PTE: its own action
    }
    await ctx.failpoints.hit('fault:before-install', { ino: as.ino, pgoff: e.pgoff });
    e.state = 'MAPPED';
    e.pfn = pfn;
  } else {
    ctx.counters.faults.mapped++;
  }
  if (sync) {
    // MAP_SYNC: the metadata that makes this page readable after a crash is durable first.
    await ctx.fs.commit();
    ctx.counters.faults.sync++;
  }
  const mapping = mappingNow(); // may throw SESSION_EXPIRED: then no PTE, entry stays clean
  assertHolds(e, locks.me); // the awaits above did not lose it (S1)
  // A page of a MAPPED PMD entry: the whole entry becomes dirty (writeback flushes 2 MiB).
  e.dirty = true;
  return ctx.ptes.install(mapping, e, true, pgoff);
}

/**
 * COW (S1; upstream "dax: Use radix tree entry lock to protect cow faults"): the entry stays locked from the block lookup until the private copy is
 * complete, so truncate cannot free the block mid-copy. Never allocates, keeps no PTE.
 */
async function cowCopy(ctx: DaxContext, as: AddressSpace, e: Entry, me: EntryLockOwner, pgoff: number): Promise<Buffer> {
  assertHolds(e, me);
  // The source is the block map, as the kernel's COW fault copies from iomap and never from
  // the entry: a ZERO entry may still stand over a block write(2) just allocated and filled
  // (its S3 invalidation waits behind us), and a private copy is never revoked.
  const m = ctx.fs.iomap(as.ino, pgoff);
  const pfn = m.state === 'WRITTEN' ? m.pfn : 0;
  await ctx.failpoints.hit('fault:before-cow-copy', { ino: as.ino, pgoff });
  assertHolds(e, me); // still locked after the failpoint: truncate cannot free the block mid-copy
  ctx.counters.faults.cow++;
  const copy = Buffer.alloc(BLOCK_SIZE);
  if (pfn !== 0) copy.set(ctx.fs.storage.view(pfn * BLOCK_SIZE, BLOCK_SIZE));
  return copy;
}
