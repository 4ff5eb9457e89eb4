/**
 * The Files service: namespace and read(2)/write(2)-like calls on the engine, plus the
 * pipelined ReadStream/WriteStream (files-streams.ts).
 *
 * Each handler validates its request completely (validate.ts) before the engine sees it,
 * and answers with the engine's coded errors mapped by status.ts.
 *
 * layout_break (Truncate, Fallocate) goes to the dax layer's layout break (S4) with the
 * call's deadline and cancellation.
 */
import type { Logger } from 'pino';
import type * as grpc from '@grpc/grpc-js';
import { CancelledError, DaxError, InvalidArgumentError, TimedOutError } from '../errors';
import type { FallocateMode, FileInfo, LayoutBreakOptions, VolumeInfo } from '../fs/types';
import type { PrincipalFs } from '../auth/principal-fs';
import type { FileInfo as WireFileInfo } from '../../wire/generated/daxd/v1/FileInfo';
import type { _daxd_v1_FallocateRequest_Mode__Output as WireFallocateMode } from '../../wire/generated/daxd/v1/FallocateRequest';
import type { FilesHandlers } from '../../wire/generated/daxd/v1/Files';
import type { VolumeInfo as WireVolumeInfo } from '../../wire/generated/daxd/v1/VolumeInfo';
import { DEADLINE_CANCEL_SLACK_MS, LIST_PAGE_ENTRIES_DEFAULT, LIST_PAGE_ENTRIES_MAX, MESSAGE_BYTES_MAX, PAGE_TOKEN_BYTES_MAX, RPC_IO_BYTES_MAX } from './limits';
import { readStreamHandler, writeStreamHandler, type OpStreamRegistry } from './files-streams';
import type { Metrics } from '../metrics';
import { requestIdOf } from './instrument';
import { unary } from './unary';
import { withHeadroom } from '../../wire/bulk-codec';
import * as v from './validate';

const LAYOUT_BREAKS = ['WAIT', 'FAIL', 'RECALL'] as const;

/** The engine's fallocate modes travel by name: the two lists must be the same (compile time). */
const FALLOCATE_MODES_ARE_WIRE_NAMES: v.SameNames<FallocateMode, Exclude<WireFallocateMode, 'MODE_UNSPECIFIED'>> = true;
void FALLOCATE_MODES_ARE_WIRE_NAMES;

export function fileInfoToWire(info: FileInfo): WireFileInfo {
  return {
    ino: info.ino, name: info.name, size: info.sizeBytes, blocks: info.blocks, generation: info.generation,
    mtime_ms: info.mtimeMs, ctime_ms: info.ctimeMs,
  };
}

function volumeInfoToWire(info: VolumeInfo): WireVolumeInfo {
  return {
    block_size: info.blockSize, blocks_total: info.blocksTotal, blocks_free: info.blocksFree, blocks_used: info.blocksUsed,
    blocks_pending_free: info.blocksPendingFree,
    files: info.files, max_files: info.maxFiles, max_file_size: info.maxFileSizeBytes, uuid: info.uuid,
    format_version: info.formatVersion, journal_blocks: info.journalBlocks, size: info.sizeBytes,
    max_io_bytes: RPC_IO_BYTES_MAX, max_message_bytes: MESSAGE_BYTES_MAX,
  };
}

/** The file system as the call's principal may use it (server/auth/principal-fs.ts). */
export type FsOfCall = (call: object) => PrincipalFs;

/**
 * `fsOf` gives each call the file system as its principal may use it (names and inodes
 * checked against its prefix, quotas). `fsync` is the dax layer's, which first writes
 * back pages dirtied through mappings (S5); the inode is checked before it runs.
 */
export function filesHandlers(
  fsOf: FsOfCall, log: Logger, streams: OpStreamRegistry,
  fsync: (ino: number, datasync: boolean) => Promise<void>,
  metrics?: Metrics,
): FilesHandlers {
  return {
    Create: unary(log, 'Files.Create', async (req, call) => fileInfoToWire(await fsOf(call).create(v.fileName(req.name), req.exclusive))),

    Lookup: unary(log, 'Files.Lookup', (req, call) => fileInfoToWire(fsOf(call).lookup(v.fileName(req.name)))),

    Stat: unary(log, 'Files.Stat', (req, call) => fileInfoToWire(fsOf(call).stat(v.ino(req.ino)))),

    List: unary(log, 'Files.List', (req, call) => {
      const prefix = v.namePrefix(req.prefix);
      const pageSize = req.page_size === 0 ? LIST_PAGE_ENTRIES_DEFAULT : Math.min(req.page_size, LIST_PAGE_ENTRIES_MAX);
      const page = fsOf(call).list(prefix, pageTokenOf(req.page_token), pageSize);
      return { files: page.files.map(fileInfoToWire), next_page_token: page.nextPageToken };
    }),

    Unlink: unary(log, 'Files.Unlink', async (req, call) => {
      await fsOf(call).unlink(v.fileName(req.name));
      return {};
    }),

    Read: unary(log, 'Files.Read', async (req, call) => {
      const { ino, offset, length } = v.readArgs(req.ino, req.offset, req.length);
      // Read straight into the reply's buffer: its encoder writes the header in front (one copy).
      return { data: await fsOf(call).read(ino, offset, length, withHeadroom) };
    }),

    Write: unary(log, 'Files.Write', async (req, call) => {
      const { ino, offset } = v.writeArgs(req.ino, req.offset, req.data);
      const result = await fsOf(call).write(ino, offset, req.data, req.sync);
      return { written: result.written, size: result.sizeBytes };
    }),

    Fsync: unary(log, 'Files.Fsync', async (req, call) => {
      await fsync(fsOf(call).ino(v.ino(req.ino)), req.datasync);
      return {};
    }),

    Truncate: unary(log, 'Files.Truncate', async (req, call) => {
      const ino = v.ino(req.ino);
      const size = v.u64(req.size, 'size');
      v.fileEnd(size, 0);
      await fsOf(call).truncate(ino, size, layoutBreakOf(req.layout_break, call));
      return {};
    }),

    Fallocate: unary(log, 'Files.Fallocate', async (req, call) => {
      const ino = v.ino(req.ino);
      const { mode, offset, length } = v.fallocateRequest(v.fallocateMode(req.mode), req.offset, req.length);
      await fsOf(call).fallocate(ino, mode, offset, length, layoutBreakOf(req.layout_break, call));
      return {};
    }),

    StatVolume: unary(log, 'Files.StatVolume', (_req, call) => volumeInfoToWire(fsOf(call).statVolume())),

    ReadStream: readStreamHandler(fsOf, log, streams, metrics),
    WriteStream: writeStreamHandler(fsOf, log, streams, metrics),
  };
}

/**
 * layout_break plus an AbortSignal that fires at the call's deadline (ETIMEDOUT) or when
 * the client cancels (ECANCELED): a layout change waiting for pins then gives up with the
 * file unchanged and every lock released (S4).
 */
export function layoutBreakOf(value: string | number, call: grpc.ServerUnaryCall<unknown, unknown>): LayoutBreakOptions {
  const policy = v.enumValue(value, LAYOUT_BREAKS, 'layout_break');
  const controller = new AbortController();
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = () => new TimedOutError('the deadline passed while waiting for pinned pages to be unpinned; nothing was changed');
  if (Number.isFinite(deadlineMs)) {
    timer = setTimeout(() => controller.abort(timedOut()), Math.max(0, deadlineMs - Date.now()));
    timer.unref();
  }
  // grpc-js also cancels the call at its deadline, racing the timer above, and so does the
  // client at its own (slightly earlier) copy of it: both are timeouts.
  call.once('cancelled', () => controller.abort(Date.now() >= deadlineMs - DEADLINE_CANCEL_SLACK_MS ? timedOut() : new CancelledError('the call was cancelled while waiting for pinned pages; nothing was changed')));
  call.once('finish', () => clearTimeout(timer));
  return { policy, signal: controller.signal, requestId: requestIdOf(call) };
}

/**
 * A List continuation token must be one this server handed out: base64url of a name, so
 * at most PAGE_TOKEN_BYTES_MAX characters (checked first: a 1 MiB token is not decoded).
 * Anything else is EINVAL, whatever is wrong with it (issue 10, defect 6: a 1 MiB token
 * answered ENAMETOOLONG), rather than a confusing page from the engine.
 */
export function pageTokenOf(token: string): string {
  if (token === '') return token;
  const foreign = () => new InvalidArgumentError(`page_token is not a token from a previous List (at most ${PAGE_TOKEN_BYTES_MAX} characters of base64url)`);
  if (token.length > PAGE_TOKEN_BYTES_MAX || !/^[A-Za-z0-9_-]+$/.test(token)) throw foreign();
  const name = Buffer.from(token, 'base64url').toString('utf8');
  if (Buffer.from(name, 'utf8').toString('base64url') !== token) throw foreign();
  try {
    v.fileName(name);
  } catch (err) {
    if (err instanceof DaxError) throw foreign();
    throw err;
  }
  return token;
}
