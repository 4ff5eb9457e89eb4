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
 * chunks of CHUNK_BYTES (or the server's max_io_bytes if smaller: server-limits.ts);
 * concurrent small ones share messages. Every other call is unary,
 * with a deadline, and retried on UNAVAILABLE only when it is idempotent. Failures are
 * DaxClientError with `code` (gRPC status) and `reason` (daxd's, e.g. 'ENOENT').
 */
import { setTimeout as delay } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import type { _daxd_v1_FallocateRequest_Mode__Output as FallocateRequest_Mode } from '../wire/generated/daxd/v1/FallocateRequest';
import type { FilesClient } from '../wire/generated/daxd/v1/Files';
import type { InspectRequest } from '../wire/generated/daxd/v1/InspectRequest';
import type { InspectResponse__Output } from '../wire/generated/daxd/v1/InspectResponse';
import type { ListRequest } from '../wire/generated/daxd/v1/ListRequest';
import type { ListResponse__Output } from '../wire/generated/daxd/v1/ListResponse';
import type { FileInfo__Output } from '../wire/generated/daxd/v1/FileInfo';
import type { ReadOp } from '../wire/generated/daxd/v1/ReadOp';
import type { ReadResult__Output } from '../wire/generated/daxd/v1/ReadResult';
import type { ReadStreamRequest } from '../wire/generated/daxd/v1/ReadStreamRequest';
import type { ReadStreamResponse__Output } from '../wire/generated/daxd/v1/ReadStreamResponse';
import type { VolumeInfo as WireVolumeInfo, VolumeInfo__Output } from '../wire/generated/daxd/v1/VolumeInfo';
import { fromWire, type FromWire } from '../wire/from-wire';
import type { WriteOp } from '../wire/generated/daxd/v1/WriteOp';
import type { WriteResult__Output } from '../wire/generated/daxd/v1/WriteResult';
import type { WriteStreamRequest } from '../wire/generated/daxd/v1/WriteStreamRequest';
import type { WriteStreamResponse__Output } from '../wire/generated/daxd/v1/WriteStreamResponse';
import { isUnavailable } from './errors';
import {
  CHUNK_BYTES, DEADLINE_MS_DEFAULT, FLOW_CONTROL_WINDOW_BYTES, MESSAGE_BYTES_MAX, RETRIES_MAX, RETRY_BACKOFF_MS,
} from './limits';
import { OpPipeline } from './op-pipeline';
import { ServerLimits, type DataPathLimits } from './server-limits';
import { loadDaxdProto } from '../wire/proto';
import { RawClients } from './raw-clients';
import { assertLoopbackTarget, bearerInterceptor, channelCredentials, tlsChannelOptions, type DaxTlsOptions } from './credentials';
import type { MappedFile, MmapOptions } from './mapped-file';
import { DmaPin, type PinOptions } from './dma-pin';
import { DmaStream } from './dma-stream';
import { DaxSession, type OpenSessionOptions } from './session';
import { callUnary, type UnaryMethod } from './unary-call';

export interface DaxClientOptions {
  /** Deadline of each call (and each op of a read or write), ms. */
  deadlineMs?: number;
  /** Attempts of idempotent calls after UNAVAILABLE. */
  retries?: number;
  /** Extra grpc-js channel options (they win over the SDK's). */
  channelOptions?: grpc.ChannelOptions;
  /**
   * Talk TLS: trust `ca` (PEM; the system's roots when absent), present `cert` + `key` as a
   * client certificate (mTLS), check the server's certificate against `servername`.
   * Without it the channel is plaintext (loopback).
   */
  tls?: DaxTlsOptions;
  /**
   * A bearer token of a principal of the server's --auth file, sent as `authorization:
   * Bearer TOKEN` on every call and stream (with or without TLS). Kept only inside the
   * channel: no error, log or toString() shows it.
   */
  token?: string;
  /**
   * Send `token` without `tls` to a host beyond loopback (127.0.0.1, ::1, localhost).
   * Off by default: anyone on the path could read the token. Only for a server started
   * with --insecure-allow-remote on a network you trust.
   */
  allowPlaintextToken?: boolean;
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

/**
 * StatVolume's answer (see the proto's VolumeInfo): the generated message with camelCase
 * names and its uint64 fields as numbers (wire/from-wire.ts), so a field added to the
 * proto shows up here by itself. `blocksPendingFree`: blocks freed by transactions not
 * committed yet, free after the next commit; `maxIoBytes` / `maxMessageBytes`: the
 * server's data-path limits, which the SDK sizes its calls by.
 */
export type VolumeInfo = FromWire<VolumeInfo__Output, WireVolumeInfo>;

/** The proto's FallocateRequest.Mode names (the wire spelling), less the unset value. */
export type FallocateMode = Exclude<FallocateRequest_Mode, 'MODE_UNSPECIFIED'>;
export type LayoutBreak = 'WAIT' | 'FAIL' | 'RECALL';

/** One mapping entry of a file (Mapping.Inspect): a page (order 0), or a 2 MiB PMD entry (order 9) at its first page. */
export interface MappingEntry {
  pgoff: number;
  /** 0: covers page pgoff; 9: covers the 512 pages from pgoff. */
  order: number;
  /** EMPTY, ZERO (the zero page; for order 9 the huge zero page) or MAPPED. */
  state: string;
  pfn: number;
  locked: boolean;
  dirty: boolean;
  towrite: boolean;
  pinCount: number;
  mappers: number;
  waiters: number;
}

export interface WriteOutcome {
  written: number;
  /** File size after the write. */
  size: number;
}

/**
 * Channel options the SDK sets: explicit message limits and a large flow-control window
 * (FLOW_CONTROL_WINDOW_BYTES, measured: README "Performance of bulk I/O, and tuning").
 * One channel per client: a second connection for bulk streams measured no faster.
 */
export const CLIENT_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': MESSAGE_BYTES_MAX,
  'grpc.max_send_message_length': MESSAGE_BYTES_MAX,
  'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW_BYTES,
};

function fileInfo(w: FileInfo__Output): FileInfo {
  return {
    ino: Number(w.ino), name: w.name, size: Number(w.size), blocks: Number(w.blocks), generation: Number(w.generation),
    mtimeMs: Number(w.mtime_ms), ctimeMs: Number(w.ctime_ms),
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
  /** Pins and DMA pipelined over Dma.Stream (dma-stream.ts): pin + DMA + unpin in one op. */
  readonly dma: DmaStream;
  /** The server's max_io_bytes / max_message_bytes, fetched once by the first I/O. */
  private readonly serverLimits: ServerLimits;

  private constructor(readonly address: string, options: DaxClientOptions) {
    this.deadlineMs = options.deadlineMs ?? DEADLINE_MS_DEFAULT;
    this.retries = options.retries ?? RETRIES_MAX;
    if (options.token !== undefined && options.tls === undefined && !options.allowPlaintextToken) assertLoopbackTarget(address);
    this.raw = new RawClients(loadDaxdProto(), address, { ...CLIENT_CHANNEL_OPTIONS, ...tlsChannelOptions(options.tls), ...options.channelOptions },
      channelCredentials(options.tls), options.token === undefined ? [] : [bearerInterceptor(options.token)]);
    const files: FilesClient = this.raw.files;
    this.dma = new DmaStream(this.raw.dma, this.deadlineMs);
    // Sent once, not retried: a failure leaves the wire defaults and the next I/O asks again.
    this.serverLimits = new ServerLimits(() => callUnary<object, VolumeInfo__Output>(files.StatVolume.bind(files) as UnaryMethod<object, VolumeInfo__Output>, {}, {
      deadlineMs: this.deadlineMs, idempotent: false, retries: 0, backoffMs: RETRY_BACKOFF_MS,
    }));
    const messageDataBytesMax = (): number => this.serverLimits.now().ioBytesMax;
    this.reads = new OpPipeline<ReadOp, ReadStreamRequest, ReadStreamResponse__Output, ReadResult__Output>({
      open: () => files.ReadStream(),
      request: (ops) => ({ ops }),
      results: (response) => response.results,
      messageDataBytesMax,
    });
    this.writes = new OpPipeline<WriteOp, WriteStreamRequest, WriteStreamResponse__Output, WriteResult__Output>({
      open: () => files.WriteStream(),
      request: (ops) => ({ ops }),
      results: (response) => response.results,
      messageDataBytesMax,
    });
  }

  /**
   * A client for host:port. Connecting is lazy; see ready(). Throws a TypeError at once for
   * a token that cannot be sent or a client certificate without its key.
   */
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
    this.dma.close();
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
    const chunkBytes = this.chunkBytes();
    if (length <= chunkBytes) return this.readOp(ino, offset, length);
    const chunks: Promise<Buffer>[] = [];
    for (let at = 0; at < length; at += chunkBytes) chunks.push(this.readOp(ino, offset + at, Math.min(chunkBytes, length - at)));
    const parts = await Promise.all(chunks);
    // A short chunk is the end of the file: nothing after it counts.
    const short = parts.findIndex((p, i) => p.length < Math.min(chunkBytes, length - i * chunkBytes));
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
    const chunkBytes = this.chunkBytes();
    if (data.length <= chunkBytes) return this.writeOp(ino, offset, data, sync);
    const chunks: Promise<WriteOutcome>[] = [];
    for (let at = 0; at < data.length; at += chunkBytes) {
      chunks.push(this.writeOp(ino, offset + at, data.subarray(at, Math.min(data.length, at + chunkBytes)), sync));
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

  /** The mapping entries of pages [firstPgoff, lastPgoff] of a file, ascending (for debugging: `daxd inspect`). */
  async inspect(ino: number, firstPgoff: number, lastPgoff: number): Promise<MappingEntry[]> {
    const inspect = this.raw.mapping.Inspect.bind(this.raw.mapping) as UnaryMethod<InspectRequest, InspectResponse__Output>;
    const res = await callUnary(inspect, { ino, first_pgoff: firstPgoff, last_pgoff: lastPgoff }, {
      deadlineMs: this.deadlineMs, idempotent: true, retries: this.retries, backoffMs: RETRY_BACKOFF_MS,
    });
    return res.entries.map((e) => ({
      pgoff: Number(e.pgoff), order: e.order, state: e.state, pfn: Number(e.pfn), locked: e.locked, dirty: e.dirty,
      towrite: e.towrite, pinCount: e.pin_count, mappers: e.mappers, waiters: e.waiters,
    }));
  }

  async statVolume(): Promise<VolumeInfo> {
    const info = await this.unary<object, VolumeInfo__Output>(this.raw.files.StatVolume, {}, true);
    this.serverLimits.adopt(info);
    return fromWire<VolumeInfo__Output, WireVolumeInfo>('daxd.v1.VolumeInfo', info);
  }

  /**
   * The server's data-path limits (VolumeInfo.max_io_bytes / max_message_bytes) this
   * client sizes its calls by: fetched once (the first read, write or mapping access
   * starts it), the wire defaults until then or if the server cannot say.
   */
  dataPathLimits(): Promise<DataPathLimits> {
    return this.serverLimits.get();
  }

  // ---- sessions ----------------------------------------------------------------

  /** Open a session (keep-alive runs by itself until it is closed). */
  async openSession(options: OpenSessionOptions = {}): Promise<DaxSession> {
    const session = await DaxSession.open(this.raw, options, {
      deadlineMs: this.deadlineMs, retries: this.retries, ioBytesMax: () => this.serverLimits.now().ioBytesMax,
    });
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
    return DmaPin.pin(this.raw.dma, session, ino, firstPgoff, npages, options, { deadlineMs: this.deadlineMs, retries: this.retries, stream: this.dma });
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

  /** Size of one read or write op: the SDK's CHUNK_BYTES, within the server's max_io_bytes. */
  private chunkBytes(): number {
    return Math.min(CHUNK_BYTES, this.serverLimits.now().ioBytesMax);
  }

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
