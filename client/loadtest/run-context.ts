/**
 * What the workers of one daxd-load run share: the clients (one connection each), the
 * files, the sessions and mappings opened on demand, the verify book and the recorder;
 * and the helpers every workload times its requests with.
 *
 * Sessions and mappings are opened lazily and closed by close(): one session per client
 * (for mappings, shared by the client's workers so their page accesses batch together)
 * and one per worker (for pins: the server allows 64 pins per session).
 */
import assert from 'node:assert';
import type { DaxClient } from '../dax-client';
import { DaxClientError } from '../errors';
import type { MappedFile } from '../mapped-file';
import type { DaxSession } from '../session';
import { PAGE_BYTES } from './block-header';
import type { LoadOptions } from './load-options';
import { Recorder } from './recorder';
import { Rng } from './rng';
import type { VerifyBook, VerifyFile } from './verify-book';

export type LoadFile = VerifyFile & { sizeBytes: number };

/** One worker: a loop issuing one request at a time on one client. */
export interface WorkerLoop {
  step(): Promise<void>;
  /** Release what the worker holds (pins, mappings). */
  close?(): Promise<void>;
}

export interface Workload {
  readonly name: string;
  /** One line for --help. */
  readonly summary: string;
  /** 'written': files laid out with data before the run; 'sparse': holes of --size. */
  readonly files: 'written' | 'sparse';
  /** A reason the options do not fit this workload, or null. */
  validate?(options: LoadOptions): string | null;
  createWorker(w: Worker): Promise<WorkerLoop>;
}

export class Worker {
  readonly rng: Rng;
  private ownSession: Promise<DaxSession> | null = null;

  constructor(
    readonly run: RunContext,
    /** 0 .. clients * qd - 1. */
    readonly id: number,
    readonly clientIndex: number,
    /** Index among the workers of its client. */
    readonly slot: number,
  ) {
    this.rng = run.rng.fork(id + 1);
  }

  get client(): DaxClient {
    return this.run.clients[this.clientIndex];
  }

  /** A session of this worker alone (pins). */
  session(): Promise<DaxSession> {
    if (this.ownSession === null) this.ownSession = this.run.openSession(this.client, `daxd-load worker ${this.id}`);
    return this.ownSession;
  }

  /** Worker w of n gets the w-th share of file (w mod files): [first, first + count) in units. */
  region(units: number): { file: LoadFile; first: number; count: number } {
    const { files } = this.run;
    const nWorkers = this.run.workerCount;
    const file = files[this.id % files.length];
    const sharing = Math.floor(nWorkers / files.length) + (this.id % files.length < nWorkers % files.length ? 1 : 0);
    const share = Math.floor(this.id / files.length);
    if (units < sharing) return { file, first: 0, count: units };
    const per = Math.floor(units / sharing);
    return { file, first: share * per, count: share === sharing - 1 ? units - share * per : per };
  }
}

export class RunContext {
  readonly rng: Rng;
  readonly recorder = new Recorder();
  stopping = false;
  private readonly sessions: Array<Promise<DaxSession>> = [];
  private readonly clientSessions = new Map<number, Promise<DaxSession>>();
  private readonly sharedMaps = new Map<string, Promise<MappedFile>>();
  /** A static payload for writes that are not verified (never modified). */
  readonly payload: Buffer;

  constructor(
    readonly options: LoadOptions,
    readonly clients: DaxClient[],
    readonly files: LoadFile[],
    readonly book: VerifyBook | null,
    readonly workerCount: number,
  ) {
    this.rng = new Rng(options.seed);
    this.payload = new Rng(options.seed ^ 0x7a11).fill(Buffer.alloc(Math.max(options.bsBytes, 1024 * 1024)));
  }

  openSession(client: DaxClient, name: string): Promise<DaxSession> {
    const s = client.openSession({ clientName: name });
    this.sessions.push(s);
    return s;
  }

  /** The session of client i (mappings). */
  clientSession(i: number): Promise<DaxSession> {
    let s = this.clientSessions.get(i);
    if (s === undefined) {
      s = this.openSession(this.clients[i], `daxd-load client ${i}`);
      this.clientSessions.set(i, s);
    }
    return s;
  }

  /** The shared, writable mapping of file f in client i's session. */
  sharedMap(i: number, f: LoadFile): Promise<MappedFile> {
    const key = `${i}:${f.index}`;
    let m = this.sharedMaps.get(key);
    if (m === undefined) {
      m = this.clientSession(i).then((s) => s.mmap(f.ino, { shared: true, writable: true }));
      this.sharedMaps.set(key, m);
    }
    return m;
  }

  /** Unmaps the shared mappings and closes every session (pins and PTEs go with them). */
  async close(): Promise<void> {
    const maps = await Promise.allSettled(this.sharedMaps.values());
    await Promise.allSettled(maps.map((m) => (m.status === 'fulfilled' ? m.value.unmap() : null)));
    const sessions = await Promise.allSettled(this.sessions);
    await Promise.allSettled(sessions.map((s) => (s.status === 'fulfilled' ? s.value.close() : null)));
  }

  // ---- timed requests, verified when the run verifies ------------------------------

  /**
   * Reads [offset, offset + length) of file f through `read` (Files, mapping, DMA: `via`),
   * records it as `kind`, and checks every page when verifying. length and offset must be
   * page multiples when verifying.
   */
  async timedRead(kind: string, via: string, f: LoadFile, offset: number, length: number, read: () => Promise<Buffer>, primary = true): Promise<Buffer> {
    const book = this.book;
    const first = offset / PAGE_BYTES;
    const genMins = book ? book.snapshot(f.index, first, length / PAGE_BYTES) : null;
    const t0 = performance.now();
    const data = await read();
    this.recorder.record(kind, 1, data.length, (performance.now() - t0) * 1e6, primary);
    if (book && genMins) {
      if (data.length !== length) throw new Error(`${via} of ${length} bytes at ${offset} of ${f.name} returned ${data.length}`);
      book.check(data, f.index, first, genMins, via);
    }
    return data;
  }

  /**
   * Writes [offset, offset + length) of file f through `write`, recorded as `kind`. When
   * verifying: takes the pages' locks, stamps every page, and acknowledges the new
   * generations once the write is answered.
   */
  async timedWrite(kind: string, f: LoadFile, offset: number, length: number, writer: number, write: (data: Buffer) => Promise<void>, primary = true): Promise<void> {
    const book = this.book;
    if (!book) {
      assert(length <= this.payload.length, 'write larger than the payload buffer');
      const data = this.payload.subarray(0, length);
      const t0 = performance.now();
      await write(data);
      this.recorder.record(kind, 1, length, (performance.now() - t0) * 1e6, primary);
      return;
    }
    const first = offset / PAGE_BYTES;
    const n = length / PAGE_BYTES;
    const release = await book.locks.lock(f.index, first, n);
    try {
      const gens = book.beginWrite(f.index, first, n);
      const data = Buffer.allocUnsafe(length);
      book.stamp(data, f.index, first, gens, writer);
      const t0 = performance.now();
      await write(data);
      this.recorder.record(kind, 1, length, (performance.now() - t0) * 1e6, primary);
      book.endWrite(f.index, first, gens);
    } finally {
      release();
    }
  }
}

/** The daxd reason of a failure ('EBUSY', 'SIGBUS', ...), or its status name, or 'error'. */
export function reasonOf(err: unknown): string {
  if (err instanceof DaxClientError) return err.reason ?? err.codeName;
  return err instanceof Error ? err.name : 'error';
}
