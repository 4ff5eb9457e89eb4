/**
 * Load and Store through PTE tokens: the CPU's view of a mapping. The token check here is
 * the fence (S7): a revoked, downgraded or foreign token changes nothing. No lock is
 * taken, as a CPU access takes none: a valid PTE means its entry is installed and its
 * block belongs to the file (revocation happens before any entry is removed).
 */
import assert from 'node:assert';
import { InvalidArgumentError, PteStaleError } from '../errors';
import { BLOCK_SIZE } from '../limits';
import type { DaxContext } from './dax-context';
import type { Entry, Pte } from './address-space';
import type { ResolvedPte } from './pte';
import { fault } from './fault';
import type { MappingOwner } from './owner';

/**
 * The fence covers the page, not just the token: an offset outside [0, BLOCK_SIZE) would
 * reach the neighbouring block, which may belong to another file. The edge refused such
 * ranges (server/rpc/validate.ts pageAccess: EINVAL); here it is a precondition.
 */
function assertInPage(offset: number, length: number): void {
  assert(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= BLOCK_SIZE,
    `access [${offset}, ${offset + length}) outside the page reached the engine unchecked`);
}

function checkedPte(ctx: DaxContext, owner: MappingOwner, token: string, offset: number, length: number): ResolvedPte {
  assertInPage(offset, length);
  const pte = ctx.ptes.resolve(owner, token);
  // Another session's token answers exactly as an unknown one (S7): its holder learns
  // nothing about the other session, and nothing is done through it.
  if (pte === null) throw new PteStaleError('the PTE token is stale or unknown');
  return pte;
}

export function load(ctx: DaxContext, owner: MappingOwner, token: string, offset: number, length: number): Buffer {
  const { entry } = checkedPte(ctx, owner, token, offset, length);
  const out = Buffer.alloc(length);
  // A valid PTE's entry has kept its block since the PTE was installed (a ZERO entry is
  // replaced only after its PTEs are revoked, S1): its pfn is the PTE's.
  if (entry.state === 'MAPPED') out.set(ctx.fs.storage.view(entry.pfn * BLOCK_SIZE + offset, length));
  return out;
}

export function store(ctx: DaxContext, owner: MappingOwner, token: string, offset: number, data: Uint8Array): void {
  const pte = checkedPte(ctx, owner, token, offset, data.length);
  if (!pte.writable) throw new PteStaleError('store through a read-only PTE');
  storeThrough(ctx, pte.entry, offset, data);
}

function storeThrough(ctx: DaxContext, e: Entry, offset: number, data: Uint8Array): void {
  // S5: a writable PTE exists only on a DIRTY entry (writeback revokes them before cleaning).
  assert(e.dirty && e.state === 'MAPPED' && e.pfn !== 0, 'writable PTE on a clean or unmapped entry');
  ctx.fs.storage.view(e.pfn * BLOCK_SIZE + offset, data.length).set(data);
}

/** The page a fault_if_stale store is meant for (the token may be stale: it cannot say). */
export interface StoreTarget {
  ino: number;
  pgoff: number;
  /** MAP_SYNC for the fault, if one is taken. */
  sync: boolean;
}

/**
 * Store with fault_if_stale (issue: fault-then-store livelock under an fsync loop). A
 * valid writable token of this session for the target page: a plain store, null
 * returned. A stale, unknown, empty or read-only one: a WRITE fault on the target page
 * whose store runs under the fault's entry lock, before any writeback can downgrade the
 * new PTE (S1, S5); that PTE is returned. Another session's token counts as unknown (S7:
 * its holder learns nothing from the answer): the caller's own fault is taken. A valid
 * token of this session for another page is refused (EINVAL): nothing is faulted.
 */
export async function storeFaultIfStale(
  ctx: DaxContext, owner: MappingOwner, token: string, offset: number, data: Uint8Array, target: StoreTarget,
): Promise<Pte | null> {
  assertInPage(offset, data.length);
  const known = token === '' ? null : ctx.ptes.resolve(owner, token);
  if (known !== null) {
    if (known.mapping.as.ino !== target.ino || known.entry.pgoff !== target.pgoff) {
      throw new InvalidArgumentError(`the token maps page ${known.entry.pgoff} of inode ${known.mapping.as.ino}, not page ${target.pgoff} of inode ${target.ino}`);
    }
    if (known.writable) {
      storeThrough(ctx, known.entry, offset, data);
      return null;
    }
  }
  const { pte } = await fault(ctx, owner, target.ino, target.pgoff, 'WRITE', target.sync, (fresh) => storeThrough(ctx, entryOf(ctx, fresh), offset, data));
  assert(pte, 'a WRITE fault returned no PTE');
  return pte;
}

/** The entry a PTE just installed points at (the caller holds its lock). */
function entryOf(ctx: DaxContext, pte: Pte): Entry {
  const e = ctx.spaces.get(pte.ino)?.entries.get(pte.pgoff);
  assert(e !== undefined && e.locked && e.pfn === pte.pfn, `the new PTE's entry at pgoff ${pte.pgoff} is gone`);
  return e;
}
