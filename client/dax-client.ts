/**
 * DaxClient: the typed, promise-based SDK of daxd.
 *
 *   const client = DaxClient.connect('127.0.0.1:7070');
 *   const file = await client.create('hello.txt');
 *   await client.write(file.ino, 0, Buffer.from('hello'));
 *   const data = await client.read(file.ino, 0, 5);
 *   client.close();
 *
 * Reads and writes of any size go through the pipelined op streams (op-pipeline.ts) in
 * chunks of CHUNK_BYTES; concurrent small ones share messages. Every other call is unary,
 * with a deadline, and retried on UNAVAILABLE only when it is idempotent. Failures are
 * DaxClientError with `code` (gRPC status) and `reason` (daxd's, e.g. 'ENOENT').
 */
import { setTimeout as delay } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import type { _daxd_v1_FallocateRequest_Mode__Output as FallocateRequest_Mode } from './generated/daxd/v1/FallocateRequest';
import type { FilesClient } from './generated/daxd/v1/Files';
import type { ListRequest } from './generated/daxd/v1/ListRequest';
import type { ListResponse__Output } from './generated/daxd/v1/ListResponse';
import type { FileInfo__Output } from './generated/daxd/v1/FileInfo';
import type { ReadOp } from './generated/daxd/v1/ReadOp';
import type { ReadResult__Output } from './generated/daxd/v1/ReadResult';
import type { ReadStreamRequest } from './generated/daxd/v1/ReadStreamRequest';
import type { ReadStreamResponse__Output } from './generated/daxd/v1/ReadStreamResponse';
import type { VolumeInfo__Output } from './generated/daxd/v1/VolumeInfo';
import type { WriteOp } from './generated/daxd/v1/WriteOp';
import type { WriteResult__Output } from './generated/daxd/v1/WriteResult';
import type { WriteStreamRequest } from './generated/daxd/v1/WriteStreamRequest';
import type { WriteStreamResponse__Output } from './generated/daxd/v1/WriteStreamResponse';
import { isUnavailable } from './errors';
import {
  CHUNK_BYTES, DEFAULT_DEADLINE_MS, FLOW_CONTROL_WINDOW_BYTES, MESSAGE_MAX_BYTES, RETRIES_MAX, RETRY_BACKOFF_MS,
} from './limits';
import { OpPipeline } from './op-pipeline';
import { loadDaxdProto } from './proto';
import { RawClients } from './raw-clients';
import type { MappedFile, MmapOptions } from './mapped-file';
import { DmaPin, type PinOptions } from './dma-pin';
import { DaxSession, type OpenSessionOptions } from './session';
import { callUnary, type UnaryMethod } from './unary-call';

export interface DaxClientOptions {
  /** Deadline of each call (and each op of a read or write), ms. */
  deadlineMs?: number;
  /** Attempts of idempotent calls after UNAVAILABLE. */
  retries?: number;
  /** Extra grpc-js channel options (they win over the SDK's). */
  channelOptions?: grpc.ChannelOptions;
}

export interface FileInfo {
  ino: number;
  name: string;
  size: number;
  blocks: number;
  generation: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface VolumeInfo {
  blockSize: number;
  blocksTotal: number;
  blocksFree: number;
  /** Freed by transactions not committed yet: free after the next commit. */
  blocksPendingFree: number;
  blocksUsed: number;
  files: number;
  maxFiles: number;
  maxFileSize: number;
  uuid: string;
  formatVersion: number;
  journalBlocks: number;
  size: number;
  maxIoBytes: number;
  maxMessageBytes: number;
}

/** The proto's FallocateRequest.Mode names (the wire spelling), less the unset value. */
export type FallocateMode = Exclude<FallocateRequest_Mode, 'MODE_UNSPECIFIED'>;
export type LayoutBreak = 'WAIT' | 'FAIL' | 'RECALL';

export interface WriteOutcome {
  written: number;
  /** File size after the write. */
  size: number;
}

/** Channel options the SDK sets: explicit message limits and a large flow-control window. */
export const CLIENT_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': MESSAGE_MAX_BYTES,
  'grpc.max_send_message_length': MESSAGE_MAX_BYTES,
  'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW_BYTES,
};

function fileInfo(w: FileInfo__Output): FileInfo {
  return {
    ino: Number(w.ino), name: w.name, size: Number(w.size), blocks: Number(w.blocks), generation: Number(w.generation),
    mtimeMs: Number(w.mtime_ms), ctimeMs: Number(w.ctime_ms),
  };
}

function volumeInfo(w: VolumeInfo__Output): VolumeInfo {
  return {
    blockSize: Number(w.block_size), blocksTotal: Number(w.blocks_total), blocksFree: Number(w.blocks_free),
    blocksUsed: Number(w.blocks_used), files: Number(w.files), maxFiles: Number(w.max_files),
    maxFileSize: Number(w.max_file_size), uuid: w.uuid, formatVersion: w.format_version,
    journalBlocks: Number(w.journal_blocks), size: Number(w.size), maxIoBytes: Number(w.max_io_bytes),
    maxMessageBytes: Number(w.max_message_bytes), blocksPendingFree: Number(w.blocks_pending_free),
  };
}

export class DaxClient {
  /** The generated stubs, for calls the SDK does not wrap (tests, benchmarks). */
  readonly raw: RawClients;
  private readonly deadlineMs: number;
  private readonly retries: number;
  private readonly sessions = new Set<DaxSession>();
  /** The session of mmap() calls that name none, opened on first use. */
  private defaultSession: Promise<DaxSession> | null = null;
  private readonly reads: OpPipeline<ReadOp, ReadStreamRequest, ReadStreamResponse__Output, ReadResult__Output>;
  private readonly writes: OpPipeline<WriteOp, WriteStreamRequest, WriteStreamResponse__Output, WriteResult__Output>;

  private constructor(readonly address: string, options: DaxClientOptions) {
    this.deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
    this.retries = options.retries ?? RETRIES_MAX;
    this.raw = new RawClients(loadDaxdProto(), address, { ...CLIENT_CHANNEL_OPTIONS, ...options.channelOptions });
    const files: FilesClient = this.raw.files;
    this.reads = new OpPipeline<ReadOp, ReadStreamRequest, ReadStreamResponse__Output, ReadResult__Output>({
      open: () => files.ReadStream(),
      request: (ops) => ({ ops }),
      results: (response) => response.results,
    });
    this.writes = new OpPipeline<WriteOp, WriteStreamRequest, WriteStreamResponse__Output, WriteResult__Output>({
      open: () => files.WriteStream(),
      request: (ops) => ({ ops }),
      results: (response) => response.results,
    });
  }

  /** A client for host:port. Connecting is lazy; see ready(). */
  static connect(address: string, options: DaxClientOptions = {}): DaxClient {
    return new DaxClient(address, options);
  }

  /** Resolves once the channel is connected (or rejects after deadlineMs). */
  ready(deadlineMs = this.deadlineMs): Promise<void> {
    return new Promise((resolve, reject) => {
      this.raw.files.waitForReady(new Date(Date.now() + deadlineMs), (err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * Fail what is in flight, stop the keep-alive and Events stream of every session opened
   * here (the server ends them when their leases run out), and close the channel.
   */
  close(): void {
    for (const session of this.sessions) session.abandon();
    this.sessions.clear();
    this.reads.close();
    this.writes.close();
    this.raw.close();
  }

  // ---- namespace ---------------------------------------------------------------

  async create(name: string, options: { exclusive?: boolean } = {}): Promise<FileInfo> {
    const exclusive = options.exclusive ?? false;
    // Non-exclusive create is idempotent (it returns the existing file).
    return fileInfo(await this.unary(this.raw.files.Create, { name, exclusive }, !exclusive));
  }

  async lookup(name: string): Promise<FileInfo> {
    return fileInfo(await this.unary(this.raw.files.Lookup, { name }, true));
  }

  async stat(ino: number): Promise<FileInfo> {
    return fileInfo(await this.unary(this.raw.files.Stat, { ino }, true));
  }

  async list(options: { prefix?: string; pageToken?: string; pageSize?: number } = {}): Promise<{ files: FileInfo[]; nextPageToken: string }> {
    const request = { prefix: options.prefix ?? '', page_token: options.pageToken ?? '', page_size: options.pageSize ?? 0 };
    const page = await this.unary<ListRequest, ListResponse__Output>(this.raw.files.List, request, true);
    return { files: page.files.map(fileInfo), nextPageToken: page.next_page_token };
  }

  /** Every file whose name starts with prefix, page by page. */
  async *listAll(prefix = ''): AsyncGenerator<FileInfo> {
    let pageToken = '';
    do {
      const page = await this.list({ prefix, pageToken });
      yield* page.files;
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
  }

  async unlink(name: string): Promise<void> {
    await this.unary(this.raw.files.Unlink, { name }, false);
  }

  // ---- data --------------------------------------------------------------------

  /** Read up to `length` bytes at `offset`: short at end of file, zeros in holes. Any size. */
  async read(ino: number, offset: number, length: number): Promise<Buffer> {
    assertSafe(offset, 'offset');
    assertSafe(length, 'length');
    if (length <= CHUNK_BYTES) return this.readOp(ino, offset, length);
    const chunks: Promise<Buffer>[] = [];
    for (let at = 0; at < length; at += CHUNK_BYTES) chunks.push(this.readOp(ino, offset + at, Math.min(CHUNK_BYTES, length - at)));
    const parts = await Promise.all(chunks);
    // A short chunk is the end of the file: nothing after it counts.
    const short = parts.findIndex((p, i) => p.length < Math.min(CHUNK_BYTES, length - i * CHUNK_BYTES));
    return Buffer.concat(short < 0 ? parts : parts.slice(0, short + 1));
  }

  /**
   * Write `data` at `offset`, any size. Larger than CHUNK_BYTES: chunks written
   * concurrently, so a failure can leave some of them written (as a short write(2)).
   * sync = O_DSYNC for every chunk.
   */
  async write(ino: number, offset: number, data: Uint8Array, options: { sync?: boolean } = {}): Promise<WriteOutcome> {
    assertSafe(offset, 'offset');
    const sync = options.sync ?? false;
    if (data.length <= CHUNK_BYTES) return this.writeOp(ino, offset, data, sync);
    const chunks: Promise<WriteOutcome>[] = [];
    for (let at = 0; at < data.length; at += CHUNK_BYTES) {
      chunks.push(this.writeOp(ino, offset + at, data.subarray(at, Math.min(data.length, at + CHUNK_BYTES)), sync));
    }
    const outcomes = await Promise.all(chunks);
    return { written: data.length, size: Math.max(...outcomes.map((o) => o.size)) };
  }

  async fsync(ino: number, options: { datasync?: boolean } = {}): Promise<void> {
    await this.unary(this.raw.files.Fsync, { ino, datasync: options.datasync ?? false }, true);
  }

  async truncate(ino: number, size: number, options: { layoutBreak?: LayoutBreak } = {}): Promise<void> {
    await this.unary(this.raw.files.Truncate, { ino, size, layout_break: options.layoutBreak ?? 'WAIT' }, false);
  }

  async fallocate(ino: number, mode: FallocateMode, offset: number, length: number, options: { layoutBreak?: LayoutBreak } = {}): Promise<void> {
    await this.unary(this.raw.files.Fallocate, { ino, mode, offset, length, layout_break: options.layoutBreak ?? 'WAIT' }, false);
  }

  async statVolume(): Promise<VolumeInfo> {
    return volumeInfo(await this.unary(this.raw.files.StatVolume, {}, true));
  }

  // ---- sessions ----------------------------------------------------------------

  /** Open a session (keep-alive runs by itself until it is closed). */
  async openSession(options: OpenSessionOptions = {}): Promise<DaxSession> {
    const session = await DaxSession.open(this.raw, options, { deadlineMs: this.deadlineMs, retries: this.retries });
    this.sessions.add(session);
    for (const end of ['closed', 'expired', 'ended'] as const) session.once(end, () => this.sessions.delete(session));
    return session;
  }

  /**
   * Map file `ino` (see MappedFile): into `options.session`, or into this client's default
   * session (opened on first use, kept alive until close(); it then expires with its lease).
   */
  async mmap(ino: number, options: MmapOptions & { session?: DaxSession }): Promise<MappedFile> {
    assertSafe(ino, 'ino');
    const session = options.session ?? (await this.sessionForMmap());
    return session.mmap(ino, options);
  }

  /**
   * Pin pages [firstPgoff, firstPgoff + npages) of file `ino` for DMA (see DmaPin): in
   * `options.session`, or in the session mmap() uses by default (so a pin and a mapping
   * of the same pages share a session, as in one process).
   */
  async pin(ino: number, firstPgoff: number, npages: number, options: PinOptions & { session?: DaxSession } = {}): Promise<DmaPin> {
    const session = options.session ?? (await this.sessionForMmap());
    return DmaPin.pin(this.raw.dma, session, ino, firstPgoff, npages, options, { deadlineMs: this.deadlineMs, retries: this.retries });
  }

  private sessionForMmap(): Promise<DaxSession> {
    if (this.defaultSession === null) {
      const opening = this.openSession({ clientName: 'mmap' });
      this.defaultSession = opening;
      // A session that failed to open, or ended, is replaced on the next mmap.
      opening.then(
        (s) => { for (const end of ['closed', 'expired', 'ended'] as const) s.once(end, () => { if (this.defaultSession === opening) this.defaultSession = null; }); },
        () => { if (this.defaultSession === opening) this.defaultSession = null; },
      );
    }
    return this.defaultSession;
  }

  // ---- internals ---------------------------------------------------------------

  private async readOp(ino: number, offset: number, length: number): Promise<Buffer> {
    for (let attempt = 0; ; attempt++) {
      try {
        const result = await this.reads.submit((id) => ({ id, ino, offset, length }), length, this.deadlineMs);
        return result.data;
      } catch (err) {
        // Reads are idempotent: one that died with its stream is sent again, after a backoff.
        if (!isUnavailable(err) || attempt >= this.retries) throw err;
        await delay(RETRY_BACKOFF_MS * 2 ** attempt);
      }
    }
  }

  private async writeOp(ino: number, offset: number, data: Uint8Array, sync: boolean): Promise<WriteOutcome> {
    const result = await this.writes.submit((id) => ({ id, ino, offset, data, sync }), data.length, this.deadlineMs);
    return { written: Number(result.written), size: Number(result.size) };
  }

  private unary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, idempotent: boolean): Promise<Res> {
    return callUnary(method.bind(this.raw.files) as UnaryMethod<Req, Res>, request, {
      deadlineMs: this.deadlineMs, idempotent, retries: this.retries, backoffMs: RETRY_BACKOFF_MS,
    });
  }
}

function assertSafe(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${what} must be a non-negative safe integer, got ${value}`);
}
