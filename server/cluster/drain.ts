/**
 * Drain (Cluster.Drain; docs/CLUSTER.md "Drain"): moves every file off this node S, one
 * at a time, to T = rendezvous over the live nodes that are not draining, T != S. S
 * drives; it is a gRPC client of T (peer.ts), with the Drain caller's credentials and
 * the marker metadata `daxd-drain-source: S`, which lets T create and write a name whose
 * placement says `{S, moving: T}` (cluster-routing.ts).
 *
 * Per file NAME (inode ino on S):
 *   a. intent: txn files/NAME == {S, ino} -> {S, ino, moving: T}.
 *   b. copy to T, sparse-aware: only WRITTEN extents (FileSystem.mapRange), then the size;
 *      T's copy is truncated to 0 first (a rerun after a crash overwrites a partial copy).
 *   c. block: the file's mutating calls and calls by its name wait (drain-gate.ts).
 *   d. hold (FileSystem.moveOut): inode lock, then a layout break of the whole file under
 *      the drain's layout_break (reason MOVED: every PTE revoked, mappers told MOVED; WAIT
 *      waits for the pins to drop, RECALL sends PinRecall and revokes at the grace's end;
 *      no new fault or pin meanwhile).
 *   e. catch-up: when the file may have changed since (b) began (its inode changed, or it
 *      was mapped or pinned when (b) began, or a fault or pin on any file made an address
 *      space meanwhile), copied again
 *      under the hold; then T's copy is fsynced. T's bytes equal S's at the switch.
 *   f. switch: txn files/NAME == {S, ino, moving: T} -> {T, ino', from: {S, ino}}.
 *   g. the waiting calls are told NOT_OWNER(T) (mappers got Invalidate MOVED in d).
 *   h. the name is removed under the same hold (blocks under DMA stay allocated until the
 *      pin goes, as for unlink), the journal committed, then txn drops `from`.
 * Any failure before (f) abandons the file: the placement goes back to {S, ino}, T's copy
 * is removed (best effort), the file counts failed and the drain goes on.
 *
 * Crashes (reconcile.ts repairs at the next start; a rerun of the drain finishes):
 *   - before f: {S, ino, moving: T}: S's reconcile puts {S, ino} back; T's reconcile
 *     removes its local copy of a name placed `{S, moving: T}` (an orphan copy).
 *   - after f, before h's txn: S's reconcile removes its local file whose placement says
 *     {T, from: {S, its ino}}, commits, then drops `from`.
 * At every point exactly one copy is registered, and it is readable.
 */
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { BLOCK_SIZE } from '../limits';
import { entryState, STATE_WRITTEN } from '../fs/block-map';
import type { FileInfo, LayoutBreakOptions, ListPage } from '../fs/types';
import { DaxError, TimedOutError } from '../errors';
import { LIST_PAGE_ENTRIES_MAX } from '../rpc/limits';
import type { DrainGate } from './drain-gate';
import { parsePlacementRecord, placementJson, type ClusterKeys, type DrainProgress, type NodeRecord, type PlacementRecord } from './keys';
import { DRAIN_COPY_CHUNK_BYTES, DRAIN_PROGRESS_BYTES, DRAIN_SWITCH_WAIT_MS } from './limits';
import type { DrainPeer } from './peer';
import { rendezvous } from './rendezvous';
import type { WatchCache } from './watch-cache';

/** What the drain needs of the file layer (FileSystem). */
export interface DrainFs {
  list(prefix: string, pageToken: string, pageSize: number): ListPage;
  stat(ino: number): FileInfo;
  read(ino: number, offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  mapRange(ino: number, first: number, count: number): Uint32Array;
  changeCount(ino: number): number;
  moveOut(name: string, ino: number, opts: LayoutBreakOptions, switched: () => Promise<boolean>): Promise<boolean>;
  unlink(name: string): Promise<void>;
  commit(): Promise<void>;
}

/** What the drain needs of the dax layer (Dax). */
export interface DrainDax {
  mappingEpoch(ino: number): { mapped: boolean; created: number };
}

export interface DrainDeps {
  etcd: Etcd3;
  keys: ClusterKeys;
  cache: WatchCache;
  self: string;
  fs: DrainFs;
  dax: DrainDax;
  gate: DrainGate;
  log: Logger;
  /** A client of node `node` at `address` carrying the caller's metadata (peer.ts). */
  peer: (node: string, address: string) => DrainPeer;
  /** Publishes the progress in this node's record (null: the drain ended). */
  publish: (progress: DrainProgress | null) => Promise<void>;
  /** Checks fencing before each etcd change (FencedError). */
  assertMayMutate: () => void;
  /** Tests (DAXD_TEST_DRAIN_PAUSE): where a child process pauses so the test can kill -9 it. */
  pause?: (where: 'after-files' | 'after-switch', files: number) => Promise<void>;
}

export interface DrainCounters {
  moved: number;
  failed: number;
  bytes: number;
}

/** Pages of the block map looked at per mapRange call. */
const MAP_PAGES_PER_CALL = 1024;

/** The WRITTEN runs of pages of a file, as [firstPage, pageCount]. */
export function writtenRuns(fs: DrainFs, ino: number, sizeBytes: number): Array<[number, number]> {
  const pages = Math.ceil(sizeBytes / BLOCK_SIZE);
  const runs: Array<[number, number]> = [];
  for (let first = 0; first < pages; first += MAP_PAGES_PER_CALL) {
    const count = Math.min(MAP_PAGES_PER_CALL, pages - first);
    const map = fs.mapRange(ino, first, count);
    for (let i = 0; i < count; i++) {
      if (entryState(map[i]) !== STATE_WRITTEN) continue;
      const last = runs[runs.length - 1];
      if (last !== undefined && last[0] + last[1] === first + i) last[1]++;
      else runs.push([first + i, 1]);
    }
  }
  return runs;
}

/** The bytes a copy of the file sends (its WRITTEN pages, clamped to its size). */
function runBytes(runs: Array<[number, number]>, sizeBytes: number): number {
  let n = 0;
  for (const [first, count] of runs) n += Math.max(0, Math.min((first + count) * BLOCK_SIZE, sizeBytes) - first * BLOCK_SIZE);
  return n;
}

export class Drainer {
  readonly progress: DrainProgress = { filesTotal: 0, filesMoved: 0, filesFailed: 0, bytesTotal: 0, bytesCopied: 0, current: '', currentTarget: '' };
  private lastReportedBytes = 0;
  /** One client per target node for the whole drain (closed when it ends). */
  private readonly peers = new Map<string, DrainPeer>();

  constructor(
    private readonly deps: DrainDeps,
    private readonly opts: LayoutBreakOptions,
    private readonly counters: DrainCounters,
    /** Called per file done and per DRAIN_PROGRESS_BYTES copied (the stream's messages). */
    private readonly onProgress: (p: DrainProgress) => void,
  ) {}

  /** The live nodes a file may go to: not this one, not draining. */
  targets(): NodeRecord[] {
    return [...this.deps.cache.nodes.values()].filter((n) => n.name !== this.deps.self && n.drain === undefined);
  }

  private target(name: string): NodeRecord | null {
    const candidates = this.targets();
    const chosen = rendezvous(candidates.map((n) => ({ name: n.name, weight: n.free })), name);
    return candidates.find((n) => n.name === chosen) ?? null;
  }

  /** Every local file, then each moved; resolves with the final progress. */
  async run(signal: AbortSignal): Promise<DrainProgress> {
    try {
      return await this.runFiles(signal);
    } finally {
      for (const peer of this.peers.values()) peer.close();
      this.peers.clear();
    }
  }

  private peer(target: NodeRecord): DrainPeer {
    const key = `${target.name}\0${target.grpc}`;
    let peer = this.peers.get(key);
    if (peer === undefined) this.peers.set(key, (peer = this.deps.peer(target.name, target.grpc)));
    return peer;
  }

  private async runFiles(signal: AbortSignal): Promise<DrainProgress> {
    const { fs, log } = this.deps;
    const files: FileInfo[] = [];
    for (let token = ''; ;) {
      const page = fs.list('', token, LIST_PAGE_ENTRIES_MAX);
      files.push(...page.files);
      token = page.nextPageToken;
      if (token === '') break;
    }
    const p = this.progress;
    p.filesTotal = files.length;
    for (const f of files) p.bytesTotal += runBytes(writtenRuns(fs, f.ino, f.sizeBytes), f.sizeBytes);
    await this.deps.publish({ ...p });
    for (const f of files) {
      if (signal.aborted) break;
      const target = this.target(f.name);
      if (target === null) {
        p.filesFailed++;
        this.counters.failed++;
        log.warn({ name: f.name }, 'cluster: drain: no live node to move the file to');
        continue;
      }
      p.current = f.name;
      p.currentTarget = target.name;
      this.report(true);
      await this.deps.publish({ ...p });
      const before = p.bytesCopied;
      try {
        const moved = await this.moveFile(f.name, f.ino, target, signal);
        if (moved) {
          p.filesMoved++;
          this.counters.moved++;
        } else {
          p.filesTotal--; // unlinked or re-placed meanwhile: nothing to move
        }
      } catch (err) {
        p.filesFailed++;
        this.counters.failed++;
        log.warn({ name: f.name, target: target.name, err: err instanceof Error ? err.message : String(err) }, 'cluster: drain: file not moved (left here)');
      }
      p.bytesCopied = Math.max(before, Math.min(p.bytesTotal, p.bytesCopied));
      p.current = p.currentTarget = '';
      this.report(true);
      await this.deps.publish({ ...p });
      await this.deps.pause?.('after-files', p.filesMoved);
    }
    return { ...p };
  }

  private report(always: boolean): void {
    if (!always && this.progress.bytesCopied - this.lastReportedBytes < DRAIN_PROGRESS_BYTES) return;
    this.lastReportedBytes = this.progress.bytesCopied;
    this.onProgress({ ...this.progress });
  }

  /** One file: true when moved, false when it went away (unlinked, re-placed) meanwhile. */
  private async moveFile(name: string, ino: number, target: NodeRecord, signal: AbortSignal): Promise<boolean> {
    const { etcd, keys, self, fs, dax, gate } = this.deps;
    const key = keys.file(name);
    const original: PlacementRecord = { node: self, ino };
    const moving: PlacementRecord = { node: self, ino, moving: target.name };
    // a. intent (a key left {S, ino, moving: X} by an abandoned attempt is taken over).
    this.deps.assertMayMutate();
    const current = await etcd.get(key).string();
    const placed = current === null ? null : parsePlacementRecord(current);
    if (current === null || placed === null || placed.node !== self || placed.ino !== ino) return false; // unlinked, re-placed meanwhile
    if (placed.from !== undefined) {
      // Moved here by an earlier drain whose source has not removed its copy yet (that node is down): moving it on would orphan that copy.
      throw new Error(`the copy this file was moved from (node ${placed.from.node}) is not removed yet: drain again once that node is back`);
    }
    const intent = await etcd.if(key, 'Value', '==', current).then(etcd.put(key).value(placementJson(moving))).commit();
    if (!intent.succeeded) return false;
    const peer = this.peer(target);
    let copyIno = 0;
    let switchedTo: PlacementRecord | null = null;
    try {
      // b. copy.
      const epoch = dax.mappingEpoch(ino);
      const changes = fs.changeCount(ino);
      copyIno = await peer.create(name);
      await this.copy(peer, ino, copyIno, true, signal);
      // c. block, then d. hold (the gate first, synchronously: drain-gate.ts's invariant).
      gate.block(name, ino);
      const hold = holdSignal(signal, DRAIN_SWITCH_WAIT_MS);
      try {
        const removed = await fs.moveOut(name, ino, { ...this.opts, signal: hold.signal }, async () => {
          // e. catch-up.
          // (Its own layout break made the file's address space: `mapped` says nothing now.)
          if (epoch.mapped || dax.mappingEpoch(ino).created !== epoch.created || fs.changeCount(ino) !== changes) {
            await this.copy(peer, ino, copyIno, false, hold.signal);
          }
          await peer.fsync(copyIno);
          // f. switch.
          this.deps.assertMayMutate();
          const next: PlacementRecord = { node: target.name, ino: copyIno, from: { node: self, ino } };
          const r = await etcd.if(key, 'Value', '==', placementJson(moving)).then(etcd.put(key).value(placementJson(next))).commit();
          if (!r.succeeded) return false;
          // The waiting calls are woken only once the name is gone (the finally below): woken
          // now, they would find the inode still linked and write to the doomed source.
          switchedTo = next;
          return true;
        });
        if (!removed && switchedTo === null) throw new Error('the placement changed during the switch');
      } finally {
        hold.dispose();
        // g. (or the abandon): the waiting calls go on, redirected when moved.
        gate.unblock(name, ino, switchedTo === null ? null : { node: target.name, grpc: target.grpc });
      }
      await this.deps.pause?.('after-switch', this.progress.filesMoved + 1);
      await this.finishMove(name, key, switchedTo!);
      return true;
    } catch (err) {
      if (switchedTo !== null) throw err; // not reached: finishMove does not throw
      // Abandoned before the switch: the placement goes back, then T's copy goes. Only
      // then: a switch whose answer was lost (etcd) would otherwise lose both copies.
      const reset = await etcd.if(key, 'Value', '==', placementJson(moving)).then(etcd.put(key).value(placementJson(original))).commit().catch(() => null);
      if (reset?.succeeded !== true) {
        const now = await etcd.get(key).string().catch(() => undefined);
        const after = now === undefined || now === null ? null : parsePlacementRecord(now);
        if (after !== null && after.node === target.name && after.ino === copyIno && after.from?.node === self && after.from.ino === ino) {
          // The switch committed after all: finish the move (the source's name goes here).
          this.deps.log.warn({ name, target: target.name }, 'cluster: drain: the switch committed although its answer was lost: finishing the move');
          await fs.unlink(name).catch(() => undefined);
          await this.finishMove(name, key, after);
          return true;
        }
        if (now === undefined) throw err; // placement unknown (etcd unreachable): T's copy is kept (T's reconcile or a rerun deals with it)
      }
      if (copyIno !== 0) await peer.unlink(name).catch(() => undefined);
      if (err instanceof DaxError && err.code === 'ENOENT') return false; // unlinked meanwhile
      throw err;
    }
  }

  /** h. after the switch: the source's removal made durable, then `from` dropped. A failure leaves `from` to the reconcile pass or a rerun (the file is moved either way). */
  private async finishMove(name: string, key: string, moved: PlacementRecord): Promise<void> {
    try {
      await this.deps.fs.commit();
      await dropFrom(this.deps.etcd, key, moved);
    } catch (err) {
      this.deps.log.warn({ name, err: err instanceof Error ? err.message : String(err) }, 'cluster: drain: moved, but `from` could not be dropped yet (the reconcile pass will)');
    }
  }

  /** Copies the WRITTEN extents of `ino` to the peer's `copyIno` (truncated to 0 first), then the size. */
  private async copy(peer: DrainPeer, ino: number, copyIno: number, counted: boolean, signal: AbortSignal): Promise<void> {
    const { fs } = this.deps;
    await peer.truncate(copyIno, 0);
    const size = fs.stat(ino).sizeBytes;
    for (const [first, count] of writtenRuns(fs, ino, size)) {
      const end = Math.min((first + count) * BLOCK_SIZE, size);
      for (let at = first * BLOCK_SIZE; at < end; at += DRAIN_COPY_CHUNK_BYTES) {
        if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new TimedOutError('the drain was cancelled');
        const data = await fs.read(ino, at, Math.min(DRAIN_COPY_CHUNK_BYTES, end - at));
        await peer.write(copyIno, at, data);
        this.counters.bytes += data.length;
        if (counted) {
          this.progress.bytesCopied += data.length;
          this.report(false);
        }
      }
    }
    await peer.truncate(copyIno, size);
  }
}

/** Step h's txn: `from` goes once the source's copy is gone. */
export async function dropFrom(etcd: Etcd3, key: string, moved: PlacementRecord): Promise<boolean> {
  const { from: _from, ...rest } = moved;
  const r = await etcd.if(key, 'Value', '==', placementJson(moved)).then(etcd.put(key).value(placementJson(rest))).commit();
  return r.succeeded;
}

/** The drain's signal, plus a timer: a switch waits for pins at most `ms` (then ETIMEDOUT, file abandoned). */
function holdSignal(outer: AbortSignal, ms: number): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onAbort = () => controller.abort(outer.reason);
  outer.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => controller.abort(new TimedOutError(`the switch waited DRAIN_SWITCH_WAIT_MS (${ms} ms) for the file's pins`)), ms);
  timer.unref();
  return {
    signal: controller.signal,
    dispose: () => {
      clearTimeout(timer);
      outer.removeEventListener('abort', onAbort);
    },
  };
}
