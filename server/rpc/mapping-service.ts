/**
 * The Mapping service: page faults, loads and stores through PTE tokens, msync, unmap,
 * inspect (server/dax does the work; S1, S2, S3, S5, S7). The caller's session is looked
 * up once per call; it owns every PTE the call creates.
 */
import type { Logger } from 'pino';
import assert from 'node:assert';
import { InvalidArgumentError, LimitError, PteStaleError, QuotaError } from '../errors';
import { BLOCK_SIZE, PMD_ORDER, PMD_PAGES } from '../limits';
import type { Dax } from '../dax/dax';
import type { StoreTarget } from '../dax/access';
import type { FaultKind, FaultResult, FaultSize } from '../dax/fault';
import type { Pte } from '../dax/address-space';
import type { Session } from '../session/session';
import type { SessionTable } from '../session/session-table';
import type { MappingHandlers } from '../../wire/generated/daxd/v1/Mapping';
import type { FaultOutcome } from '../../wire/generated/daxd/v1/FaultOutcome';
import type { AccessOutcome } from '../../wire/generated/daxd/v1/AccessOutcome';
import type { Pte as WirePte } from '../../wire/generated/daxd/v1/Pte';
import { MAPPING_BATCH_OPS_MAX, RPC_IO_BYTES_MAX } from './limits';
import { toWireStatus } from './status';
import { unary } from './unary';
import { principalOf } from '../auth/call-principal';
import type { PrincipalFs } from '../auth/principal-fs';
import type { FsOfCall } from './files-service';
import * as v from './validate';

const FAULT_KINDS = ['READ', 'WRITE', 'COW'] as const;
/** FaultRequest.Size: the proto's names; a number (a newer client's value) is EINVAL. */
const FAULT_SIZES = ['PAGE', 'PMD'] as const satisfies readonly FaultSize[];

function pgoff(value: string | number, field: string): number {
  // Past FILE_BYTES_MAX no page can exist; faults there are SIGBUS, ranges are clamped.
  return v.u64(value, field);
}

function pageRange(first: string | number, last: string | number): [number, number] {
  const a = pgoff(first, 'first_pgoff');
  const b = pgoff(last, 'last_pgoff');
  if (b < a) throw new InvalidArgumentError(`last_pgoff ${b} is before first_pgoff ${a}`);
  return [a, b];
}

/** A PTE token: non-empty, at most ID_BYTES_MAX (EINVAL); unknown ones are PTE_STALE. */
function token(value: string): string {
  if (value.length === 0) throw new InvalidArgumentError('token is empty');
  return v.idLength(value, 'token');
}

/** The token of a fault_if_stale store: may be empty (nothing faulted yet), else as token(). */
function tokenOrEmpty(value: string): string {
  return value.length === 0 ? value : token(value);
}

const NO_DATA = Buffer.alloc(0);

/**
 * A fault's reply. A PAGE PTE names the faulted page; a PMD PTE (order 9) its aligned base
 * page, with size PMD. `size` and `fallback_reason` are sent only when they say something
 * (a PMD PTE, a fallback), so a PAGE fault's reply is the bytes it was before them.
 */
function ptetoWire(result: FaultResult, pg: number): { pte: WirePte | null; data: Buffer } {
  let pte: WirePte | null = null;
  if (result.pte) {
    const huge = result.pte.order === PMD_ORDER;
    pte = { pgoff: huge ? result.pte.pgoff : pg, pfn: result.pte.pfn, writable: result.pte.writable, token: result.pte.token };
    if (huge) pte.size = 'PMD';
    if (result.fallback !== undefined) pte.fallback_reason = result.fallback;
  }
  return { pte, data: result.data ?? NO_DATA };
}

// A FaultBatch of READ ops with load carries a page per op: the batch limit keeps its
// reply within what one call may return.
assert(MAPPING_BATCH_OPS_MAX * BLOCK_SIZE <= RPC_IO_BYTES_MAX, 'a FaultBatch of loads would exceed RPC_IO_BYTES_MAX');

function pteToWire(pte: Pte): WirePte {
  const wire: WirePte = { pgoff: pte.pgoff, pfn: pte.pfn, writable: pte.writable, token: pte.token };
  if (pte.order === PMD_ORDER) wire.size = 'PMD';
  return wire;
}

/** The page a fault_if_stale store names (ino, pgoff) and whether its fault is MAP_SYNC. */
function storeTarget(req: { ino: string | number; pgoff: string | number; sync: boolean }): StoreTarget {
  return { ino: v.ino(req.ino), pgoff: pgoff(req.pgoff, 'pgoff'), sync: req.sync };
}

function batchSize(n: number): void {
  if (n > MAPPING_BATCH_OPS_MAX) throw new LimitError('mapping batch ops', n, MAPPING_BATCH_OPS_MAX);
}

/**
 * Faults, loads and stores act for the call's principal: its own sessions only (another's
 * id is SESSION_UNKNOWN; PTE tokens belong to sessions), files inside its prefix, and
 * write faults (which allocate a hole's block) within its allocated-bytes quota.
 */
export function mappingHandlers(dax: Dax, sessions: SessionTable, fsOf: FsOfCall, log: Logger): MappingHandlers {
  const session = (id: string, call: object): Session => sessions.get(v.sessionId(id), principalOf(call));
  // A fault that may allocate runs with the holes it may fill reserved against the
  // principal's quota: its page, or for a PMD fault the aligned PMD_PAGES around it (a
  // PMD write fault on holes allocates them all). Should the quota not hold the 2 MiB,
  // the fault is taken as a PAGE fault (reserving its page) and says so, as a PMD fault
  // that found no aligned space does: NO_ALIGNED_SPACE.
  const fault = async (access: PrincipalFs, owner: Session, ino: number, pg: number, kind: FaultKind, sync: boolean, size: FaultSize): Promise<FaultResult> => {
    if (kind === 'READ') return dax.fault(owner, ino, pg, kind, sync, size);
    if (size === 'PAGE' || kind === 'COW') return access.allocating(ino, pg, pg, () => dax.fault(owner, ino, pg, kind, sync, size));
    const base = pg - (pg % PMD_PAGES);
    try {
      return await access.allocating(ino, base, base + PMD_PAGES - 1, () => dax.fault(owner, ino, pg, kind, sync, 'PMD'));
    } catch (err) {
      if (!(err instanceof QuotaError)) throw err;
      const result = await access.allocating(ino, pg, pg, () => dax.fault(owner, ino, pg, kind, sync, 'PAGE'));
      return { ...result, fallback: 'NO_ALIGNED_SPACE' };
    }
  };
  const storeFaulting = (access: PrincipalFs, owner: Session, tokenValue: string, offset: number, data: Buffer, target: StoreTarget): Promise<Pte | null> =>
    access.allocating(access.ino(target.ino), target.pgoff, target.pgoff, () => dax.storeFaultIfStale(owner, tokenValue, offset, data, target));
  // The page through the fault's new PTE: the token check is the fence (S7), so a PTE
  // revoked since the fault (a slow fault resumes after its locks are gone) loads nothing.
  const loadThrough = (owner: Session, pteToken: string): Buffer => {
    try {
      return dax.load(owner, pteToken, 0, BLOCK_SIZE);
    } catch (err) {
      if (err instanceof PteStaleError) return NO_DATA;
      throw err;
    }
  };
  const opError = (err: unknown, where: string) => {
    const s = toWireStatus(err, log, where);
    return { code: s.code, reason: s.reason ?? '', message: s.details };
  };

  return {
    Fault: unary(log, 'Mapping.Fault', async (req, call) => {
      const owner = session(req.session_id, call);
      const access = fsOf(call);
      const ino = access.ino(v.ino(req.ino));
      const pg = pgoff(req.pgoff, 'pgoff');
      const kind: FaultKind = v.enumValue(req.kind, FAULT_KINDS, 'kind');
      const size: FaultSize = v.enumValue(req.size, FAULT_SIZES, 'size');
      return ptetoWire(await fault(access, owner, ino, pg, kind, req.sync, size), pg);
    }),

    Load: unary(log, 'Mapping.Load', (req, call) => {
      const owner = session(req.session_id, call);
      const { offset, length } = v.mappingAccess(req.offset, v.u64(req.length, 'length'));
      return { data: dax.load(owner, token(req.token), offset, length) };
    }),

    Store: unary(log, 'Mapping.Store', async (req, call) => {
      const owner = session(req.session_id, call);
      const { offset } = v.mappingAccess(req.offset, req.data.length);
      if (req.fault_if_stale) {
        const pte = await storeFaulting(fsOf(call), owner, tokenOrEmpty(req.token), offset, req.data, storeTarget(req));
        return { pte: pte ? pteToWire(pte) : null };
      }
      dax.store(owner, token(req.token), offset, req.data);
      return {};
    }),

    Msync: unary(log, 'Mapping.Msync', async (req, call) => {
      const caller = session(req.session_id, call);
      const ino = fsOf(call).ino(v.ino(req.ino));
      const [first, last] = pageRange(req.first_pgoff, req.last_pgoff);
      await dax.msync(ino, first, last, caller);
      // Durable on return: the allocations behind the written pages commit too.
      await dax.fs.commit();
      return {};
    }),

    Unmap: unary(log, 'Mapping.Unmap', (req, call) => {
      const owner = session(req.session_id, call);
      const [first, last] = pageRange(req.first_pgoff, req.last_pgoff);
      dax.unmap(owner, fsOf(call).ino(v.ino(req.ino)), first, last);
      return {};
    }),

    Inspect: unary(log, 'Mapping.Inspect', (req, call) => {
      const [first, last] = pageRange(req.first_pgoff, req.last_pgoff);
      const entries = dax.inspect(fsOf(call).ino(v.ino(req.ino)), first, last).map((e) => ({
        pgoff: e.pgoff, state: e.state, pfn: e.pfn, locked: e.locked, dirty: e.dirty,
        pin_count: e.pinCount, mappers: e.mappers, towrite: e.towrite, waiters: e.waiters, order: e.order,
      }));
      return { entries };
    }),

    FaultBatch: unary(log, 'Mapping.FaultBatch', async (req, call) => {
      const owner = session(req.session_id, call);
      const access = fsOf(call);
      const ino = access.ino(v.ino(req.ino));
      batchSize(req.ops.length);
      const results: FaultOutcome[] = [];
      for (const op of req.ops) {
        try {
          const pg = pgoff(op.pgoff, 'pgoff');
          const kind: FaultKind = v.enumValue(op.kind, FAULT_KINDS, 'kind');
          const size: FaultSize = v.enumValue(op.size, FAULT_SIZES, 'size');
          if (op.load && kind !== 'READ') throw new InvalidArgumentError(`load applies to READ faults only, not ${kind}`);
          // 2 MiB of data per op would take the reply past RPC_IO_BYTES_MAX within a few ops.
          if (op.load && size === 'PMD') throw new InvalidArgumentError('load applies to PAGE faults only, not PMD (load through the PMD PTE)');
          const result = await fault(access, owner, ino, pg, kind, op.sync, size);
          const outcome = ptetoWire(result, pg);
          if (op.load && result.pte) outcome.data = loadThrough(owner, result.pte.token);
          results.push(outcome);
        } catch (err) {
          results.push({ error: opError(err, 'Mapping.FaultBatch') });
        }
      }
      return { results };
    }),

    AccessBatch: unary(log, 'Mapping.AccessBatch', async (req, call) => {
      const owner = session(req.session_id, call);
      const access = fsOf(call);
      batchSize(req.ops.length);
      const results: AccessOutcome[] = [];
      // Bytes the reply's loads carry so far: at most RPC_IO_BYTES_MAX (a load through a
      // PMD token may take 2 MiB, so MAPPING_BATCH_OPS_MAX loads alone no longer bound it);
      // a load past it fails alone, ELIMIT (the SDK splits its batches by the same bytes).
      let loadedBytes = 0;
      // In order. Only a fault_if_stale store that faults awaits; the rest run synchronously.
      for (const op of req.ops) {
        try {
          if (op.fault_if_stale) {
            if (!op.store) throw new InvalidArgumentError('fault_if_stale applies to stores only');
            const pte = await storeFaulting(access, owner, tokenOrEmpty(op.token), v.mappingAccess(op.offset, op.data.length).offset, op.data, storeTarget(op));
            results.push(pte ? { pte: pteToWire(pte) } : {});
          } else if (op.store) {
            dax.store(owner, token(op.token), v.mappingAccess(op.offset, op.data.length).offset, op.data);
            results.push({});
          } else {
            const { offset, length } = v.mappingAccess(op.offset, v.u64(op.length, 'length'));
            if (loadedBytes + length > RPC_IO_BYTES_MAX) throw new LimitError('bytes loaded per AccessBatch', loadedBytes + length, RPC_IO_BYTES_MAX);
            const data = dax.load(owner, token(op.token), offset, length);
            loadedBytes += data.length;
            results.push({ data });
          }
        } catch (err) {
          results.push({ error: opError(err, 'Mapping.AccessBatch') });
        }
      }
      return { results };
    }),
  };
}
