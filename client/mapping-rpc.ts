/**
 * The Mapping service as one session sees it: FaultBatch / AccessBatch split into calls of
 * at most MAPPING_BATCH_OPS_MAX ops (and the server's max_io_bytes of data), sent
 * concurrently, each outcome decoded to a PTE, bytes, or a DaxClientError; Msync and
 * Unmap of a page range. Per-op failures come back as values, never as a rejected call:
 * the caller decides per page (PTE_STALE: re-fault; SIGBUS: fail that access).
 *
 * Retries on UNAVAILABLE: faults, loads, msync and unmap may run twice (another PTE, the
 * same bytes, an idempotent flush); a batch holding stores is sent once.
 */
import type { MappingClient } from '../wire/generated/daxd/v1/Mapping';
import type { AccessBatchRequest } from '../wire/generated/daxd/v1/AccessBatchRequest';
import type { AccessBatchResponse__Output } from '../wire/generated/daxd/v1/AccessBatchResponse';
import type { FaultBatchRequest } from '../wire/generated/daxd/v1/FaultBatchRequest';
import type { FaultBatchResponse__Output } from '../wire/generated/daxd/v1/FaultBatchResponse';
import type { OpError__Output } from '../wire/generated/daxd/v1/OpError';
import { DaxClientError, SigbusError } from './errors';
import { PAGE_BYTES, RPC_IO_BYTES_MAX, MAPPING_BATCH_OPS_MAX, RETRY_BACKOFF_MS } from './limits';
import { callUnary, type UnaryMethod } from './unary-call';

export type FaultKind = 'READ' | 'WRITE' | 'COW';

/**
 * How much one fault maps: PAGE (4 KiB, the default), or PMD: the 2 MiB-aligned range
 * holding pgoff, with one PTE, or (the server falls back) a PAGE PTE and the reason.
 */
export type FaultSize = 'PAGE' | 'PMD';

export interface FaultOp {
  pgoff: number;
  kind: FaultKind;
  /** MAP_SYNC: the allocation is durable before the reply. */
  sync?: boolean;
  /** READ only: the reply carries the page's bytes too (a bulk load; no AccessBatch needed). Not with size PMD (EINVAL). */
  load?: boolean;
  /** Absent: PAGE (nothing is sent: the request is what it was before sizes). */
  size?: FaultSize;
}

/** A page table entry as the server handed it out. */
export interface ClientPte {
  /** PAGE: the faulted page. PMD: the first of the PMD_PAGES pages it maps (2 MiB-aligned). */
  pgoff: number;
  pfn: number;
  writable: boolean;
  token: string;
  /**
   * What the token maps: a page (PAGE; also when absent) or PMD_BYTES from pgoff (PMD):
   * accesses through it take offsets from pgoff's first byte. Set on every fault outcome.
   */
  size?: FaultSize;
  /** '' unless a PMD fault fell back to PAGE: why (CROSSES_EOF, PTE_ENTRIES, ...). Set on every fault outcome. */
  fallbackReason?: string;
}

/**
 * One fault's outcome: a PTE (READ / WRITE), the private copy (COW), or why it failed.
 * data: the private copy (COW), or the page (a READ with load, when the server sent it:
 * an older server, or a PTE revoked right after its fault, sends none).
 */
export type FaultOutcome =
  | { ok: true; pte: ClientPte | null; data: Buffer | null }
  | { ok: false; error: DaxClientError };

/**
 * A store may name its page (fault_if_stale): if its token is stale, empty or read-only,
 * the server takes the WRITE fault and stores in one step, and the outcome's pte is the
 * new PTE. Writeback between a fault and its store then costs no round trip.
 */
export interface StoreTarget {
  ino: number;
  pgoff: number;
  /** MAP_SYNC for the fault, if one is taken. */
  sync: boolean;
}

export type AccessOp =
  | { store: false; token: string; offset: number; length: number }
  | { store: true; token: string; offset: number; data: Uint8Array; faultIfStale?: StoreTarget };

/** pte: the PTE a fault_if_stale store faulted in (null when its token was used as is). */
export type AccessOutcome = { ok: true; data: Buffer; pte: ClientPte | null } | { ok: false; error: DaxClientError };

export interface MappingCallCounts {
  faultBatchCalls: number;
  accessBatchCalls: number;
  faultOps: number;
  accessOps: number;
}

export interface MappingRpcOptions {
  deadlineMs: number;
  retries: number;
  /** Most data one AccessBatch call carries: the server's max_io_bytes (RPC_IO_BYTES_MAX if not given). */
  ioBytesMax?: () => number;
}

/** A Pte as decoded (the hand decoder or protobufjs: defaults filled in; a stub may leave size out). */
interface WirePte {
  pgoff: string;
  pfn: string;
  writable: boolean;
  token: string;
  size?: string | number;
  fallback_reason?: string;
}

/**
 * A fault's PTE: a PAGE PTE is the asked page's (as before sizes); a PMD PTE covers the
 * PMD_PAGES pages from its aligned pgoff (the server's). No size reads as PAGE (a server
 * before sizes); a size this SDK does not know (a newer server's, which it would only
 * send when asked for it) is refused.
 */
function clientPte(p: WirePte, askedPgoff: number): ClientPte {
  const size = p.size ?? 'PAGE';
  if (size !== 'PAGE' && size !== 'PMD') throw new Error(`the server answered a PTE of unknown size ${String(size)}`);
  return {
    pgoff: size === 'PMD' ? Number(p.pgoff) : askedPgoff, pfn: Number(p.pfn), writable: p.writable, token: p.token, size, fallbackReason: p.fallback_reason ?? '',
  };
}

/** An op's failure as the SDK's error: SIGBUS gets its own class (a fault at or past EOF). */
export function opFailure(err: OpError__Output): DaxClientError {
  return err.reason === 'SIGBUS' ? new SigbusError(err.message) : DaxClientError.fromOpError(err);
}

/** Splits items into runs of at most maxOps items and (by weigh) maxBytes bytes. */
export function splitBatches<T>(items: readonly T[], maxOps: number, maxBytes: number, weigh: (item: T) => number): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const w = weigh(item);
    if (current.length > 0 && (current.length === maxOps || bytes + w > maxBytes)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += w;
  }
  if (current.length > 0) out.push(current);
  return out;
}

export class MappingRpc {
  /** Calls and ops sent so far (tests and benchmarks check the batching with these). */
  readonly counts: MappingCallCounts = { faultBatchCalls: 0, accessBatchCalls: 0, faultOps: 0, accessOps: 0 };

  constructor(
    private readonly client: MappingClient,
    readonly sessionId: string,
    private readonly options: MappingRpcOptions,
  ) {}

  /** Faults of one file, in order per call; outcomes in the order of `ops`. */
  async faultBatch(ino: number, ops: readonly FaultOp[]): Promise<FaultOutcome[]> {
    const ioBytesMax = this.options.ioBytesMax?.() ?? RPC_IO_BYTES_MAX;
    const batches = splitBatches(ops, MAPPING_BATCH_OPS_MAX, ioBytesMax, (op) => (op.load ? PAGE_BYTES : 0));
    const replies = await Promise.all(batches.map(async (batch) => {
      this.counts.faultBatchCalls++;
      this.counts.faultOps += batch.length;
      // The ops go as they are (FaultOp has the wire's field names; an absent sync or load
      // is false on the wire too): no second object per op.
      const request: FaultBatchRequest = { session_id: this.sessionId, ino, ops: batch as FaultOp[] };
      const response = await this.call<FaultBatchRequest, FaultBatchResponse__Output>(this.client.FaultBatch, request, true);
      if (response.results.length !== batch.length) {
        throw new Error(`FaultBatch answered ${response.results.length} outcomes for ${batch.length} ops`);
      }
      return response.results.map((r, i): FaultOutcome => {
        if (r.error) return { ok: false, error: opFailure(r.error) };
        const pte = r.pte ? clientPte(r.pte, batch[i].pgoff) : null;
        const loaded = batch[i].load === true && r.data.length === PAGE_BYTES;
        return { ok: true, pte, data: batch[i].kind === 'COW' || loaded ? r.data : null };
      });
    }));
    return replies.flat();
  }

  /** Loads and stores, in order per call; outcomes in the order of `ops`. */
  async accessBatch(ops: readonly AccessOp[]): Promise<AccessOutcome[]> {
    const ioBytesMax = this.options.ioBytesMax?.() ?? RPC_IO_BYTES_MAX;
    const batches = splitBatches(ops, MAPPING_BATCH_OPS_MAX, ioBytesMax, (op) => (op.store ? op.data.length : op.length));
    const replies = await Promise.all(batches.map(async (batch) => {
      this.counts.accessBatchCalls++;
      this.counts.accessOps += batch.length;
      const request: AccessBatchRequest = {
        session_id: this.sessionId,
        ops: batch.map((op) => (op.store
          ? {
            token: op.token, offset: op.offset, data: op.data, store: true,
            ...(op.faultIfStale ? { fault_if_stale: true, ino: op.faultIfStale.ino, pgoff: op.faultIfStale.pgoff, sync: op.faultIfStale.sync } : {}),
          }
          : { token: op.token, offset: op.offset, length: op.length, store: false })),
      };
      const idempotent = batch.every((op) => !op.store);
      const response = await this.call<AccessBatchRequest, AccessBatchResponse__Output>(this.client.AccessBatch, request, idempotent);
      if (response.results.length !== batch.length) {
        throw new Error(`AccessBatch answered ${response.results.length} outcomes for ${batch.length} ops`);
      }
      return response.results.map((r, i): AccessOutcome => {
        if (r.error) return { ok: false, error: opFailure(r.error) };
        const op = batch[i];
        const pte = r.pte && op.store && op.faultIfStale ? clientPte(r.pte, op.faultIfStale.pgoff) : null;
        return { ok: true, data: r.data, pte };
      });
    }));
    return replies.flat();
  }

  /** Write back [firstPgoff, lastPgoff] of the file and commit: durable on return. */
  async msync(ino: number, firstPgoff: number, lastPgoff: number): Promise<void> {
    await this.call(this.client.Msync, { session_id: this.sessionId, ino, first_pgoff: firstPgoff, last_pgoff: lastPgoff }, true);
  }

  /** Drop this session's PTEs on [firstPgoff, lastPgoff] of the file. */
  async unmap(ino: number, firstPgoff: number, lastPgoff: number): Promise<void> {
    await this.call(this.client.Unmap, { session_id: this.sessionId, ino, first_pgoff: firstPgoff, last_pgoff: lastPgoff }, true);
  }

  private call<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, idempotent: boolean): Promise<Res> {
    return callUnary(method.bind(this.client) as UnaryMethod<Req, Res>, request, {
      deadlineMs: this.options.deadlineMs, idempotent, retries: this.options.retries, backoffMs: RETRY_BACKOFF_MS,
    });
  }
}
