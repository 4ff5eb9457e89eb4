/**
 * How a MappedFile's page accesses reach the server: in rounds. A round takes the page
 * ops queued so far (every op submitted in the same event-loop turn, up to
 * MAPPING_ROUND_OPS_MAX), faults in the pages that lack a usable PTE with FaultBatch,
 * then runs every load and store with AccessBatch: two round trips per 1024 pages, not
 * two per page. A READ fault brings its page along (FaultBatch with load), so the loads
 * of pages faulted in the round need no AccessBatch: a sequential read is one round trip
 * per 1024 pages. At most MAPPING_ROUNDS_IN_FLIGHT_MAX rounds run at once; the rest wait in
 * the queue (bounded by the callers' outstanding reads and writes).
 *
 * A page op is one access inside one page: a load (copied into the caller's buffer) or a
 * store. On a private mapping a store never reaches the server: the first one on a page
 * takes a COW fault (the private copy) and every access to that page is then served from
 * the copy.
 *
 * Stores carry fault_if_stale with their page: a writable PTE that writeback revoked
 * between the round's fault and its store is faulted again by the server, under the
 * entry lock, in the same call (no retry: an fsync loop cannot starve a store).
 *
 * Retries (the fence is the server's: S7). An access answered PTE_STALE changed nothing;
 * its PTE is dropped and the op goes back to the queue to fault again. So does an op whose
 * PTE an Invalidate event dropped between its fault and its access. After
 * MAPPING_STALE_RETRIES_MAX such retries the op fails with PTE_STALE: only a page
 * invalidated that often while the op is in flight gets there. Faults are not retried: a
 * failed fault (SIGBUS past EOF, ENOSPC, ...) fails the ops of its page.
 *
 * Two rounds needing the same page share its fault when the one in flight gives what the
 * other needs (a WRITE or COW fault serves a READ need); otherwise each faults (the older
 * PTE is simply forgotten by the page table, the server keeps it until unmap).
 *
 * Huge mappings ({ huge: true }): the READ and WRITE faults a round needs are first asked
 * for as PMD faults, one per 2 MiB-aligned range (WRITE if any page of it is stored to),
 * at the range's first page the round needs, without load (a PMD carries no page data).
 * A PMD PTE serves every page of its range. A fault that fell back (the server's PAGE PTE
 * and reason) or failed sends the range's other needed pages on as PAGE faults, in a
 * second FaultBatch of the same round: the fallback is invisible to the caller, and costs
 * one round trip. COW faults are always PAGE faults (the server would fall back: COW).
 * Loads through a PMD PTE take their offset from its first page; stores carry
 * fault_if_stale with their page as any store, and a fault_if_stale store's offset is
 * within its page whatever the token maps (a writeback that revoked the PMD PTE makes
 * the server take a 4 KiB WRITE fault of that page, whose PTE then serves it).
 */
import * as grpc from '@grpc/grpc-js';
import { DaxClientError } from './errors';
import { MAPPING_ROUNDS_IN_FLIGHT_MAX, MAPPING_ROUND_OPS_MAX, MAPPING_STALE_RETRIES_MAX } from './limits';
import type { AccessOp, FaultKind, FaultOp, MappingRpc } from './mapping-rpc';
import { PageTable, pmdBase } from './page-table';

/**
 * One read() or write() of a mapping: done settles once every one of its page ops has,
 * rejecting with the error of the lowest failed page (as a memcpy faults at the first).
 * One promise per call, not per page: a 16 MiB read is 4096 page ops.
 */
export class PageCall {
  readonly done: Promise<void>;
  private pending = 0;
  private failed: { index: number; err: Error } | null = null;
  private resolve!: () => void;
  private reject!: (err: Error) => void;

  constructor() {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Registers one more page op; returns its index in the call. */
  add(): number {
    return this.pending++;
  }

  opSettled(index: number, err: Error | null): void {
    if (err && (this.failed === null || index < this.failed.index)) this.failed = { index, err };
    if (--this.pending > 0) return;
    if (this.failed) this.reject(this.failed.err);
    else this.resolve();
  }
}

/** One access inside one page; settle() reports it to its call, once. */
export class PageOp {
  attempts = 0;
  settled = false;
  private readonly index: number;

  constructor(
    private readonly call: PageCall,
    readonly pgoff: number,
    /** Byte offset inside the page. */
    readonly offset: number,
    readonly length: number,
    /** A store's bytes; null for a load. */
    readonly data: Uint8Array | null,
    /** A load copies its bytes to target[targetOffset...]. */
    readonly target: Buffer | null,
    readonly targetOffset: number,
  ) {
    this.index = call.add();
  }

  settle(err: Error | null): void {
    if (this.settled) return;
    this.settled = true;
    this.call.opSettled(this.index, err);
  }
}

export interface RoundHost {
  readonly ino: number;
  readonly isPrivate: boolean;
  /** MAP_SYNC: WRITE faults commit their allocation before they return. */
  readonly sync: boolean;
  /** Ask for PMD (2 MiB) faults first, falling back to PAGE faults (see the file comment). */
  readonly huge: boolean;
  readonly table: PageTable;
  readonly rpc: MappingRpc;
  /** Null while the mapping is usable; the error its ops fail with once it is unmapped. */
  closedError(): Error | null;
}

/** Does a fault of kind `have` (in flight) give what a fault of kind `want` would? */
function covers(have: FaultKind, want: FaultKind): boolean {
  return have === want || want === 'READ';
}

export class MappingRounds {
  private queue: PageOp[] = [];
  private inFlight = 0;
  private scheduled = false;
  private readonly faulting = new Map<number, { kind: FaultKind; done: Promise<void> }>();
  /** Ops sent back to the queue after PTE_STALE or a dropped PTE. */
  staleRetries = 0;
  /** PMD faults that gave a PMD PTE, and those that fell back to a PAGE PTE (huge mappings). */
  pmdFaults = 0;
  pmdFallbacks = 0;

  constructor(private readonly host: RoundHost) {}

  submit(ops: readonly PageOp[]): void {
    for (const op of ops) this.queue.push(op);
    this.schedule();
  }

  /** Fails every queued op (unmap); rounds in flight finish and fail theirs on retry. */
  failQueued(err: Error): void {
    for (const op of this.queue.splice(0)) op.settle(err);
  }

  private schedule(): void {
    if (this.scheduled || this.queue.length === 0 || this.inFlight >= MAPPING_ROUNDS_IN_FLIGHT_MAX) return;
    this.scheduled = true;
    // Next turn: every op submitted in this one joins the round.
    setImmediate(() => {
      this.scheduled = false;
      this.startRounds();
    });
  }

  private startRounds(): void {
    while (this.inFlight < MAPPING_ROUNDS_IN_FLIGHT_MAX && this.queue.length > 0) {
      const ops = this.queue.length <= MAPPING_ROUND_OPS_MAX ? this.queue : this.queue.slice(0, MAPPING_ROUND_OPS_MAX);
      this.queue = ops === this.queue ? [] : this.queue.slice(MAPPING_ROUND_OPS_MAX);
      this.inFlight++;
      void this.round(ops).finally(() => {
        this.inFlight--;
        this.schedule();
      });
    }
  }

  private async round(ops: PageOp[]): Promise<void> {
    try {
      const { errors: faultErrors, loaded } = await this.faultMissing(ops);
      const accesses: Array<{ op: PageOp; access: AccessOp }> = [];
      for (const op of ops) {
        if (op.settled) continue;
        const failed = faultErrors.get(op.pgoff);
        const page = op.data === null ? loaded.get(op.pgoff) : undefined;
        if (failed) op.settle(failed);
        else if (this.servedPrivately(op)) op.settle(null);
        else if (page !== undefined) {
          // Loaded by this round's READ fault (FaultBatch with load): no access needed. The
          // page is a view of the reply (wire/fault-decode.ts); this is its one copy, into
          // the caller's buffer. Handing the view itself out would alias it between ops of
          // the same page and keep the whole reply (up to 4 MiB) alive per 4 KiB page kept.
          page.copy(op.target as Buffer, op.targetOffset, op.offset, op.offset + op.length);
          op.settle(null);
        } else {
          const access = this.accessFor(op);
          if (access) accesses.push({ op, access });
          else this.retry(op, null); // an Invalidate dropped the PTE after the fault
        }
      }
      if (accesses.length > 0) await this.access(accesses);
    } catch (err) {
      // The call itself failed (session gone, server unreachable): every op of the round.
      for (const op of ops) op.settle(err as Error);
    }
  }

  /** The fault a page op still needs, or null. */
  private faultNeeded(op: PageOp): FaultKind | null {
    const { table } = this.host;
    if (this.host.isPrivate && table.privatePage(op.pgoff)) return null;
    if (op.data !== null) {
      if (this.host.isPrivate) return 'COW';
      return table.pte(op.pgoff)?.writable ? null : 'WRITE';
    }
    return table.pte(op.pgoff) ? null : 'READ';
  }

  /**
   * Faults the pages the ops lack (one FaultBatch per 1024 pages). READ faults ask for the
   * page too (load): the round's loads of it are then served from the reply, with no
   * AccessBatch. Returns the per-page errors and the pages loaded.
   */
  private async faultMissing(ops: readonly PageOp[]): Promise<{ errors: Map<number, Error>; loaded: Map<number, Buffer> }> {
    const need = new Map<number, FaultKind>();
    const waits: Promise<void>[] = [];
    for (const op of ops) {
      const kind = this.faultNeeded(op);
      if (kind === null) continue;
      const inFlight = this.faulting.get(op.pgoff);
      if (inFlight && covers(inFlight.kind, kind)) {
        waits.push(inFlight.done);
        continue;
      }
      // A page some op stores to (or COWs) needs that fault; it serves the loads too.
      const had = need.get(op.pgoff);
      if (had === undefined || had === 'READ') need.set(op.pgoff, kind);
    }
    const errors = new Map<number, Error>();
    const loaded = new Map<number, Buffer>();
    if (need.size > 0) await this.fault([...need].sort((a, b) => a[0] - b[0]), errors, loaded);
    await Promise.all(waits);
    return { errors, loaded };
  }

  private async fault(faults: Array<[number, FaultKind]>, errors: Map<number, Error>, loaded: Map<number, Buffer>): Promise<void> {
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    for (const [pg, kind] of faults) this.faulting.set(pg, { kind, done });
    try {
      const pageFaults = this.host.huge ? await this.faultPmds(faults, errors) : faults;
      if (pageFaults.length > 0) await this.faultPages(pageFaults, errors, loaded);
    } finally {
      for (const [pg] of faults) if (this.faulting.get(pg)?.done === done) this.faulting.delete(pg);
      finish();
    }
  }

  /**
   * Huge mappings: one PMD fault per 2 MiB range holding READ or WRITE needs (`faults` is
   * sorted by page, so each range's first need comes first). Returns the faults still to
   * take as PAGE faults: COW ones, and the needs of ranges whose PMD fault fell back
   * (past its first page, which the fallback PTE maps) or failed (all: each page then
   * gets its own outcome).
   */
  private async faultPmds(faults: Array<[number, FaultKind]>, errors: Map<number, Error>): Promise<Array<[number, FaultKind]>> {
    const { table, rpc, ino, sync } = this.host;
    const ranges = new Map<number, Array<[number, FaultKind]>>();
    const rest: Array<[number, FaultKind]> = [];
    for (const f of faults) {
      if (f[1] === 'COW') {
        rest.push(f);
        continue;
      }
      const base = pmdBase(f[0]);
      const range = ranges.get(base);
      if (range) range.push(f);
      else ranges.set(base, [f]);
    }
    if (ranges.size === 0) return faults;
    const needs = [...ranges.values()];
    const ops = needs.map((range): FaultOp => {
      const kind: FaultKind = range.some(([, k]) => k === 'WRITE') ? 'WRITE' : 'READ';
      return { pgoff: range[0][0], kind, sync: sync && kind === 'WRITE', size: 'PMD' };
    });
    const outcomes = await rpc.faultBatch(ino, ops);
    outcomes.forEach((outcome, i) => {
      const range = needs[i];
      if (outcome.ok && outcome.pte?.size === 'PMD') {
        this.pmdFaults++;
        table.install(outcome.pte);
      } else if (outcome.ok && outcome.pte) {
        // Fell back (or an older server ignored the size): a PAGE PTE of the first need.
        this.pmdFallbacks++;
        table.install(outcome.pte);
        rest.push(...range.slice(1));
      } else if (outcome.ok) {
        rest.push(...range); // no PTE (not expected for READ / WRITE): fault each page
      } else if (range.length === 1) {
        errors.set(range[0][0], outcome.error);
      } else {
        rest.push(...range);
      }
    });
    return rest.sort((a, b) => a[0] - b[0]);
  }

  /** PAGE faults (READ ones with load), their PTEs and private pages into the table. */
  private async faultPages(faults: Array<[number, FaultKind]>, errors: Map<number, Error>, loaded: Map<number, Buffer>): Promise<void> {
    const { table, rpc, ino, sync } = this.host;
    const outcomes = await rpc.faultBatch(ino, faults.map(([pgoff, kind]) => ({ pgoff, kind, sync: sync && kind === 'WRITE', load: kind === 'READ' })));
    outcomes.forEach((outcome, i) => {
      const pg = faults[i][0];
      if (!outcome.ok) errors.set(pg, outcome.error);
      else if (outcome.pte) {
        table.install(outcome.pte);
        if (outcome.data !== null && faults[i][1] === 'READ') loaded.set(pg, outcome.data);
      } else if (outcome.data) {
        try {
          table.installPrivate(pg, outcome.data);
        } catch (err) {
          errors.set(pg, err as Error);
        }
      }
    });
  }

  /** A private mapping's page with a private copy: the access is local. */
  private servedPrivately(op: PageOp): boolean {
    if (!this.host.isPrivate) return false;
    const copy = this.host.table.privatePage(op.pgoff);
    if (!copy) return false;
    if (op.data !== null) copy.set(op.data, op.offset);
    else copy.copy(op.target as Buffer, op.targetOffset, op.offset, op.offset + op.length);
    return true;
  }

  private accessFor(op: PageOp): AccessOp | null {
    const pte = this.host.table.pte(op.pgoff);
    if (!pte) return null;
    // A load through a PMD PTE counts its offset from the PMD's first page.
    if (op.data === null) return { store: false, token: pte.token, offset: PageTable.accessOffset(pte, op.pgoff, op.offset), length: op.length };
    // A private mapping stores only into its copies; a shared one only through writable PTEs.
    if (this.host.isPrivate || !pte.writable) return null;
    // fault_if_stale: should writeback have revoked the PTE since its fault (an fsync loop
    // does, every time), the server faults and stores in one step instead of PTE_STALE.
    // The offset is within the op's page, whatever the token maps (a PMD token too).
    const { ino, sync } = this.host;
    return { store: true, token: pte.token, offset: op.offset, data: op.data, faultIfStale: { ino, pgoff: op.pgoff, sync } };
  }

  private async access(accesses: Array<{ op: PageOp; access: AccessOp }>): Promise<void> {
    const outcomes = await this.host.rpc.accessBatch(accesses.map((a) => a.access));
    outcomes.forEach((outcome, i) => {
      const { op, access } = accesses[i];
      if (outcome.ok) {
        if (outcome.pte) this.host.table.install(outcome.pte); // the store's own fault: keep its PTE
        if (op.data === null) {
          if (outcome.data.length !== op.length) throw new Error(`load of ${op.length} bytes returned ${outcome.data.length}`);
          outcome.data.copy(op.target as Buffer, op.targetOffset);
        }
        op.settle(null);
      } else if (outcome.error.reason === 'PTE_STALE') {
        // Nothing happened; the PTE is gone (invalidated, downgraded by writeback): fault again.
        this.host.table.dropToken(op.pgoff, access.token);
        this.retry(op, outcome.error);
      } else {
        op.settle(outcome.error);
      }
    });
  }

  private retry(op: PageOp, stale: DaxClientError | null): void {
    const closed = this.host.closedError();
    if (closed) {
      op.settle(closed);
      return;
    }
    op.attempts++;
    if (op.attempts > MAPPING_STALE_RETRIES_MAX) {
      op.settle(stale ?? new DaxClientError(grpc.status.ABORTED, 'PTE_STALE',
        `page ${op.pgoff} of inode ${this.host.ino} was invalidated ${op.attempts} times while being accessed`));
      return;
    }
    this.staleRetries++;
    this.queue.push(op);
    this.schedule();
  }
}
