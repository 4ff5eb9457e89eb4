/**
 * The node's view of the cluster: every live node record and every placement, loaded
 * with a range read of PREFIX/ at one revision (paged: etcd.ts readPrefix) and kept current by one etcd watch from
 * the revision after it.
 *
 * A lost watch is never resumed where etcd3 would resume it: etcd3 moves a watcher's
 * start revision to the store's revision when it (re)connects, so a second drop before
 * the catch-up skips events, and a resume at a compacted revision is cancelled by etcd
 * ('error'), after which etcd3 drops the watcher for good. Instead, whenever the watch
 * disconnects or errs, the cache drops that watcher and resyncs: a fresh snapshot at a
 * known revision, its differences from the cache applied as ordinary events (NODE_DOWN,
 * REMOVED, NODE_UP, PLACED: Watch subscribers and routing see them), then a new watch
 * from the snapshot's revision + 1. A failed resync is retried with a backoff doubling
 * from WATCH_RESYNC_BACKOFF_MIN_MS to WATCH_RESYNC_BACKOFF_MAX_MS, until it succeeds or
 * the cache stops (the cache must come back however long etcd was away; each attempt is
 * bounded by ETCD_CALL_MS). Invariant: events of a watcher that is not the current one
 * are ignored, so nothing older than the last snapshot is ever applied over it.
 *
 * The view is eventually consistent: it lags etcd by a watch round trip (by the outage,
 * plus at most one backoff, after a lost connection). Decisions that must not race
 * (placing a name, removing a placement) are etcd transactions (placement.ts); the view
 * only answers reads (Locate, Members, Watch, routing of reads) and proposes where a new
 * name goes.
 */
import { EventEmitter } from 'node:events';
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import { readPrefix } from './etcd';
import { parseNodeRecord, parsePlacementRecord, type ClusterKeys, type NodeRecord, type PlacementRecord } from './keys';
import { ETCD_CALL_MS } from './limits';

/** The first wait before a resync after a lost watch; doubled per failed attempt up to the max. */
const WATCH_RESYNC_BACKOFF_MIN_MS = 250;
const WATCH_RESYNC_BACKOFF_MAX_MS = 5_000;

export type CacheEvent =
  | { kind: 'NODE_UP'; node: NodeRecord }
  | { kind: 'NODE_DOWN'; name: string }
  | { kind: 'PLACED'; name: string; placement: PlacementRecord }
  | { kind: 'REMOVED'; name: string };

export class WatchCache extends EventEmitter<{ change: [CacheEvent] }> {
  readonly nodes = new Map<string, NodeRecord>();
  readonly files = new Map<string, PlacementRecord>();
  /** Files per node name (placements), kept with `files`. */
  readonly filesPerNode = new Map<string, number>();
  /** The current watcher: the only one whose events are applied. */
  private watcher: Watcher | null = null;
  private stopped = false;
  private resyncTimer: NodeJS.Timeout | null = null;
  /** Failed or lost attempts since the watch last connected (the backoff's exponent). */
  private attempts = 0;
  /** Resyncs done after a lost watch (tests, logs). */
  resyncs = 0;

  private constructor(private readonly etcd: Etcd3, private readonly keys: ClusterKeys, private readonly log: Logger) {
    super();
    this.setMaxListeners(0); // one per Watch stream; those are bounded by the server's streams
  }

  /** Loads the snapshot and starts the watch; throws (the node's start fails) when etcd does not answer. */
  static async start(etcd: Etcd3, keys: ClusterKeys, log: Logger): Promise<WatchCache> {
    const cache = new WatchCache(etcd, keys, log);
    await cache.sync();
    return cache;
  }

  /** A snapshot at one revision, its differences applied as events, and a new watch from the revision after it. */
  private async sync(): Promise<void> {
    const snapshot = await readPrefix(this.etcd, `${this.keys.prefix}/`);
    if (this.stopped) return;
    this.reload(snapshot.kvs);
    this.watchFrom((BigInt(snapshot.revision) + 1n).toString());
  }

  private watchFrom(revision: string): void {
    const watcher = this.etcd.watch().prefix(`${this.keys.prefix}/`).startRevision(revision).watcher();
    this.watcher = watcher;
    watcher.on('put', (kv) => { if (this.watcher === watcher) this.apply('put', kv); });
    watcher.on('delete', (kv) => { if (this.watcher === watcher) this.apply('delete', kv); });
    watcher.on('connected', () => { if (this.watcher === watcher) this.attempts = 0; });
    // etcd3 would reconnect it itself, from a revision it may have moved past events: dropped instead.
    watcher.on('disconnected', (err) => this.lost(watcher, `disconnected: ${err.message}`, true));
    // Cancelled by etcd (a compacted revision, ...): etcd3 has dropped it already.
    watcher.on('error', (err) => this.lost(watcher, err.message, false));
  }

  private lost(watcher: Watcher, why: string, detach: boolean): void {
    if (this.watcher !== watcher) return;
    this.watcher = null;
    if (detach) void watcher.cancel().catch(() => undefined); // not connected: etcd3 only forgets it
    this.log.warn({ why }, 'cluster: etcd watch lost: reloading the cache from a fresh snapshot');
    this.scheduleResync();
  }

  private scheduleResync(): void {
    if (this.stopped || this.resyncTimer !== null) return;
    const delayMs = Math.min(WATCH_RESYNC_BACKOFF_MAX_MS, WATCH_RESYNC_BACKOFF_MIN_MS * 2 ** Math.min(this.attempts, 16));
    this.attempts++;
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = null;
      void this.resync();
    }, delayMs);
    this.resyncTimer.unref();
  }

  private async resync(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.sync();
      if (this.stopped) return;
      this.resyncs++;
      this.log.info({ nodes: this.nodes.size, files: this.files.size }, 'cluster: watch cache reloaded from etcd');
    } catch (err) {
      if (this.stopped) return; // etcd closed under it: nothing to retry
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'cluster: reloading the watch cache failed (retrying)');
      this.scheduleResync();
    }
  }

  /**
   * Brings the maps to a snapshot's state through apply(), so every difference is an
   * ordinary event: keys not in the snapshot are deletions, changed records puts.
   */
  private reload(kvs: readonly IKeyValue[]): void {
    const { nodes, files } = this.keys;
    const seenNodes = new Set<string>();
    const seenFiles = new Set<string>();
    for (const kv of kvs) {
      const key = kv.key.toString('utf8');
      if (key.startsWith(nodes)) {
        const name = key.slice(nodes.length);
        seenNodes.add(name);
        const before = this.nodes.get(name);
        if (before !== undefined && JSON.stringify(before) === JSON.stringify(parseNodeRecord(kv.value.toString('utf8')))) continue;
      } else if (key.startsWith(files)) {
        const name = key.slice(files.length);
        seenFiles.add(name);
        const before = this.files.get(name);
        if (before !== undefined && JSON.stringify(before) === JSON.stringify(parsePlacementRecord(kv.value.toString('utf8')))) continue;
      } else {
        continue;
      }
      this.apply('put', kv);
    }
    // apply() reads only the key of a deletion.
    const deletion = (key: string): IKeyValue => ({ key: Buffer.from(key, 'utf8') }) as IKeyValue;
    for (const name of [...this.nodes.keys()]) if (!seenNodes.has(name)) this.apply('delete', deletion(this.keys.node(name)));
    for (const name of [...this.files.keys()]) if (!seenFiles.has(name)) this.apply('delete', deletion(this.keys.file(name)));
  }

  /** Cancels the watch; bounded by `withinMs` (a frozen etcd never answers the cancel). */
  async stop(withinMs = ETCD_CALL_MS): Promise<void> {
    this.stopped = true;
    if (this.resyncTimer !== null) clearTimeout(this.resyncTimer);
    this.resyncTimer = null;
    const watcher = this.watcher;
    this.watcher = null;
    this.removeAllListeners();
    if (watcher === null) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      watcher.cancel().catch(() => undefined),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, withinMs); }),
    ]);
    clearTimeout(timer);
  }

  private countFile(node: string, delta: number): void {
    const n = (this.filesPerNode.get(node) ?? 0) + delta;
    if (n <= 0) this.filesPerNode.delete(node);
    else this.filesPerNode.set(node, n);
  }

  private apply(op: 'put' | 'delete', kv: IKeyValue): void {
    const key = kv.key.toString('utf8');
    const { nodes, files } = this.keys;
    if (key.startsWith(nodes)) {
      const name = key.slice(nodes.length);
      if (op === 'delete') {
        if (this.nodes.delete(name)) this.emit('change', { kind: 'NODE_DOWN', name });
        return;
      }
      const record = parseNodeRecord(kv.value.toString('utf8'));
      if (record === null || record.name !== name) {
        this.log.warn({ key }, 'cluster: ignored a foreign node record');
        return;
      }
      this.nodes.set(name, record);
      this.emit('change', { kind: 'NODE_UP', node: record });
    } else if (key.startsWith(files)) {
      const name = key.slice(files.length);
      const before = this.files.get(name);
      if (op === 'delete') {
        if (before === undefined) return;
        this.files.delete(name);
        this.countFile(before.node, -1);
        this.emit('change', { kind: 'REMOVED', name });
        return;
      }
      const placement = parsePlacementRecord(kv.value.toString('utf8'));
      if (placement === null) {
        this.log.warn({ key: key.slice(0, 300) }, 'cluster: ignored a foreign placement record');
        return;
      }
      if (before !== undefined) this.countFile(before.node, -1);
      this.files.set(name, placement);
      this.countFile(placement.node, 1);
      this.emit('change', { kind: 'PLACED', name, placement });
    }
  }
}
