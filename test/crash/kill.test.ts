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
 * Knobs: DAXD_CRASH_POINTS (default 200 crash points), DAXD_CRASH_LANES (volumes crashed in
 * parallel, default 2), DAXD_CRASH_SEED (replays the workloads and the crash triggers; the
 * exact instant a SIGKILL lands is the scheduler's).
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
const CRASH_POINTS = Number(process.env.DAXD_CRASH_POINTS ?? '200');
const LANES = Math.max(1, Math.min(CRASH_POINTS, Number(process.env.DAXD_CRASH_LANES ?? '2')));
const SEED = Number(process.env.DAXD_CRASH_SEED ?? String(Math.floor(Math.random() * 2 ** 31)));
/** A round that neither reaches its trigger nor dies in this long is a hang: fail. */
const ROUND_WATCHDOG_MS = 60_000;
/** Log lines kept for a failure report. */
const LOG_TAIL_LINES = 40;

/** When the parent kills: on a line kind, after the n-th such line. */
type Trigger =
  | { on: 'mounting' }
  | { on: 'ready' }
  | { on: 'op'; n: number }
  | { on: 'ack'; n: number };

function pickTrigger(rng: () => number): Trigger {
  const r = rng();
  if (r < 0.04) return { on: 'mounting' };
  if (r < 0.1) return { on: 'ready' };
  if (r < 0.55) return { on: 'op', n: 1 + Math.floor(rng() * 60) };
  return { on: 'ack', n: 1 + Math.floor(rng() * 10) };
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
}

function resized(bytes: Buffer, sizeBytes: number): Buffer {
  if (sizeBytes === bytes.length) return bytes;
  const out = Buffer.alloc(sizeBytes);
  bytes.copy(out, 0, 0, Math.min(sizeBytes, bytes.length));
  return out;
}

interface Stats {
  crashes: number;
  byTrigger: Record<string, number>;
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
  switch (op.op) {
    case 'create':
      if (!t.exists) t.durableExists = undefined;
      return;
    case 'unlink':
      if (t.exists) [t.durableExists, t.guard] = [undefined, null];
      return;
    case 'write':
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
  if (op.op === 'fsync') {
    [t.durableExists, t.guard] = [true, new Uint8Array(t.bytes.length).fill(1)];
  } else if (op.op === 'write' && op.sync && t.guard) {
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
  readonly tracks: FileTrack[] = FILE_NAMES.map(() => ({ exists: false, bytes: Buffer.alloc(0), durableExists: false, guard: null }));
  initialFreeBlocks = 0;
  private log: string[] = [];

  constructor(readonly index: number, private readonly rng: () => number, private readonly stats: Stats) {
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
    const context = `lane ${this.index} round ${round} (DAXD_CRASH_SEED=${SEED}, child seed ${childSeed}, trigger ${JSON.stringify(trigger)})`;
    this.log = [];
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
        if (trigger.on === 'mounting') kill();
      } else if ('ready' in line) {
        if (trigger.on === 'ready') kill();
      } else if ('i' in line) {
        const { i, ...op } = line;
        pending.set(i, op as CrashOp);
        unguard(op as CrashOp, this.tracks[op.f]);
        opLines++;
        this.stats.opsRun++;
        if (trigger.on === 'op' && opLines >= trigger.n) kill();
      } else {
        const op = pending.get(line.done);
        assert.ok(op, `done line for unknown operation ${line.done}`);
        pending.delete(line.done);
        this.onDone(op, line.err ?? null, line.sha1);
        if (op.op === 'fsync' && line.err === undefined) {
          acks++;
          this.stats.acks++;
          if (trigger.on === 'ack' && acks >= trigger.n) kill();
        }
      }
    };

    return new Promise<void>((resolve, reject) => {
      const watchdog = setTimeout(() => fail(new Error(`no kill after ${ROUND_WATCHDOG_MS} ms (${opLines} ops, ${acks} acks)`)), ROUND_WATCHDOG_MS);
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
      for (let i = 0; i < bytes.length; i++) {
        const b = bytes[i];
        if (b === 0 || (b >= lo && b <= hi)) continue;
        const what = b === CANARY ? 'the CANARY of freed blocks' : `byte 0x${b.toString(16)} outside its alphabet [${lo}, ${hi}]`;
        assert.fail(`${name} (size ${bytes.length}) shows ${what} at ${i}: bytes it never wrote (S2)`);
      }
      if (t.durableExists === true && t.guard) this.checkGuarded(name, t, bytes);
    }
    // The next round starts from what survived; a clean unmount makes all of it durable.
    this.tracks[f] = { exists: ino !== undefined, bytes, durableExists: ino !== undefined, guard: new Uint8Array(bytes.length).fill(1) };
  }

  /** Compares each run of guarded bytes at once (runs found with the native indexOf). */
  private checkGuarded(name: string, t: FileTrack, actual: Buffer): void {
    const g = t.guard!;
    for (let start = g.indexOf(1); start >= 0; start = g.indexOf(1, start)) {
      let end = g.indexOf(0, start);
      if (end < 0) end = g.length;
      this.stats.guardedBytes += end - start;
      if (end > actual.length) assert.fail(`${name}: size ${actual.length} after the crash, but byte ${end - 1} was acknowledged by fsync`);
      if (!actual.subarray(start, end).equals(t.bytes.subarray(start, end))) {
        let i = start;
        while (actual[i] === t.bytes[i]) i++;
        assert.fail(`${name}: byte ${i} is ${actual[i]} after the crash, acknowledged as ${t.bytes[i]} by its last fsync and not touched since (S6)`);
      }
      start = end;
    }
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

describe('crash: SIGKILL of a process writing a real volume file', function () {
  this.timeout(Math.max(300_000, CRASH_POINTS * 3_000));

  it(`${CRASH_POINTS} crash points: replay, fsck clean, fsynced bytes intact, no stale or canary bytes`, async () => {
    assert.ok(fs.existsSync(CHILD_PATH), `${CHILD_PATH} is not built`);
    await loadFsck();
    const stats: Stats = { crashes: 0, byTrigger: {}, replay: {}, orphansFreed: 0, opsRun: 0, acks: 0, guardedBytes: 0, bytesChecked: 0 };
    const rng = seededRng(SEED);
    const lanes = Array.from({ length: LANES }, (_, i) => new Lane(i, seededRng(Math.floor(rng() * 2 ** 31)), stats));
    let failed = false;
    await Promise.all(lanes.map(async (lane) => {
      try {
        await lane.format();
        const rounds = Math.floor(CRASH_POINTS / LANES) + (lane.index < CRASH_POINTS % LANES ? 1 : 0);
        // A failed lane stops the others at their next round (no children left running).
        for (let r = 0; r < rounds && !failed; r++) await lane.round(r);
        if (!failed) await lane.finish();
      } catch (err) {
        failed = true;
        throw err;
      }
    }));
    assert.equal(stats.crashes, CRASH_POINTS);
    assert.ok(stats.acks > 0 && stats.guardedBytes > 0, 'no fsync was acknowledged before a crash: nothing was checked');
    process.stdout.write(`      seed ${SEED}: ${stats.crashes} kills ${JSON.stringify(stats.byTrigger)}, ${stats.opsRun} ops, ${stats.acks} fsync acks, `
      + `mount replay ${JSON.stringify(stats.replay)}, ${stats.orphansFreed} orphans freed, `
      + `${stats.guardedBytes} acknowledged bytes verified, ${stats.bytesChecked} bytes scanned for stale data\n`);
  });
});
