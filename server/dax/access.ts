/**
 * Load and Store through PTE tokens: the CPU's view of a mapping. The token check here is
 * the fence (S7): a revoked, downgraded or foreign token changes nothing. No lock is
 * taken, as a CPU access takes none: a valid PTE means its entry is installed and its
 * block belongs to the file (revocation happens before any entry is removed).
 */
import assert from 'node:assert';
import { InvalidArgumentError, PteStaleError } from '../errors';
import { BLOCK_SIZE, PMD_BYTES, PMD_PAGES } from '../limits';
import type { DaxContext } from './dax-context';
import type { Entry, Pte } from './address-space';
import type { ResolvedPte } from './pte';
import { fault } from './fault';
import type { MappingOwner } from './owner';

/**
 * The fence covers the PTE's range, not just the token: an offset past it would reach a
 * neighbouring block, which may belong to another file. The edge refused ranges longer
 * than a PMD (server/rpc/validate.ts: EINVAL), and here each token's own size is checked:
 * BLOCK_SIZE for a 4 KiB PTE, PMD_BYTES for a PMD PTE (EINVAL past it).
 */
function assertInPmd(offset: number, length: number): void {
  assert(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= PMD_BYTES,
    `access [${offset}, ${offset + length}) longer than a PMD reached the engine unchecked`);
}

function checkInPte(pte: ResolvedPte, offset: number, length: number): void {
  const size = pte.order === 0 ? BLOCK_SIZE : PMD_BYTES;
  // offset == size is outside too (a zero-length access at the end names no byte of it).
  if (offset >= size || length > size - offset) {
    throw new InvalidArgumentError(`access [${offset}, ${offset + length}) runs past the ${pte.order === 0 ? '4 KiB page' : '2 MiB PMD'} the token maps (${size} bytes)`);
  }
}

function checkedPte(ctx: DaxContext, owner: MappingOwner, token: string, offset: number, length: number): ResolvedPte {
  assertInPmd(offset, length);
  const pte = ctx.ptes.resolve(owner, token);
  // Another session's token answers exactly as an unknown one (S7): its holder learns
  // nothing about the other session, and nothing is done through it.
  if (pte === null) throw new PteStaleError('the PTE token is stale or unknown');
  checkInPte(pte, offset, length);
  return pte;
}

/** Byte address of the PTE's first byte on the medium; -1 for the zero page. */
function addressOf(pte: ResolvedPte): number {
  const e = pte.entry;
  return e.state === 'MAPPED' ? (e.pfn + (pte.pgoff - e.pgoff)) * BLOCK_SIZE : -1;
}

export function load(ctx: DaxContext, owner: MappingOwner, token: string, offset: number, length: number): Buffer {
  const pte = checkedPte(ctx, owner, token, offset, length);
  const out = Buffer.alloc(length);
  // A valid PTE's entry has kept its blocks since the PTE was installed (a ZERO entry is
  // replaced only after its PTEs are revoked, S1): its pfn is the PTE's.
  const at = addressOf(pte);
  if (at >= 0) out.set(ctx.fs.storage.view(at + offset, length));
  return out;
}

export function store(ctx: DaxContext, owner: MappingOwner, token: string, offset: number, data: Uint8Array): void {
  const pte = checkedPte(ctx, owner, token, offset, data.length);
  if (!pte.writable) throw new PteStaleError('store through a read-only PTE');
  storeThrough(ctx, pte.entry, addressOf(pte) + offset, data);
}

function storeThrough(ctx: DaxContext, e: Entry, at: number, data: Uint8Array): void {
  // S5: a writable PTE exists only on a DIRTY entry (writeback revokes them before cleaning).
  assert(e.dirty && e.state === 'MAPPED' && e.pfn !== 0 && at >= e.pfn * BLOCK_SIZE && at + data.length <= (e.pfn + e.pages) * BLOCK_SIZE,
    'writable PTE on a clean or unmapped entry, or a store outside it');
  ctx.fs.storage.view(at, data.length).set(data);
}

/** The page a fault_if_stale store is meant for (the token may be stale: it cannot say). */
export interface StoreTarget {
  ino: number;
  pgoff: number;
  /** MAP_SYNC for the fault, if one is taken. */
  sync: boolean;
}

/**
 * Store with fault_if_stale (issue: fault-then-store livelock under an fsync loop). The
 * store is always within the target page: `offset` counts from the page's first byte and
 * offset + length <= BLOCK_SIZE (EINVAL past it), whatever the token maps, so one request
 * writes the same bytes whether or not its token is still valid. A valid writable token
 * of this session for the target page, or for the PMD holding it: a plain store into that
 * page, null returned. A stale, unknown, empty or read-only one: a 4 KiB WRITE fault on
 * the target page whose store runs under the fault's entry lock, before any writeback can
 * downgrade the new PTE (S1, S5); that PTE is returned. Another session's token counts as
 * unknown (S7: its holder learns nothing from the answer): the caller's own fault is
 * taken. A valid token of this session for another page is refused (EINVAL): nothing is
 * faulted.
 */
export async function storeFaultIfStale(
  ctx: DaxContext, owner: MappingOwner, token: string, offset: number, data: Uint8Array, target: StoreTarget,
): Promise<Pte | null> {
  assertInPmd(offset, data.length);
  if (offset >= BLOCK_SIZE || offset + data.length > BLOCK_SIZE) {
    throw new InvalidArgumentError(`a fault_if_stale store is within its target page: [${offset}, ${offset + data.length}) is past ${BLOCK_SIZE} bytes`);
  }
  const known = token === '' ? null : ctx.ptes.resolve(owner, token);
  if (known !== null) {
    const last = known.order === 0 ? known.pgoff : known.pgoff + PMD_PAGES - 1;
    if (known.mapping.as.ino !== target.ino || target.pgoff < known.pgoff || target.pgoff > last) {
      throw new InvalidArgumentError(`the token maps page ${known.pgoff} of inode ${known.mapping.as.ino}, not page ${target.pgoff} of inode ${target.ino}`);
    }
    if (known.writable) {
      // The target page's first byte: the token's own, or its page of the PMD.
      storeThrough(ctx, known.entry, addressOf(known) + (target.pgoff - known.pgoff) * BLOCK_SIZE + offset, data);
      return null;
    }
  }
  const { pte } = await fault(ctx, owner, target.ino, target.pgoff, 'WRITE', target.sync, (fresh) => storeThrough(ctx, entryOf(ctx, fresh), fresh.pfn * BLOCK_SIZE + offset, data));
  assert(pte, 'a WRITE fault returned no PTE');
  return pte;
}

/** The entry a PTE just installed points at (the caller holds its lock). */
function entryOf(ctx: DaxContext, pte: Pte): Entry {
  const e = ctx.spaces.get(pte.ino)?.lookup(pte.pgoff);
  assert(e !== undefined && e.locked && e.pfn + (pte.pgoff - e.pgoff) === pte.pfn, `the new PTE's entry at pgoff ${pte.pgoff} is gone`);
  return e;
}
