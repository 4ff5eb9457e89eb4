/**
 * Crash tests with a real process and a real volume file: a child (kill-child.ts) runs a
 * seeded random workload with frequent fsyncs; the parent kills it with SIGKILL at a random
 * point, reaps it, and checks the volume (S2, S6):
 * - fsck (when built) is clean on the crashed volume, before mount, and again after mount;
 * - mount replays the journal;
 * - every byte acknowledged by a file's last completed fsync (or by a completed sync write)
 *   and not touched by a later operation is intact, and the file has not shrunk below it;
 *   a file known to exist (or not) at its last durable point still does (or does not);
 * - no file exposes bytes it never wrote: every byte of file k is 0 or in k's alphabet
 *   (kill-child.ts), and none is the CANARY that fills freed blocks.
 * Then the next child starts on the recovered volume (its base state is what the parent
 * read), so later crashes also hit volumes with replayed journals and freed orphans.
 *
 * What "touched by a later operation" means, per operation line seen before the crash
 * (the child announces each operation before starting it, so an interrupted one counts):
 *   write [a, b)                 bytes [a, b) uncertain
 *   truncate to s                bytes from s on uncertain (size may be old or new)
 *   PUNCH_HOLE / ZERO_RANGE      the range uncertain
 *   COLLAPSE_RANGE at o          bytes from o on uncertain
 *   ALLOCATE / KEEP_SIZE         nothing (they change no byte inside the file)
 *   unlink, create of a missing file   existence and all content uncertain
 *
 * SIGKILL loses no store to the MAP_SHARED mapping (the page cache survives the process),
 * so what this exercises is the journal: metadata changes live only in the dead process's
 * running transaction until a commit, and a kill can land anywhere in a commit.
 *
 *   mapstore / dma [a, b)        bytes [a, b) uncertain
 *
 * Durable points (acknowledgements): fsync and dma (their Fsync) guard the whole file; a
 * sync write and a mapstore (its Msync) guard their range.
 *
 * Used by kill.test.ts (bounded, in npm test) and soak-crash.ts (npm run soak:crash). A
 * campaign is replayable from its seed (the workloads and the crash triggers; the exact
 * instant a SIGKILL lands is the scheduler's).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DaxError } from '../../server/errors';
import { FileSystem } from '../../server/fs/filesystem';
import { mkfs } from '../../server/fs/mkfs';
import { BLOCK_SIZE } from '../../server/limits';
import { MmapStorage } from '../../server/media/mmap-storage';
import { alphabetOf, CANARY, type ChildLine, crashData, type CrashOp, FILE_NAMES, sha1 } from './kill-child';
import { seededRng } from '../support/rng';
import { assertFsckClean, loadFsck } from '../support/fsck';
import { MiB } from '../support/units';

const VOLUME_BYTES = 16 * MiB;
const CHILD_PATH = path.join(__dirname, 'kill-child.js');
/** A round that neither reaches its trigger nor dies in this long is a hang: fail. */
const ROUND_WATCHDOG_MS = 60_000;
/** A 'kind' trigger gives up (kills anyway) after this many operations. */
const KIND_TRIGGER_OPS_MAX = 400;
/** Problems kept verbatim in Stats.problems. */
const PROBLEMS_KEPT_MAX = 20;
/** Log lines kept for a failure report. */
const LOG_TAIL_LINES = 40;

/** When the parent kills: on a line kind, after the n-th such line. */
type Trigger =
  | { on: 'mounting' }
  | { on: 'ready' }
  | { on: 'op'; n: number }
  | { on: 'ack'; n: number }
  /** As soon as the n-th operation of this kind has started (it is in flight). */
  | { on: 'kind'; kind: string; n: number };

/** Kinds a 'kind' trigger aims at: the layout changes and the dax durable points. */
const TARGET_KINDS = ['truncate-shrink', 'truncate-grow', 'COLLAPSE_RANGE', 'PUNCH_HOLE', 'ZERO_RANGE', 'mapstore', 'mapstore-sync', 'dma', 'write-sync', 'fsync'];

function pickTrigger(rng: () => number): Trigger {
  const r = rng();
  if (r < 0.03) return { on: 'mounting' };
  if (r < 0.07) return { on: 'ready' };
  if (r < 0.37) return { on: 'op', n: 1 + Math.floor(rng() * 60) };
  if (r < 0.57) return { on: 'ack', n: 1 + Math.floor(rng() * 10) };
  return { on: 'kind', kind: TARGET_KINDS[Math.floor(rng() * TARGET_KINDS.length)], n: 1 + Math.floor(rng() * 3) };
}

/** An operation's kind for the statistics and the triggers. */
export function kindOf(op: CrashOp, sizeBefore: number): string {
  switch (op.op) {
    case 'truncate': return op.size < sizeBefore ? 'truncate-shrink' : 'truncate-grow';
    case 'fallocate': return op.mode;
    case 'write': return op.sync ? 'write-sync' : 'write';
    case 'mapstore': return op.sync ? 'mapstore-sync' : 'mapstore';
    default: return op.op;
  }
}

/** One file as the parent tracks it through a round. */
interface FileTrack {
  /** The model: every completed operation applied. */
  exists: boolean;
  bytes: Buffer;
  /** What a crash must show: true/false, or undefined when either is possible. */
  durableExists: boolean | undefined;
  /** Per byte, 1 = durable and untouched since: must read as `bytes` after a crash. */
  guard: Uint8Array | null;
  /**
   * S6 for a truncate down or a collapse that started last on this file: it happens wholly
   * or not at all, so if the size after the crash is still `sizeBytes` (it did not happen)
   * the bytes it would have dropped or moved, guarded before it, must be intact. Any later
   * operation on the file clears it (it could change the size too).
   */
  ifUndone: { sizeBytes: number; guard: Uint8Array; bytes: Buffer } | null;
}

function resized(bytes: Buffer, sizeBytes: number): Buffer {
  if (sizeBytes === bytes.length) return bytes;
  const out = Buffer.alloc(sizeBytes);
  bytes.copy(out, 0, 0, Math.min(sizeBytes, bytes.length));
  return out;
}

export interface Stats {
  crashes: number;
  byTrigger: Record<string, number>;
  /** Kill points by the operation in flight when the kill was sent ('idle' between operations). */
  inFlight: Record<string, number>;
  /** Acknowledged bytes that did not read back as acknowledged after a crash (S6). */
  lostBytes: number;
  /** Bytes a file never wrote (another alphabet, the CANARY) read after a crash (S2). */
  staleBytes: number;
  /** Crashes after which a truncate/collapse in flight had not happened and its range was checked. */
  undoneChecked: number;
  /** The first problems found (bounded), with the round that found them. */
  problems: string[];
  replay: Record<string, number>;
  orphansFreed: number;
  opsRun: number;
  acks: number;
  guardedBytes: number;
  bytesChecked: number;
}

/** The expected outcome of an operation on the model: an error code, or null for success. */
function predict(op: CrashOp, t: FileTrack): string | null {
  if (op.op === 'create') return t.exists && op.exclusive ? 'EEXIST' : null;
  if (!t.exists) return 'ENOENT';
  if (op.op === 'fallocate' && op.mode === 'COLLAPSE_RANGE') {
    if (op.off % BLOCK_SIZE !== 0 || op.len % BLOCK_SIZE !== 0) return 'EINVAL';
    if (op.off + op.len >= t.bytes.length) return 'EINVAL';
  }
  return null;
}

function apply(op: CrashOp, t: FileTrack): void {
  switch (op.op) {
    case 'create':
      if (!t.exists) [t.exists, t.bytes] = [true, Buffer.alloc(0)];
      return;
    case 'unlink':
      [t.exists, t.bytes] = [false, Buffer.alloc(0)];
      return;
    case 'write':
      t.bytes = resized(t.bytes, Math.max(t.bytes.length, op.off + op.len));
      crashData(op.f, op.seed, op.len).copy(t.bytes, op.off);
      return;
    case 'truncate':
      t.bytes = resized(t.bytes, op.size);
      return;
    case 'mapstore':
    case 'dma':
      crashData(op.f, op.seed, op.len).copy(t.bytes, op.off);
      return;
    case 'read':
    case 'fsync':
      return;
    case 'fallocate': {
      const end = op.off + op.len;
      if (op.mode === 'ALLOCATE' || op.mode === 'ZERO_RANGE') t.bytes = resized(t.bytes, Math.max(t.bytes.length, end));
      if (op.mode === 'PUNCH_HOLE' || op.mode === 'ZERO_RANGE') t.bytes.fill(0, op.off, Math.min(end, t.bytes.length));
      if (op.mode === 'COLLAPSE_RANGE') t.bytes = Buffer.concat([t.bytes.subarray(0, op.off), t.bytes.subarray(end)]);
      return;
    }
  }
}

/** The operation may have (partly) happened: what it touches is no longer guaranteed. */
function unguard(op: CrashOp, t: FileTrack): void {
  if (op.op !== 'read') t.ifUndone = null;
  const shrinks = (op.op === 'truncate' && op.size < t.bytes.length) || (op.op === 'fallocate' && op.mode === 'COLLAPSE_RANGE' && predict(op, t) === null);
  if (shrinks && t.guard && t.durableExists === true) t.ifUndone = { sizeBytes: t.bytes.length, guard: t.guard.slice(), bytes: Buffer.from(t.bytes) };
  switch (op.op) {
    case 'create':
      if (!t.exists) t.durableExists = undefined;
      return;
    case 'unlink':
      if (t.exists) [t.durableExists, t.guard] = [undefined, null];
      return;
    case 'write':
    case 'mapstore':
    case 'dma':
      t.guard?.fill(0, op.off, op.off + op.len);
      return;
    case 'truncate':
      t.guard?.fill(0, op.size);
      return;
    case 'fallocate':
      if (op.mode === 'PUNCH_HOLE' || op.mode === 'ZERO_RANGE') t.guard?.fill(0, op.off, op.off + op.len);
      if (op.mode === 'COLLAPSE_RANGE') t.guard?.fill(0, op.off);
      return;
    default:
      return;
  }
}

/** A durable point completed: fsync guards the whole file, a sync write its range. */
function guard(op: CrashOp, t: FileTrack): void {
  if (op.op === 'fsync' || op.op === 'dma') {
    [t.durableExists, t.guard] = [true, new Uint8Array(t.bytes.length).fill(1)];
  } else if (((op.op === 'write' && op.sync) || op.op === 'mapstore') && t.guard) {
    if (t.guard.length < op.off + op.len) {
      const longer = new Uint8Array(op.off + op.len);
      longer.set(t.guard);
      t.guard = longer;
    }
    t.guard.fill(1, op.off, op.off + op.len);
  }
}

class Lane {
  readonly dir: string;
  readonly volume: string;
  readonly tracks: FileTrack[] = FILE_NAMES.map(() => ({ exists: false, bytes: Buffer.alloc(0), durableExists: false, guard: null, ifUndone: null }));
  initialFreeBlocks = 0;
  private log: string[] = [];
  private context = '';

  constructor(readonly index: number, private readonly rng: () => number, private readonly stats: Stats, private readonly seed: number) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `daxd-kill-${index}-`));
    this.volume = path.join(this.dir, 'volume');
  }

  async format(): Promise<void> {
    const storage = MmapStorage.open(this.volume, { create: { sizeBytes: VOLUME_BYTES } });
    await mkfs(storage);
    const fsys = await FileSystem.mount(storage, {});
    this.initialFreeBlocks = fsys.statVolume().blocksFree;
    await fsys.unmount();
  }

  /** One crash point: spawn, kill on the trigger, reap, verify. */
  async round(round: number): Promise<void> {
    const childSeed = Math.floor(this.rng() * 2 ** 31);
    const trigger = pickTrigger(this.rng);
    const context = `lane ${this.index} round ${round} (DAXD_CRASH_SEED=${this.seed}, child seed ${childSeed}, trigger ${JSON.stringify(trigger)})`;
    this.log = [];
    this.context = context;
    try {
      await this.runChild(childSeed, trigger);
      await this.verify(round);
    } catch (err) {
      const tail = this.log.slice(-LOG_TAIL_LINES).join('\n    ');
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`${context}: ${message}\n  volume kept at ${this.volume}\n  last lines of the child:\n    ${tail}`, { cause: err });
    }
    this.stats.crashes++;
    this.stats.byTrigger[trigger.on] = (this.stats.byTrigger[trigger.on] ?? 0) + 1;
  }

  private runChild(seed: number, trigger: Trigger): Promise<void> {
    const child = spawn(process.execPath, [CHILD_PATH, JSON.stringify({ volume: this.volume, seed })], { stdio: ['ignore', 'pipe', 'pipe'] });
    const pending = new Map<number, CrashOp>();
    const kinds = new Map<number, string>();
    const byKind = new Map<string, number>();
    let phase = 'spawn';
    let killed = false;
    let opLines = 0;
    let acks = 0;
    let partial = '';
    let stderr = '';
    let failure: Error | null = null;

    const kill = (): void => {
      // A child already reaped (it failed on its own) must not be signalled: its pid may be reused.
      if (killed || child.exitCode !== null || child.signalCode !== null) return;
      killed = true;
      const inFlight = pending.size > 0 ? kinds.get([...pending.keys()].pop()!)! : phase;
      this.stats.inFlight[inFlight] = (this.stats.inFlight[inFlight] ?? 0) + 1;
      process.kill(child.pid!, 'SIGKILL');
    };
    const fail = (err: unknown): void => {
      failure ??= err instanceof Error ? err : new Error(String(err));
      kill();
    };
    const onLine = (text: string): void => {
      this.log.push(text);
      if (this.log.length > 4 * LOG_TAIL_LINES) this.log.splice(0, this.log.length - LOG_TAIL_LINES);
      const line = JSON.parse(text) as ChildLine;
      if ('fatal' in line) throw new Error(`child failed: ${line.fatal}`);
      if ('mounting' in line) {
        phase = 'mounting';
        if (trigger.on === 'mounting') kill();
      } else if ('ready' in line) {
        phase = 'idle';
        if (trigger.on === 'ready') kill();
      } else if ('i' in line) {
        const { i, ...op } = line;
        const kind = kindOf(op as CrashOp, this.tracks[op.f].bytes.length);
        pending.set(i, op as CrashOp);
        kinds.set(i, kind);
        byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
        unguard(op as CrashOp, this.tracks[op.f]);
        opLines++;
        this.stats.opsRun++;
        if (trigger.on === 'op' && opLines >= trigger.n) kill();
        if (trigger.on === 'kind' && kind === trigger.kind && byKind.get(kind)! >= trigger.n) kill();
      } else {
        const op = pending.get(line.done);
        assert.ok(op, `done line for unknown operation ${line.done}`);
        pending.delete(line.done);
        kinds.delete(line.done);
        this.onDone(op, line.err ?? null, line.sha1);
        const durable = op.op === 'fsync' || op.op === 'dma' || op.op === 'mapstore' || (op.op === 'write' && op.sync);
        if (durable && line.err === undefined) {
          acks++;
          this.stats.acks++;
          if (trigger.on === 'ack' && acks >= trigger.n) kill();
        }
      }
    };

    return new Promise<void>((resolve, reject) => {
      const watchdog = setTimeout(() => fail(new Error(`no kill after ${ROUND_WATCHDOG_MS} ms (${opLines} ops, ${acks} acks)`)), ROUND_WATCHDOG_MS);
      // A 'kind' trigger whose kind never comes up: kill after this many operations anyway.
      const fallback = (): void => { if (trigger.on === 'kind' && opLines >= KIND_TRIGGER_OPS_MAX) kill(); };
      child.stdout.on('data', fallback);
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk: string) => {
        // After the kill, keep reading: lines already in the pipe are operations that started.
        const lines = (partial + chunk).split('\n');
        partial = lines.pop()!;
        for (const text of lines) {
          try {
            onLine(text);
          } catch (err) {
            fail(err);
          }
        }
      });
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => { stderr += chunk; });
      child.on('error', fail);
      // 'close': the process is reaped and its stdout fully read.
      child.on('close', (code, signal) => {
        clearTimeout(watchdog);
        if (failure) return reject(failure);
        if (!killed || signal !== 'SIGKILL') {
          return reject(new Error(`child ended by itself (code ${code}, signal ${signal}) before its trigger; stderr:\n${stderr}`));
        }
        // A line cut by the kill is an operation that may have started: never a durable point.
        if (partial !== '') this.log.push(`${partial} <cut by SIGKILL>`);
        resolve();
      });
    });
  }

  private onDone(op: CrashOp, err: string | null, readSha1: string | undefined): void {
    const t = this.tracks[op.f];
    const expected = predict(op, t);
    assert.equal(err, expected, `${JSON.stringify(op)}: engine says ${err ?? 'ok'}, model ${expected ?? 'ok'}`);
    if (err !== null) return;
    apply(op, t);
    if (op.op === 'read') {
      const want = t.bytes.subarray(Math.min(op.off, t.bytes.length), Math.min(op.off + op.len, t.bytes.length));
      assert.equal(readSha1, sha1(want), `${JSON.stringify(op)}: the child read other bytes than the model holds`);
    }
    guard(op, t);
  }

  /** After the kill: fsck, mount (replay), check every file, and adopt what survived as the next base. */
  private async verify(round: number): Promise<void> {
    const storage = MmapStorage.open(this.volume);
    let fsys: FileSystem | undefined;
    try {
      await assertFsckClean(storage, `on the crashed volume, before mount (round ${round})`);
      fsys = await FileSystem.mount(storage, { canaryByte: CANARY });
      const state = fsys.mountReport.replay.state;
      this.stats.replay[state] = (this.stats.replay[state] ?? 0) + 1;
      this.stats.orphansFreed += fsys.mountReport.orphansFreed;
      const names = fsys.list('', '', 100).files.map((f) => f.name).sort();
      for (const name of names) assert.ok((FILE_NAMES as readonly string[]).includes(name), `a file nobody created: ${JSON.stringify(name)}`);
      for (let f = 0; f < FILE_NAMES.length; f++) await this.checkFile(fsys, f);
      await fsys.sync();
      await assertFsckClean(storage, `after mount and sync (round ${round})`);
    } finally {
      if (fsys) await fsys.unmount();
      else storage.close();
    }
  }

  private async checkFile(fsys: FileSystem, f: number): Promise<void> {
    const t = this.tracks[f];
    const name = FILE_NAMES[f];
    let ino: number | undefined;
    try {
      ino = fsys.lookup(name).ino;
    } catch (err) {
      if (!(err instanceof DaxError && err.code === 'ENOENT')) throw err;
    }
    if (t.durableExists !== undefined) assert.equal(ino !== undefined, t.durableExists, `${name}: exists after the crash`);
    let bytes: Buffer = Buffer.alloc(0);
    if (ino !== undefined) {
      bytes = await fsys.read(ino, 0, fsys.stat(ino).sizeBytes);
      this.stats.bytesChecked += bytes.length;
      const { lo, hi } = alphabetOf(f);
      let stale = 0;
      for (let i = 0; i < bytes.length; i++) {
        const b = bytes[i];
        if (b === 0 || (b >= lo && b <= hi)) continue;
        if (stale++ > 0) continue;
        const what = b === CANARY ? 'the CANARY of freed blocks' : `byte 0x${b.toString(16)} outside its alphabet [${lo}, ${hi}]`;
        this.problem(`${name} (size ${bytes.length}) shows ${what} at ${i}: bytes it never wrote (S2)`);
      }
      this.stats.staleBytes += stale;
      if (t.durableExists === true && t.guard) this.checkGuarded(name, t.guard, t.bytes, bytes);
      const undone = t.ifUndone;
      if (undone && bytes.length === undone.sizeBytes) {
        this.stats.undoneChecked++;
        this.checkGuarded(`${name} (its last truncate/collapse did not happen: size ${bytes.length} as before it)`, undone.guard, undone.bytes, bytes);
      }
    }
    // The next round starts from what survived; a clean unmount makes all of it durable.
    this.tracks[f] = { exists: ino !== undefined, bytes, durableExists: ino !== undefined, guard: new Uint8Array(bytes.length).fill(1), ifUndone: null };
  }

  /** Compares each run of guarded bytes at once (runs found with the native indexOf). */
  private checkGuarded(name: string, g: Uint8Array, expected: Buffer, actual: Buffer): void {
    for (let start = g.indexOf(1); start >= 0; start = g.indexOf(1, start)) {
      let end = g.indexOf(0, start);
      if (end < 0) end = g.length;
      this.stats.guardedBytes += end - start;
      if (!actual.subarray(start, end).equals(expected.subarray(start, end))) {
        let lost = 0;
        let first = -1;
        for (let i = start; i < end; i++) {
          if (i < actual.length && actual[i] === expected[i]) continue;
          lost++;
          if (first < 0) first = i;
        }
        this.stats.lostBytes += lost;
        this.problem(`${name}: ${lost} acknowledged bytes lost in [${start}, ${end}), first at ${first}: `
          + `${first < actual.length ? `reads ${actual[first]}` : `beyond the size ${actual.length}`}, acknowledged as ${expected[first]} and not touched since (S6)`);
      }
      start = end;
    }
  }

  private problem(message: string): void {
    if (this.stats.problems.length < PROBLEMS_KEPT_MAX) this.stats.problems.push(`${this.context}: ${message}\n  volume ${this.volume}`);
  }

  /** End of the lane: delete everything; no block may stay allocated. */
  async finish(): Promise<void> {
    const storage = MmapStorage.open(this.volume);
    const fsys = await FileSystem.mount(storage, {});
    for (const info of fsys.list('', '', 100).files) await fsys.unlink(info.name);
    await fsys.sync();
    assert.equal(fsys.statVolume().blocksFree, this.initialFreeBlocks, `lane ${this.index}: blocks leaked after unlinking every file`);
    await assertFsckClean(storage, `lane ${this.index} after unlinking every file`);
    await fsys.unmount();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface CampaignOptions {
  points: number;
  lanes: number;
  seed: number;
  /** Called after each round (progress output). */
  onRound?: (stats: Stats) => void;
}

/** Runs `points` kill rounds over `lanes` volumes in parallel; returns what it saw. */
export async function runKillCampaign(opts: CampaignOptions): Promise<Stats> {
  assert.ok(fs.existsSync(CHILD_PATH), `${CHILD_PATH} is not built`);
  await loadFsck();
  const stats: Stats = {
    crashes: 0, byTrigger: {}, inFlight: {}, lostBytes: 0, staleBytes: 0, problems: [], undoneChecked: 0,
    replay: {}, orphansFreed: 0, opsRun: 0, acks: 0, guardedBytes: 0, bytesChecked: 0,
  };
  const lanesN = Math.max(1, Math.min(opts.points, opts.lanes));
  const rng = seededRng(opts.seed);
  const lanes = Array.from({ length: lanesN }, (_, i) => new Lane(i, seededRng(Math.floor(rng() * 2 ** 31)), stats, opts.seed));
  let failed = false;
  await Promise.all(lanes.map(async (lane) => {
    try {
      await lane.format();
      const rounds = Math.floor(opts.points / lanesN) + (lane.index < opts.points % lanesN ? 1 : 0);
      // A failed lane stops the others at their next round (no children left running).
      for (let r = 0; r < rounds && !failed; r++) {
        await lane.round(r);
        opts.onRound?.(stats);
      }
      if (!failed) await lane.finish();
    } catch (err) {
      failed = true;
      throw err;
    }
  }));
  return stats;
}

export function formatStats(seed: number, stats: Stats): string {
  return `seed ${seed}: ${stats.crashes} kills ${JSON.stringify(stats.byTrigger)}\n`
    + `kill points by operation in flight: ${JSON.stringify(stats.inFlight)}\n`
    + `${stats.opsRun} ops, ${stats.acks} acknowledgements (fsync, sync write, msync, DMA+fsync), `
    + `mount replay ${JSON.stringify(stats.replay)}, ${stats.orphansFreed} orphans freed\n`
    + `${stats.guardedBytes} acknowledged bytes verified (${stats.undoneChecked} files whose truncate/collapse had not happened), `
    + `${stats.bytesChecked} bytes scanned; lost ${stats.lostBytes}, stale ${stats.staleBytes}`;
}
