/**
 * NBD commands as engine calls: each is the same call as its gRPC twin, under the same
 * locks (the engine takes them):
 *
 *   READ          fs.read (Files.Read)              no lock, synchronous copy
 *   WRITE         fs.write(sync = FUA) (Files.Write) inode lock exclusive; an allocating
 *                 write invalidates zero-page PTEs of mappers through the layout hook (S3)
 *   FLUSH         dax.fsync (Files.Fsync)           mapped dirty pages written back, then
 *                 the file's overwritten blocks flushed and the journal committed (S5, S6)
 *   TRIM          fs.fallocate PUNCH_HOLE (Files.Fallocate), keep size
 *   WRITE_ZEROES  fs.fallocate PUNCH_HOLE, or ZERO_RANGE with NO_HOLE (blocks stay
 *                 allocated, unwritten); both break the layout first (S4): a pinned page
 *                 is never freed while pinned, and --nbd-layout-break decides what waits
 *   BLOCK_STATUS  the block map (fs.mapRange), read like READ
 *   CACHE         nothing to do: the data is in the mapped volume already
 *
 * Reads copy (fs.readInto copies the blocks into the reply buffer inside the synchronous
 * read): the socket is handed a copy, never a view of a block that a later punch could
 * free and reuse, so no reference needs to outlive the call.
 *
 * FUA on TRIM and WRITE_ZEROES is a FLUSH after the change (the punch's partial-page
 * zeroes and its journal transaction are then durable).
 */
import type { Dax } from '../dax/dax';
import { BusyError, DaxError, InvalidArgumentError, LimitError, NotFastError, PastEndError, PermissionDeniedError } from '../errors';
import { entryState, STATE_UNWRITTEN, STATE_WRITTEN } from '../fs/block-map';
import type { FileSystem } from '../fs/filesystem';
import type { LayoutBreakOptions } from '../fs/types';
import { NBD_BLOCK_STATUS_BYTES_MAX, NBD_REQUEST_BYTES_MAX } from './limits';
import {
  BASE_ALLOCATION_ID, blockStatusBytes, CHUNK_HEADER_BYTES, NBD_FLAG_CAN_MULTI_CONN, NBD_FLAG_HAS_FLAGS, NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF, NBD_FLAG_SEND_FAST_ZERO, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES, NBD_CMD_BLOCK_STATUS, NBD_CMD_CACHE, NBD_CMD_DISC, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES,
  NBD_REPLY_FLAG_DONE, NBD_STATE_HOLE, NBD_STATE_ZERO, OFFSET_DATA_HEADER_BYTES, OFFSET_HOLE_BYTES, SIMPLE_REPLY_BYTES, writeBlockStatus,
  writeNoneDone, writeOffsetDataHeader, writeOffsetHole, writeSimpleReply, type Request,
} from './wire-format';
import type { QuotaLedger } from '../auth/quota';
import type { Principal } from '../auth/principal';

const PAGE = 4096;

/** What one connection's commands run against. */
export interface CommandTarget {
  fs: FileSystem;
  dax: Dax;
  ino: number;
  /** The export size the client was told (fixed for the connection). */
  exportBytes: number;
  structured: boolean;
  blockStatus: boolean;
  /** The principal may not write (role ro): the export went out NBD_FLAG_READ_ONLY, and changes are NBD_EPERM. */
  readOnly: boolean;
  /** Runs a change that may allocate pages [first, last] within the principal's allocated-bytes quota (EDQUOT: nothing done). */
  allocating<T>(first: number, last: number, change: () => Promise<T>): Promise<T>;
  /** A cluster node (server/cluster): throws FencedError while changes must be refused. */
  fence?: () => void;
  /** A cluster node: a drain's switch of the file (server/cluster/drain-gate.ts): undefined to go on now, else a promise to wait for; throws NotOwnerError once the file moved. */
  gate?: (ino: number) => Promise<void> | undefined;
}

/** How a connection's allocating commands run: within its principal's allocated-bytes quota (server/auth/quota.ts). */
export function allocatingAs(quota: QuotaLedger | undefined, principal: Principal | null, ino: number): CommandTarget['allocating'] {
  if (quota === undefined || principal === null || principal.quotas.allocatedBytes === undefined) return (_first, _last, change) => change();
  return (first, last, change) => quota.withAllocation(principal, ino, first, last, change);
}

/** The pages [first, last] of the byte range [offset, offset + length), length > 0. */
function pagesOf(offset: number, length: number): [number, number] {
  return [Math.floor(offset / PAGE), Math.floor((offset + length - 1) / PAGE)];
}

/**
 * CAN_MULTI_CONN holds: no connection has a cache of its own. Every connection calls the
 * one engine of the process; a write is in the mapped volume when it is answered, so any
 * connection reads it, and FLUSH is the file's fsync, which flushes every block of the
 * file written since the last flush whoever wrote it, then commits the journal.
 * READ_ONLY: the connection's principal may not write (checkRequest then answers EPERM).
 */
export function transmissionFlags(structured: boolean, readOnly: boolean): number {
  return (readOnly ? NBD_FLAG_READ_ONLY : 0) | NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES
    | NBD_FLAG_SEND_FAST_ZERO | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE | (structured ? NBD_FLAG_SEND_DF : 0);
}

/** Flags each command accepts (FUA is valid on every command once SEND_FUA is advertised). */
const FLAGS_ALLOWED: Record<number, number> = {
  [NBD_CMD_READ]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF,
  [NBD_CMD_WRITE]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_DISC]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_FLUSH]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_TRIM]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_CACHE]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_WRITE_ZEROES]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO,
  [NBD_CMD_BLOCK_STATUS]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE,
};

/**
 * The request's problem before any engine call, or null. Order: command, flags, length
 * limit, range (so a huge out-of-range WRITE gets EINVAL for its length, as its payload
 * is refused whole; a change to a read-only export is EPERM before its range is looked at). Spec answers: unknown command or flag EINVAL; past the end ENOSPC for
 * WRITE / WRITE_ZEROES and EINVAL otherwise; READ/WRITE over the payload limit EINVAL.
 */
export function checkRequest(req: Request, t: CommandTarget): DaxError | null {
  const allowed = FLAGS_ALLOWED[req.type];
  if (allowed === undefined) return new InvalidArgumentError(`unknown NBD command ${req.type}`);
  if ((req.flags & ~allowed) !== 0) return new InvalidArgumentError(`flags 0x${req.flags.toString(16)} not valid for this command (allowed 0x${allowed.toString(16)})`);
  if ((req.flags & NBD_CMD_FLAG_DF) !== 0 && !t.structured) return new InvalidArgumentError('NBD_CMD_FLAG_DF needs structured replies');
  if (t.readOnly && (req.type === NBD_CMD_WRITE || req.type === NBD_CMD_TRIM || req.type === NBD_CMD_WRITE_ZEROES)) {
    return new PermissionDeniedError('the export is read-only for this principal (role ro): nothing was changed');
  }
  if (t.fence !== undefined && (req.type === NBD_CMD_WRITE || req.type === NBD_CMD_TRIM || req.type === NBD_CMD_WRITE_ZEROES)) {
    try {
      t.fence();
    } catch (err) {
      if (err instanceof DaxError) return err; // FENCED: NBD_EIO, the reason in a structured reply's message
      throw err;
    }
  }
  switch (req.type) {
    case NBD_CMD_DISC:
      return null;
    case NBD_CMD_FLUSH:
      return req.offset !== 0 || req.length !== 0 ? new InvalidArgumentError(`FLUSH needs offset and length 0 (got ${req.offset}, ${req.length})`) : null;
    case NBD_CMD_READ:
    case NBD_CMD_WRITE:
      if (req.length > NBD_REQUEST_BYTES_MAX) return new LimitError('NBD_REQUEST_BYTES_MAX', req.length, NBD_REQUEST_BYTES_MAX);
      break;
    case NBD_CMD_BLOCK_STATUS:
      if (!t.blockStatus) return new InvalidArgumentError('BLOCK_STATUS needs base:allocation selected (NBD_OPT_SET_META_CONTEXT) for this export');
      if (req.length === 0) return new InvalidArgumentError('BLOCK_STATUS of length 0');
      break;
  }
  if (req.offset + req.length > t.exportBytes) {
    const what = `[${req.offset}, ${req.offset + req.length}) is past the end of the export (${t.exportBytes} bytes)`;
    return req.type === NBD_CMD_WRITE || req.type === NBD_CMD_WRITE_ZEROES ? new PastEndError(what) : new InvalidArgumentError(what);
  }
  return null;
}

/**
 * Where READ and BLOCK_STATUS write their reply: alloc(n) reserves n bytes at buf[returned
 * offset]; buf may change with each alloc, so read it after the alloc.
 */
export interface ReplySink {
  alloc(n: number): number;
  readonly buf: Buffer;
}

/**
 * `change` of the export's file once a drain's switch of it lets changes go (checked
 * synchronously right before the change asks for the inode lock: drain-gate.ts's
 * invariant); a file moved away throws NOT_OWNER (NBD_EIO, the reason in the message), so
 * a write never lands in a source copy that is about to be removed.
 */
function gated<T>(t: CommandTarget, change: () => Promise<T>): Promise<T> {
  const wait = t.gate?.(t.ino);
  return wait === undefined ? change() : wait.then(() => gated(t, change));
}

/**
 * Runs a checked request without a reply payload (WRITE with its `data`, FLUSH, TRIM,
 * WRITE_ZEROES, CACHE); the caller answers success or the error it throws.
 */
export async function runCommand(req: Request, t: CommandTarget, data: Buffer | null, layoutBreak: () => LayoutBreakOptions): Promise<void> {
  const fua = (req.flags & NBD_CMD_FLAG_FUA) !== 0;
  switch (req.type) {
    case NBD_CMD_WRITE:
      if (req.length > 0) await t.allocating(...pagesOf(req.offset, req.length), () => gated(t, () => t.fs.write(t.ino, req.offset, data as Buffer, fua)));
      break;
    case NBD_CMD_FLUSH:
      await t.dax.fsync(t.ino, false);
      break;
    case NBD_CMD_TRIM:
    case NBD_CMD_WRITE_ZEROES: {
      if (req.length === 0) break;
      const mode = req.type === NBD_CMD_WRITE_ZEROES && (req.flags & NBD_CMD_FLAG_NO_HOLE) !== 0 ? 'ZERO_RANGE' : 'PUNCH_HOLE';
      // Both modes are metadata changes, faster than writing zeroes, unless a pinned page is
      // in the way: then the layout break would wait (or fail). FAST_ZERO must fail quickly
      // with ENOTSUP instead (the spec), so it breaks the layout with FAIL and turns EBUSY
      // into ENOTSUP; the file is unchanged, and the client falls back to writing zeroes.
      if (req.type === NBD_CMD_WRITE_ZEROES && (req.flags & NBD_CMD_FLAG_FAST_ZERO) !== 0) {
        try {
          const zeroing = () => gated(t, () => t.fs.fallocate(t.ino, mode, req.offset, req.length, { ...layoutBreak(), policy: 'FAIL' }));
          // PUNCH_HOLE frees; ZERO_RANGE (NO_HOLE) may allocate unwritten blocks for holes.
          await (mode === 'ZERO_RANGE' ? t.allocating(...pagesOf(req.offset, req.length), zeroing) : zeroing());
        } catch (err) {
          if (err instanceof BusyError) throw new NotFastError(`FAST_ZERO: a pinned page in the range would make zeroing wait (${err.message})`);
          throw err;
        }
      } else {
        const zeroing = () => gated(t, () => t.fs.fallocate(t.ino, mode, req.offset, req.length, layoutBreak()));
        await (mode === 'ZERO_RANGE' ? t.allocating(...pagesOf(req.offset, req.length), zeroing) : zeroing());
      }
      if (fua) await t.dax.fsync(t.ino, false);
      break;
    }
    case NBD_CMD_CACHE:
      t.fs.stat(t.ino);
      break;
  }
}

/**
 * READ, synchronously, straight into the reply buffer (fs.readInto: one copy from the
 * blocks). With structured replies, written runs are OFFSET_DATA chunks and holes and
 * unwritten runs OFFSET_HOLE chunks; with DF (or simple replies) one data reply. The map
 * and the copies run in one synchronous stretch: nothing changes the file in between.
 * Past the file's current end (it shrank since the export was opened) reads as zeros.
 * Throws before or after reserving reply bytes: the caller rolls the sink back.
 */
export function readReply(req: Request, t: CommandTarget, sink: ReplySink): void {
  const { offset, length } = req;
  if (length === 0) {
    const at = sink.alloc(t.structured ? CHUNK_HEADER_BYTES : SIMPLE_REPLY_BYTES);
    if (t.structured) writeNoneDone(sink.buf, at, req);
    else writeSimpleReply(sink.buf, at, req, 0);
    return;
  }
  if (!t.structured) {
    const at = sink.alloc(SIMPLE_REPLY_BYTES + length);
    writeSimpleReply(sink.buf, at, req, 0);
    readAll(t, offset, length, sink.buf, at + SIMPLE_REPLY_BYTES);
    return;
  }
  const first = Math.floor(offset / PAGE);
  const pages = Math.floor((offset + length - 1) / PAGE) - first + 1;
  // DF, or nothing but data: one data chunk (DF has the zeros explicit, as the spec asks).
  const entries = (req.flags & NBD_CMD_FLAG_DF) !== 0 ? null : t.fs.mapRange(t.ino, first, pages);
  if (entries === null || allWritten(entries)) {
    const at = sink.alloc(OFFSET_DATA_HEADER_BYTES + length);
    writeOffsetDataHeader(sink.buf, at, req, NBD_REPLY_FLAG_DONE, offset, length);
    readAll(t, offset, length, sink.buf, at + OFFSET_DATA_HEADER_BYTES);
    return;
  }
  const end = offset + length;
  for (let i = 0; i < entries.length;) {
    const written = entryState(entries[i]) === STATE_WRITTEN;
    let n = 1;
    while (i + n < entries.length && (entryState(entries[i + n]) === STATE_WRITTEN) === written) n++;
    const from = Math.max(offset, (first + i) * PAGE);
    const to = Math.min(end, (first + i + n) * PAGE);
    const flags = to === end ? NBD_REPLY_FLAG_DONE : 0;
    if (written) {
      const at = sink.alloc(OFFSET_DATA_HEADER_BYTES + to - from);
      writeOffsetDataHeader(sink.buf, at, req, flags, from, to - from);
      readAll(t, from, to - from, sink.buf, at + OFFSET_DATA_HEADER_BYTES);
    } else {
      const at = sink.alloc(OFFSET_HOLE_BYTES);
      writeOffsetHole(sink.buf, at, req, flags, from, to - from);
    }
    i += n;
  }
}

function allWritten(entries: Uint32Array): boolean {
  for (let i = 0; i < entries.length; i++) if (entryState(entries[i]) !== STATE_WRITTEN) return false;
  return true;
}

/** length bytes at offset into b[at ..]; what lies past the file's end is zeros. */
function readAll(t: CommandTarget, offset: number, length: number, b: Buffer, at: number): void {
  const n = t.fs.readInto(t.ino, offset, length, b, at);
  if (n < length) b.fill(0, at + n, at + length);
}

/** base:allocation of [offset, offset + length) clamped to NBD_BLOCK_STATUS_BYTES_MAX, page by page, equal runs merged. */
export function blockStatusReply(req: Request, t: CommandTarget, sink: ReplySink): void {
  const { offset } = req;
  const end = offset + Math.min(req.length, NBD_BLOCK_STATUS_BYTES_MAX);
  const first = Math.floor(offset / PAGE);
  const entries = t.fs.mapRange(t.ino, first, Math.floor((end - 1) / PAGE) - first + 1);
  const extents: number[] = []; // length, flags, length, flags, ...
  for (let i = 0; i < entries.length; i++) {
    const s = entryState(entries[i]);
    const flags = s === STATE_WRITTEN ? 0 : s === STATE_UNWRITTEN ? NBD_STATE_ZERO : NBD_STATE_HOLE | NBD_STATE_ZERO;
    const bytes = Math.min(end, (first + i + 1) * PAGE) - Math.max(offset, (first + i) * PAGE);
    const n = extents.length;
    if (n > 0 && extents[n - 1] === flags) extents[n - 2] += bytes;
    else {
      if ((req.flags & NBD_CMD_FLAG_REQ_ONE) !== 0 && n > 0) break;
      extents.push(bytes, flags);
    }
  }
  const at = sink.alloc(blockStatusBytes(extents.length / 2));
  writeBlockStatus(sink.buf, at, req, BASE_ALLOCATION_ID, extents);
}
