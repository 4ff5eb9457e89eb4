/**
 * MappedFile: a file mapped into a session over the network, read and written byte-wise
 * as a process reads and writes an mmap(2)ed region.
 *
 *   const session = await client.openSession();
 *   const map = session.mmap(file.ino, { shared: true, writable: true });
 *   await map.write(8192, Buffer.from('hello'));   // WRITE fault on page 2, then a store
 *   const bytes = await map.read(8192, 5);          // through the same PTE: 'hello'
 *   await map.msync();                              // durable (S5, S6)
 *   await map.unmap();
 *
 * Lifecycle: mmap (no call: faults are lazy) -> read / write (faults and accesses, in
 * batched rounds: mapping-rounds.ts) -> msync -> unmap, or the session's end, which drops
 * every PTE server-side (S7). Invalidate events of the session for this file drop the
 * cached PTEs of their range (pages then fault again); they are only a hint, the server's
 * token check is the fence.
 *
 * `huge: true` maps with PMD (2 MiB) faults where the server can (mapping-rounds.ts),
 * falling back to 4 KiB faults on its own; reads and writes see the same bytes either way.
 *
 * Modes (exactly one of shared / private, as mmap(2) wants exactly one of MAP_SHARED /
 * MAP_PRIVATE):
 * - shared: reads take READ faults (a hole maps the zero page, nothing is allocated);
 *   writes need writable PTEs, which WRITE faults give (allocating, pre-zeroed: S2) and
 *   writeback takes away (the next write faults again and re-dirties: S5). `sync` makes
 *   WRITE faults MAP_SYNC.
 * - private: reads see the file until the page is first written; the first write to a
 *   page takes a COW fault (its private copy) and the page then lives here: later writes
 *   and reads of it never reach the server, no invalidation discards it, msync ignores it.
 * - writable false: write() fails with EFAULT and changes nothing.
 *
 * Errors: a page at or past end of file fails the access with SigbusError
 * (OUT_OF_RANGE / SIGBUS); an access whose page keeps being invalidated fails with
 * PTE_STALE after MAPPING_STALE_RETRIES_MAX re-faults; session or server failures are
 * DaxClientError as for every call. A read or write spanning several pages is not atomic
 * (as a memcpy to a mapping is not): on failure, some of its pages may be done.
 */
import * as grpc from '@grpc/grpc-js';
import { DaxClientError } from './errors';
import { PAGE_BYTES } from './limits';
import type { MappingCallCounts, MappingRpc } from './mapping-rpc';
import { MappingRounds, PageCall, PageOp } from './mapping-rounds';
import { PageTable } from './page-table';

export interface MmapOptions {
  /** MAP_SHARED: stores reach the file. */
  shared?: boolean;
  /** MAP_PRIVATE: stores go to private copies (COW). */
  private?: boolean;
  /** PROT_WRITE (default false). */
  writable?: boolean;
  /** MAP_SYNC: each WRITE fault commits its allocation before it returns (shared only). */
  sync?: boolean;
  /**
   * Huge pages: READ and WRITE faults ask for a PMD (the 2 MiB-aligned range around the
   * page, one PTE for its 512 pages) and fall back to 4 KiB faults, transparently, when
   * the server says so (a range crossing EOF, not one aligned extent, 4 KiB entries in
   * it, ...). COW faults stay 4 KiB. Default false: 4 KiB faults only.
   */
  huge?: boolean;
}

export interface MappedFileStats extends MappingCallCounts {
  /** Accesses sent back to fault again (PTE_STALE, or PTE dropped by an Invalidate). */
  staleRetries: number;
  /** PTEs dropped because an Invalidate event (or the session's end) named their page. */
  invalidatedPtes: number;
  ptesCached: number;
  privatePages: number;
  /** Huge mappings: PMD faults that gave a PMD PTE, those that fell back, PMD PTEs cached (a part of ptesCached). */
  pmdFaults: number;
  pmdFallbacks: number;
  pmdPtesCached: number;
}

/** The largest page index (2^53 - 1 bytes / page): "to the end of the file" in ranges. */
const LAST_PGOFF = Math.floor(Number.MAX_SAFE_INTEGER / PAGE_BYTES);

function assertByteRange(offset: number, length: number): void {
  for (const [value, what] of [[offset, 'offset'], [length, 'length'], [offset + length, 'offset + length']] as const) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${what} must be a non-negative safe integer, got ${value}`);
  }
}

export class MappedFile {
  readonly isPrivate: boolean;
  readonly writable: boolean;
  readonly sync: boolean;
  readonly huge: boolean;
  readonly table = new PageTable();
  private readonly rounds: MappingRounds;
  private unmapped: Error | null = null;

  constructor(
    readonly rpc: MappingRpc,
    readonly ino: number,
    options: MmapOptions,
    /** Called once at unmap: true when no other mapping of the file is left in the session. */
    private readonly onUnmap: (m: MappedFile) => boolean = () => true,
  ) {
    if (Boolean(options.shared) === Boolean(options.private)) throw new TypeError('mmap needs exactly one of { shared: true } or { private: true }');
    if (!Number.isSafeInteger(ino) || ino < 0) throw new RangeError(`ino must be a non-negative safe integer, got ${ino}`);
    this.isPrivate = Boolean(options.private);
    this.writable = Boolean(options.writable);
    this.sync = Boolean(options.sync) && !this.isPrivate;
    this.huge = Boolean(options.huge);
    this.rounds = new MappingRounds({
      ino, isPrivate: this.isPrivate, sync: this.sync, huge: this.huge, table: this.table, rpc, closedError: () => this.unmapped,
    });
  }

  get sessionId(): string {
    return this.rpc.sessionId;
  }

  get stats(): MappedFileStats {
    return {
      ...this.rpc.counts, staleRetries: this.rounds.staleRetries, invalidatedPtes: this.table.invalidatedPtes,
      ptesCached: this.table.pteCount, privatePages: this.table.privatePageCount,
      pmdFaults: this.rounds.pmdFaults, pmdFallbacks: this.rounds.pmdFallbacks, pmdPtesCached: this.table.pmdCount,
    };
  }

  /** Bytes [offset, offset + length) of the mapping. Every page must lie before EOF (else SIGBUS). */
  async read(offset: number, length: number): Promise<Buffer> {
    assertByteRange(offset, length);
    this.assertMapped();
    // Not zero-filled: the call resolves only once every page op has copied its bytes into
    // its own range of out (the ops tile [0, length)); on a failure out is never returned.
    const out = Buffer.allocUnsafe(length);
    await this.run(offset, length, (call, pgoff, inPage, n, at) => new PageOp(call, pgoff, inPage, n, null, out, at));
    return out;
  }

  /** Stores `data` at `offset` (a writable mapping; every page before EOF, else SIGBUS). */
  async write(offset: number, data: Uint8Array): Promise<void> {
    assertByteRange(offset, data.length);
    this.assertMapped();
    if (!this.writable) throw new DaxClientError(grpc.status.PERMISSION_DENIED, 'EFAULT', `store to a read-only mapping of inode ${this.ino}`);
    await this.run(offset, data.length, (call, pgoff, inPage, n, at) => new PageOp(call, pgoff, inPage, n, data.subarray(at, at + n), null, 0));
  }

  /**
   * Writes back the dirty pages of [offset, offset + length) (default: the whole file) and
   * commits: durable on return. Writeback takes the writable PTEs away (S5), so they are
   * dropped here; the next write faults again. A private mapping has nothing to write back.
   */
  async msync(offset = 0, length?: number): Promise<void> {
    this.assertMapped();
    if (this.isPrivate) return;
    const [first, last] = this.pages(offset, length);
    await this.rpc.msync(this.ino, first, last);
    this.table.dropWritable(first, last);
  }

  /**
   * Drops the whole mapping: its cached PTEs and private pages, and the session's PTEs on
   * the file server-side (Unmap), unless another mapping of the file is still live in the
   * session: the server keeps one page table per (session, file), so an Unmap would take
   * that mapping's PTEs too; they then go with the last unmap or the session's end.
   * Queued accesses fail; the mapping cannot be used again.
   */
  async unmap(): Promise<void> {
    if (this.unmapped) return;
    this.unmapped = new Error(`the mapping of inode ${this.ino} was unmapped`);
    this.rounds.failQueued(this.unmapped);
    this.table.clear(true);
    if (this.onUnmap(this)) await this.rpc.unmap(this.ino, 0, LAST_PGOFF);
  }

  /** The session got an Invalidate for [first, last] of this file. */
  invalidate(firstPgoff: number, lastPgoff: number): void {
    this.table.invalidate(firstPgoff, lastPgoff);
  }

  /**
   * The session lost events (EventsLost): any PTE may be stale. Drop them all; pages fault
   * in again on next access (the server's token check made every access safe meanwhile).
   */
  eventsLost(): void {
    this.table.invalidate(0, LAST_PGOFF);
  }

  /** The session ended: every PTE is gone server-side (S7). Private pages stay readable. */
  sessionEnded(): void {
    this.table.clear(false);
  }

  private pages(offset: number, length: number | undefined): [number, number] {
    if (length === undefined) {
      assertByteRange(offset, 0);
      return [Math.floor(offset / PAGE_BYTES), LAST_PGOFF];
    }
    assertByteRange(offset, length);
    return [Math.floor(offset / PAGE_BYTES), Math.floor((offset + Math.max(length, 1) - 1) / PAGE_BYTES)];
  }

  private assertMapped(): void {
    if (this.unmapped) throw this.unmapped;
  }

  /** Splits [offset, offset + length) into page ops, runs them in rounds, waits for all. */
  private async run(offset: number, length: number, make: (call: PageCall, pgoff: number, inPage: number, n: number, at: number) => PageOp): Promise<void> {
    if (length === 0) return;
    const call = new PageCall();
    const ops: PageOp[] = [];
    for (let at = 0; at < length;) {
      const pos = offset + at;
      const inPage = pos % PAGE_BYTES;
      const n = Math.min(PAGE_BYTES - inPage, length - at);
      ops.push(make(call, Math.floor(pos / PAGE_BYTES), inPage, n, at));
      at += n;
    }
    this.rounds.submit(ops);
    await call.done;
  }
}
