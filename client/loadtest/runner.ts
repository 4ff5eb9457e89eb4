/**
 * One daxd-load run: connect -> lay out the files -> start clients x qd workers -> measure
 * (until --duration or --ops, sampling the time series every --sample-ms) -> drain ->
 * release pins, mappings, sessions -> remove the files (unless kept) -> result.
 *
 * Bounds: workers stop at the duration or the op budget, or early after ERRORS_MAX
 * failures or MISMATCHES_KEPT mismatches; a stopping run waits DRAIN_MS_MAX at most for
 * the requests in flight (each also has its SDK deadline). Laying out is bounded by the
 * file sizes (checked against the volume's free space first).
 */
import assert from 'node:assert';
import { DaxClient } from '../dax-client';
import { awaitConnected, type ConnectionOptions } from './connect-flags';
import { PAGE_BYTES } from './block-header';
import { DRAIN_MS_MAX, ERRORS_MAX, type LoadOptions } from './load-options';
import type { KindReport, SeriesPoint } from './recorder';
import { reasonOf, RunContext, Worker, type LoadFile, type WorkerLoop } from './run-context';
import { MISMATCHES_KEPT, VerifyBook, type Mismatch } from './verify-book';
import { WORKLOADS } from './workloads';

/** Chunks of the layout phase, and how many are in flight. */
const LAYOUT_CHUNK_BYTES = 1024 * 1024;
const LAYOUT_CHUNKS_IN_FLIGHT = 8;
const CONNECT_MS_MAX = 10_000;
/** A run given only --ops still ends after this long. */
export const OPS_ONLY_DURATION_MS_MAX = 600_000;

export class LoadUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoadUsageError';
  }
}

export interface RunResult {
  tool: 'daxd-load';
  startedAt: string;
  address: string;
  options: LoadOptions;
  /** Seconds spent creating and laying out the files (not measured). */
  layoutS: number;
  /** Seconds of the measured phase. */
  elapsedS: number;
  total: KindReport;
  kinds: KindReport[];
  series: SeriesPoint[];
  expected: Record<string, number>;
  errors: Record<string, { count: number; first: string }>;
  verify: { enabled: boolean; pagesStamped: number; pagesChecked: number; mismatchCount: number; mismatches: Mismatch[] };
  stoppedEarly: string | null;
  passed: boolean;
}

export interface RunHooks {
  /** Once per sample: the interval's point and how far the run is (0..1). */
  onSample?(point: SeriesPoint, fraction: number, errors: number): void;
  /** Progress messages of the setup phases. */
  onPhase?(message: string): void;
}

export function validateOptions(o: LoadOptions): void {
  const workload = WORKLOADS.get(o.workload);
  if (workload === undefined) throw new LoadUsageError(`unknown workload ${JSON.stringify(o.workload)}`);
  if (o.durationMs === null && o.opsMax === null) throw new LoadUsageError('give --duration or --ops (or both)');
  if (o.sizeBytes % PAGE_BYTES !== 0) throw new LoadUsageError(`--size must be a multiple of ${PAGE_BYTES}`);
  if (o.bsBytes <= 0 || o.sizeBytes <= 0) throw new LoadUsageError('--bs and --size must be positive');
  const why = workload.validate?.(o) ?? null;
  if (why !== null) throw new LoadUsageError(`${o.workload}: ${why}`);
}

/**
 * Files prepared by the caller (benchmarks: laid out once for many runs, or a server
 * without a namespace, like the echo baseline): used as they are, never removed.
 */
export interface PreparedFiles {
  files: LoadFile[];
}

/** `connection`: TLS and token of the clients (kept out of `options`, which the result carries). */
export async function runLoad(options: LoadOptions, hooks: RunHooks = {}, prepared: PreparedFiles | null = null, connection: ConnectionOptions = {}): Promise<RunResult> {
  validateOptions(options);
  const workload = WORKLOADS.get(options.workload);
  assert(workload);
  const startedAt = new Date().toISOString();
  const clients = Array.from({ length: options.clients }, () => DaxClient.connect(options.address, connection));
  let run: RunContext | null = null;
  const loops: WorkerLoop[] = [];
  let files: LoadFile[] = [];
  try {
    await awaitConnected(clients, options.address, connection, CONNECT_MS_MAX);
    const l0 = performance.now();
    let book: VerifyBook | null = null;
    if (prepared) {
      assert(!options.verify, 'verify needs files laid out by the run');
      files = prepared.files;
    } else {
      hooks.onPhase?.(`laying out ${options.files} file(s) of ${options.sizeBytes} bytes (${workload.files})`);
      files = await layOut(clients[0], options, workload.files);
      book = options.verify ? new VerifyBook(options.seed >>> 0, files, options.seed) : null;
      if (workload.files === 'written') await fill(clients[0], files, book);
    }
    const layoutS = (performance.now() - l0) / 1000;
    run = new RunContext(options, clients, files, book, options.clients * options.qd);
    const workers: Worker[] = [];
    for (let c = 0; c < options.clients; c++) for (let q = 0; q < options.qd; q++) workers.push(new Worker(run, workers.length, c, q));
    hooks.onPhase?.(`starting ${workers.length} worker(s)`);
    for (const w of workers) loops.push(await workload.createWorker(w));
    const measured = await measure(run, loops, hooks);
    return result(run, startedAt, layoutS, measured);
  } finally {
    await Promise.allSettled(loops.map((l) => l.close?.()));
    await run?.close();
    if (!options.keepFiles && !prepared) await Promise.allSettled(files.map((f) => clients[0].unlink(f.name)));
    for (const c of clients) c.close();
  }
}

/** Creates (or empties) the files; sparse ones get their size as a hole. */
async function layOut(client: DaxClient, o: LoadOptions, kind: 'written' | 'sparse'): Promise<LoadFile[]> {
  const vol = await client.statVolume();
  const needed = o.files * o.sizeBytes;
  if (needed > vol.blocksFree * vol.blockSize * 0.95) {
    throw new LoadUsageError(`--files x --size (${needed} bytes) does not fit the volume's free space (${vol.blocksFree * vol.blockSize} bytes)`);
  }
  const files: LoadFile[] = [];
  for (let i = 0; i < o.files; i++) {
    const name = `${o.filePrefix}.${i}`;
    const info = await client.create(name);
    await client.truncate(info.ino, 0);
    if (kind === 'sparse') await client.truncate(info.ino, o.sizeBytes);
    files.push({ index: i, ino: info.ino, name, pages: o.sizeBytes / PAGE_BYTES, sizeBytes: o.sizeBytes });
  }
  return files;
}

/** Writes every page of every file once (generation 1 when verifying). */
async function fill(client: DaxClient, files: LoadFile[], book: VerifyBook | null): Promise<void> {
  const chunks: Array<[LoadFile, number]> = [];
  for (const f of files) for (let at = 0; at < f.sizeBytes; at += LAYOUT_CHUNK_BYTES) chunks.push([f, at]);
  const plain = Buffer.alloc(LAYOUT_CHUNK_BYTES, 0xa5);
  let next = 0;
  const lane = async () => {
    while (next < chunks.length) {
      const [f, at] = chunks[next++];
      const length = Math.min(LAYOUT_CHUNK_BYTES, f.sizeBytes - at);
      let data = plain.subarray(0, length);
      if (book) {
        data = Buffer.allocUnsafe(length);
        const gens = book.beginWrite(f.index, at / PAGE_BYTES, length / PAGE_BYTES);
        book.stamp(data, f.index, at / PAGE_BYTES, gens, 0xffffffff);
        await client.write(f.ino, at, data);
        book.endWrite(f.index, at / PAGE_BYTES, gens);
      } else {
        await client.write(f.ino, at, data);
      }
    }
  };
  await Promise.all(Array.from({ length: LAYOUT_CHUNKS_IN_FLIGHT }, lane));
  // Laid out data is on the medium before the measured phase (no writeback inside it).
  for (const f of files) await client.fsync(f.ino);
}

interface Measured {
  elapsedS: number;
  stoppedEarly: string | null;
}

async function measure(run: RunContext, loops: WorkerLoop[], hooks: RunHooks): Promise<Measured> {
  const o = run.options;
  const rec = run.recorder;
  const durationMs = o.durationMs ?? OPS_ONLY_DURATION_MS_MAX;
  let claimed = 0;
  let stoppedEarly: string | null = null;
  let signalStop!: () => void;
  const stopped = new Promise<void>((resolve) => (signalStop = resolve));
  const stop = (why: string | null) => {
    if (!run.stopping && why !== null) stoppedEarly = why;
    run.stopping = true;
    signalStop();
  };
  const t0 = performance.now();
  let lastSample = t0;
  const sampler = setInterval(() => {
    const now = performance.now();
    const point = rec.sample((now - t0) / 1000, (now - lastSample) / 1000);
    lastSample = now;
    const byTime = (now - t0) / durationMs;
    const byOps = o.opsMax === null ? 0 : claimed / o.opsMax;
    hooks.onSample?.(point, Math.min(1, Math.max(byTime, byOps)), rec.errorCount);
  }, o.sampleMs);
  const timer = setTimeout(() => stop(o.durationMs === null ? `time limit of ${durationMs} ms with --ops only` : null), durationMs);
  const loop = async (l: WorkerLoop) => {
    while (!run.stopping) {
      if (o.opsMax !== null) {
        if (claimed >= o.opsMax) break;
        claimed++;
      }
      try {
        await l.step();
      } catch (err) {
        rec.error(reasonOf(err), err);
        if (rec.errorCount >= ERRORS_MAX) stop(`${rec.errorCount} errors`);
      }
      if ((run.book?.mismatchCount ?? 0) >= MISMATCHES_KEPT) stop(`${MISMATCHES_KEPT} verify mismatches`);
    }
  };
  const all = Promise.all(loops.map(loop)).then(() => true);
  await Promise.race([all, stopped]);
  // Stopping: the requests in flight get DRAIN_MS_MAX to end (each has its SDK deadline too).
  let drainTimer: NodeJS.Timeout | undefined;
  const drained = await Promise.race([all, new Promise<boolean>((resolve) => (drainTimer = setTimeout(() => resolve(false), DRAIN_MS_MAX)))]);
  clearTimeout(drainTimer);
  clearTimeout(timer);
  clearInterval(sampler);
  run.stopping = true;
  const end = performance.now();
  // The last interval runs from the last sample to the end of the drain. Shorter than half
  // an interval (often a few ms) it is no point of its own: its rate, over so few requests
  // (the workers stopped issuing), plotted as a collapse or a spike. Its requests still
  // count in the totals (flush). A run with no point yet keeps it, whatever its width.
  const last = rec.series.at(-1);
  if (last === undefined || end - lastSample >= o.sampleMs / 2) {
    const point = rec.sample((end - t0) / 1000, (end - lastSample) / 1000);
    hooks.onSample?.(point, 1, rec.errorCount);
  } else {
    rec.flush();
    hooks.onSample?.(last, 1, rec.errorCount);
  }
  if (!drained) {
    rec.error('DRAIN_TIMEOUT', new Error(`requests still in flight ${DRAIN_MS_MAX} ms after the run stopped`));
    stoppedEarly ??= 'drain timeout';
  }
  return { elapsedS: (end - t0) / 1000, stoppedEarly };
}

function result(run: RunContext, startedAt: string, layoutS: number, m: Measured): RunResult {
  const rec = run.recorder;
  const book = run.book;
  const mismatchCount = book?.mismatchCount ?? 0;
  return {
    tool: 'daxd-load', startedAt, address: run.options.address, options: run.options, layoutS, elapsedS: m.elapsedS,
    total: rec.total(m.elapsedS), kinds: rec.reports(m.elapsedS), series: rec.series,
    expected: Object.fromEntries(rec.expected), errors: Object.fromEntries(rec.errors),
    verify: {
      enabled: book !== null, pagesStamped: book?.pagesStamped ?? 0, pagesChecked: book?.pagesChecked ?? 0,
      mismatchCount, mismatches: book?.mismatches ?? [],
    },
    stoppedEarly: m.stoppedEarly,
    passed: rec.errorCount === 0 && mismatchCount === 0,
  };
}
