/**
 * The node's view of the cluster: every live node record and every placement, loaded
 * with one range read of PREFIX/ and kept current by one etcd watch from the revision
 * after it (etcd3 reconnects the watch and resumes from the last revision it saw).
 *
 * The view is eventually consistent: it lags etcd by a watch round trip. Decisions that
 * must not race (placing a name, removing a placement) are etcd transactions
 * (placement.ts); the view only answers reads (Locate, Members, Watch, routing of reads)
 * and proposes where a new name goes.
 */
import { EventEmitter } from 'node:events';
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import { ETCD_CALL_MS } from './limits';
import { parseNodeRecord, parsePlacementRecord, type ClusterKeys, type NodeRecord, type PlacementRecord } from './keys';

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
  private watcher: Watcher | null = null;

  private constructor(private readonly keys: ClusterKeys, private readonly log: Logger) {
    super();
    this.setMaxListeners(0); // one per Watch stream; those are bounded by the server's streams
  }

  static async start(etcd: Etcd3, keys: ClusterKeys, log: Logger): Promise<WatchCache> {
    const cache = new WatchCache(keys, log);
    const snapshot = await etcd.getAll().prefix(`${keys.prefix}/`).exec();
    for (const kv of snapshot.kvs) cache.apply('put', kv);
    const next = (BigInt(snapshot.header.revision) + 1n).toString();
    const watcher = await etcd.watch().prefix(`${keys.prefix}/`).startRevision(next).create();
    watcher.on('put', (kv) => cache.apply('put', kv));
    watcher.on('delete', (kv) => cache.apply('delete', kv));
    watcher.on('disconnected', (err) => log.warn({ err: err.message }, 'cluster: etcd watch disconnected (reconnecting)'));
    watcher.on('error', (err) => log.warn({ err: err.message }, 'cluster: etcd watch error'));
    cache.watcher = watcher;
    return cache;
  }

  /** Cancels the watch; bounded by ETCD_CALL_MS (a frozen etcd never answers the cancel). */
  async stop(): Promise<void> {
    const watcher = this.watcher;
    this.watcher = null;
    this.removeAllListeners();
    if (watcher === null) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      watcher.cancel().catch(() => undefined),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, ETCD_CALL_MS); }),
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
