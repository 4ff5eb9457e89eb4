/**
 * One daxd-fsx run: several sessions (each on its own connection, with a shared writable
 * mapping and a private writable mapping of the file) apply a seeded random sequence of
 * operations to one file, one at a time, and every read is compared with the model.
 * Every FULL_CHECK_EVERY ops, and at the end, the whole file is read back and compared.
 *
 * The sequence depends only on the seed and the options (each op's parameters are drawn
 * from the model's state, which the server must match): the same seed replays it.
 * Bounded by --ops and --duration; each call by the SDK's deadline.
 */
import { DaxClient } from '../../dax-client';
import { awaitConnected, type ConnectionOptions } from '../connect-flags';
import { PAGE_BYTES } from '../block-header';
import { Rng } from '../rng';
import { FileModel, PrivatePages } from './file-model';
import { describeError, expectBytes, FSX_OP_NAMES, planOp, type FsxContext, type FsxOpName, type FsxSession } from './fsx-ops';

const FULL_CHECK_EVERY = 100;
/** Draws before giving up on finding an op that can run (every op can run on a non-empty file). */
const PLAN_ATTEMPTS_MAX = 64;
const CALL_DEADLINE_MS = 15_000;

export interface FsxOptions {
  address: string;
  seed: number;
  opsMax: number;
  durationMs: number;
  sessions: number;
  maxSizeBytes: number;
  maxLenBytes: number;
  /** Ops printed before a failure. */
  logOps: number;
  weights: Record<FsxOpName, number>;
  fileName: string;
  /** Called with each op's line before it runs (--verbose). */
  onOp?(line: string): void;
  /** Called after each op with the ops done and the run's elapsed ms (the progress bar). */
  onProgress?(opsDone: number, elapsedMs: number): void;
}

export interface FsxResult {
  passed: boolean;
  seed: number;
  opsDone: number;
  elapsedS: number;
  counts: Partial<Record<FsxOpName, number>>;
  stoppedBy: 'ops' | 'duration' | 'failure';
  finalSize: number;
  failure: { op: number; line: string; message: string; lastOps: string[] } | null;
}

/** `connection`: TLS and token of the clients (kept out of `o`, which --json writes out). */
export async function runFsx(o: FsxOptions, connection: ConnectionOptions = {}): Promise<FsxResult> {
  const rng = new Rng(o.seed);
  const model = new FileModel(Math.ceil(o.maxSizeBytes / PAGE_BYTES) * PAGE_BYTES);
  const clients = Array.from({ length: o.sessions }, () => DaxClient.connect(o.address, { ...connection, deadlineMs: CALL_DEADLINE_MS }));
  const sessions: FsxSession[] = [];
  const log: string[] = [];
  const counts: Partial<Record<FsxOpName, number>> = {};
  const t0 = performance.now();
  let opsDone = 0;
  let current = '(setup)';
  const result = (stoppedBy: FsxResult['stoppedBy'], failure: FsxResult['failure']): FsxResult => ({
    passed: failure === null, seed: o.seed, opsDone, elapsedS: (performance.now() - t0) / 1000, counts, stoppedBy, finalSize: model.size, failure,
  });
  try {
    const first = clients[0];
    await awaitConnected([first], o.address, connection, CALL_DEADLINE_MS);
    const info = await first.create(o.fileName);
    await first.truncate(info.ino, 0);
    for (let i = 0; i < o.sessions; i++) {
      const session = await clients[i].openSession({ clientName: `daxd-fsx ${i}` });
      const pinSession = await clients[i].openSession({ clientName: `daxd-fsx ${i} pins` });
      sessions.push({
        index: i, client: clients[i], session, pinSession, privPages: new PrivatePages(),
        shared: session.mmap(info.ino, { shared: true, writable: true }), priv: session.mmap(info.ino, { private: true, writable: true }),
      });
    }
    const ctx: FsxContext = { rng, model, ino: info.ino, sessions, maxLenBytes: o.maxLenBytes, newPrivatePages: () => new PrivatePages() };
    const names = FSX_OP_NAMES.filter((n) => o.weights[n] > 0);
    const weights = names.map((n) => o.weights[n]);
    let stoppedBy: FsxResult['stoppedBy'] = 'ops';
    try {
      while (opsDone < o.opsMax) {
        if (performance.now() - t0 > o.durationMs) {
          stoppedBy = 'duration';
          break;
        }
        const op = plan(ctx, names, weights);
        current = `#${opsDone + 1} ${op.text}`;
        log.push(current);
        if (log.length > o.logOps) log.shift();
        o.onOp?.(current);
        await op.run();
        counts[op.name] = (counts[op.name] ?? 0) + 1;
        opsDone++;
        o.onProgress?.(opsDone, performance.now() - t0);
        if (opsDone % FULL_CHECK_EVERY === 0) await fullCheck(ctx, `full check after op #${opsDone}`);
      }
      current = '(final full check)';
      await fullCheck(ctx, 'final full check');
    } catch (err) {
      return result('failure', { op: opsDone + 1, line: current, message: describeError(err), lastOps: [...log] });
    }
    return result(stoppedBy, null);
  } finally {
    await Promise.allSettled(sessions.map(async (s) => {
      await Promise.allSettled([s.shared.unmap(), s.priv.unmap()]);
      await Promise.allSettled([s.session.close(), s.pinSession.close()]);
    }));
    await clients[0].unlink(o.fileName).catch(() => undefined);
    for (const c of clients) c.close();
  }
}

function plan(ctx: FsxContext, names: FsxOpName[], weights: number[]) {
  for (let attempt = 0; attempt < PLAN_ATTEMPTS_MAX; attempt++) {
    const name = names[ctx.rng.weighted(weights)];
    const op = planOp(ctx, name, ctx.rng.pick(ctx.sessions));
    if (op) return op;
  }
  // An empty file and only ops that need data: grow it.
  const s = ctx.sessions[0];
  const op = planOp(ctx, 'write', s);
  if (!op) throw new Error('no op can run');
  return op;
}

async function fullCheck(ctx: FsxContext, what: string): Promise<void> {
  const s = ctx.sessions[0];
  const cap = ctx.model.capacityBytes;
  expectBytes(what, ctx.model.read(0, cap), await s.client.read(ctx.ino, 0, cap), 0);
}
