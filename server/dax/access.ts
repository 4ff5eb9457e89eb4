/**
 * Load and Store through PTE tokens: the CPU's view of a mapping. The token check here is
 * the fence (S7): a revoked, downgraded or foreign token changes nothing. No lock is
 * taken, as a CPU access takes none: a valid PTE means its entry is installed and its
 * block belongs to the file (revocation happens before any entry is removed).
 */
import assert from 'node:assert';
import { DaxError, InvalidArgumentError } from '../errors';
import { BLOCK_SIZE } from '../limits';
import type { DaxContext } from './dax-context';
import type { Pte } from './address-space';
import type { MappingOwner } from './owner';

export class PteStaleError extends DaxError {
  constructor(why: string) {
    super('PTE_STALE', `${why}: fault the page again`);
  }
}

export class ForeignTokenError extends DaxError {
  constructor() {
    super('SESSION_UNKNOWN', 'the PTE token belongs to another session');
  }
}

function checkedPte(ctx: DaxContext, owner: MappingOwner, token: string, offset: number, length: number): Pte {
  const pte = ctx.ptes.lookup(token);
  if (!pte || !pte.valid) throw new PteStaleError('the PTE token is stale or unknown');
  if (pte.mapping.owner.id !== owner.id) throw new ForeignTokenError();
  // The fence covers the page, not just the token: an offset outside [0, BLOCK_SIZE) would
  // reach the neighbouring block, which may belong to another file.
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > BLOCK_SIZE) {
    throw new InvalidArgumentError(`access [${offset}, ${offset + length}) is not inside the page [0, ${BLOCK_SIZE})`);
  }
  return pte;
}

export function load(ctx: DaxContext, owner: MappingOwner, token: string, offset: number, length: number): Buffer {
  const pte = checkedPte(ctx, owner, token, offset, length);
  const out = Buffer.alloc(length);
  if (pte.pfn !== 0) out.set(ctx.fs.storage.view(pte.pfn * BLOCK_SIZE + offset, length));
  return out;
}

export function store(ctx: DaxContext, owner: MappingOwner, token: string, offset: number, data: Uint8Array): void {
  const pte = checkedPte(ctx, owner, token, offset, data.length);
  if (!pte.writable) throw new PteStaleError('store through a read-only PTE');
  // S5: a writable PTE exists only on a DIRTY entry (writeback revokes them before cleaning).
  assert(pte.entry.dirty && pte.entry.state === 'MAPPED' && pte.pfn !== 0, 'writable PTE on a clean or unmapped entry');
  ctx.fs.storage.view(pte.pfn * BLOCK_SIZE + offset, data.length).set(data);
}
