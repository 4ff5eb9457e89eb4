/**
 * A daxd node's membership in a cluster (`daxd serve --etcd ...`; docs/CLUSTER.md): the
 * etcd client, the registration and its fencing (membership.ts), the watch cache of
 * members and placements (watch-cache.ts), the placement decisions (placement.ts) and
 * the start-up reconcile pass (reconcile.ts).
 *
 * Start order (Daxd.start): the volume is mounted and the gRPC server bound first (the
 * registration carries the bound address), then join(): register (EBUSY if the name or
 * the volume is held), load the cache, reconcile. Until join() has finished the node is
 * fenced: mutating calls are UNAVAILABLE / FENCED, so nothing races the reconcile pass.
 */
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { DaxError, FencedError } from '../errors';
import type { Failpoints } from '../dax/failpoints';
import type { FileSystemApi } from '../fs/types';
import type { ClusterMetricsSource } from '../metrics';
import type { ClusterStatus } from '../http/deps';
import type { ClusterConfig } from './config';
import { etcdClient, isEtcdUnreachable } from './etcd';
import { ClusterKeys, type NodeRecord } from './keys';
import { ETCD_CALL_MS } from './limits';
import { Membership } from './membership';
import { Placement } from './placement';
import { reconcile, type ReconcileReport } from './reconcile';
import { WatchCache } from './watch-cache';

/** The least time a stop gives the watch cancel and the lease revoke, even when the drain used up the grace period. */
const CLUSTER_STOP_MS_MIN = 500;

/** How many names of each kind the reconcile log line lists (the counts are always complete). */
const RECONCILE_LOG_NAMES_MAX = 20;

/** etcd did not answer at start (down, wrong URL): the start is refused, saying where it looked. */
export class EtcdUnreachableError extends Error {
  constructor(urls: readonly string[], cause: unknown) {
    super(`cluster: etcd at ${urls.join(',')} did not answer (${cause instanceof Error ? cause.message : String(cause)}): is it running?`, { cause });
    this.name = 'EtcdUnreachableError';
  }
}

/** etcd answered the start's registration or load with a failure (not a connection problem): the start is refused, quoting it. */
export class EtcdFailedError extends Error {
  constructor(urls: readonly string[], cause: unknown) {
    super(`cluster: etcd at ${urls.join(',')} failed the start's registration or load: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'EtcdFailedError';
  }
}

export interface NodeAddresses {
  grpc: string;
  nbd: string | null;
  http: string | null;
}

export class Cluster {
  readonly keys: ClusterKeys;
  private readonly etcd: Etcd3;
  private membership: Membership | null = null;
  private cacheRef: WatchCache | null = null;
  private placementRef: Placement | null = null;
  private joined = false;
  private stopped = false;
  /** What the last start-up reconcile fixed. */
  lastReconcile: ReconcileReport | null = null;
  /** The server's failpoints (tests: cluster:after-claim), set by Daxd.start. */
  failpoints: Failpoints | null = null;

  constructor(readonly config: ClusterConfig, private readonly fs: FileSystemApi, private readonly log: Logger, private readonly version: string) {
    this.keys = new ClusterKeys(config.prefix);
    this.etcd = etcdClient(config.etcdUrls);
  }

  get self(): string {
    return this.config.nodeName;
  }

  /** True until join() finished, and whenever the lease could not be renewed in time. */
  get fenced(): boolean {
    return !this.joined || this.membership === null || this.membership.fenced;
  }

  /** Throws FencedError when mutating calls must be refused. */
  assertMayMutate(): void {
    if (!this.joined || this.membership === null) throw new FencedError('not registered in the cluster yet');
    const why = this.membership.fenceReason;
    if (why !== null) throw new FencedError(why);
  }

  get cache(): WatchCache {
    if (this.cacheRef === null) throw new FencedError('not registered in the cluster yet');
    return this.cacheRef;
  }

  get placement(): Placement {
    if (this.placementRef === null) throw new FencedError('not registered in the cluster yet');
    return this.placementRef;
  }

  /** Tests: the keep-alive failpoint (no keep-alive is sent while true). */
  dropKeepAlives(drop: boolean): void {
    if (this.membership !== null) this.membership.dropKeepAlives = drop;
  }

  /** The membership (tests and metrics read its timings). */
  get registration(): Membership | null {
    return this.membership;
  }

  /** Registers, loads the cache, reconciles; throws BusyError when refused. */
  async join(addresses: NodeAddresses): Promise<void> {
    const record = (): NodeRecord => {
      const v = this.fs.statVolume();
      return {
        name: this.self, grpc: this.config.advertise ?? addresses.grpc, nbd: addresses.nbd ?? '', http: addresses.http ?? '',
        volumeUuid: v.uuid, capacity: v.blocksTotal * v.blockSize, free: v.blocksFree * v.blockSize, version: this.version, startedAtMs,
      };
    };
    const startedAtMs = Date.now();
    const membership = new Membership({
      etcd: this.etcd, keys: this.keys, ttlS: this.config.ttlS, record, log: this.log,
      onFenced: (fenced, why) => {
        if (fenced) this.log.warn({ why, ttlS: this.config.ttlS }, 'cluster: fenced: refusing mutating calls');
        else this.log.info({ why }, 'cluster: unfenced: taking mutating calls again');
      },
    });
    try {
      await membership.start();
      this.membership = membership;
      this.cacheRef = await WatchCache.start(this.etcd, this.keys, this.log);
    } catch (err) {
      throw this.startFailure(err);
    }
    this.placementRef = new Placement(this.etcd, this.keys, this.cacheRef, this.self, () => membership.leaseId);
    const report = await reconcile(this.etcd, this.keys, this.self, this.fs).catch((err: unknown) => { throw this.startFailure(err); });
    this.lastReconcile = report;
    const some = (names: string[]) => names.slice(0, RECONCILE_LOG_NAMES_MAX);
    this.log.info({
      removed: report.removed.length, inoRecorded: report.inoRecorded.length, registered: report.registered.length, conflicts: report.conflicts.length,
      removedNames: some(report.removed), inoRecordedNames: some(report.inoRecorded), registeredNames: some(report.registered),
      conflictNames: report.conflicts.slice(0, RECONCILE_LOG_NAMES_MAX),
    }, 'cluster: reconciled placements with the volume');
    this.joined = true;
  }

  /** Only etcd not answering is "unreachable"; etcd answering with a failure is said as such. */
  private startFailure(err: unknown): Error {
    if (err instanceof DaxError) return err;
    return isEtcdUnreachable(err) ? new EtcdUnreachableError(this.config.etcdUrls, err) : new EtcdFailedError(this.config.etcdUrls, err);
  }

  /** The cluster as this node sees it (GET /api/v1/cluster, the dashboard). */
  status(): ClusterStatus {
    const cache = this.cacheRef;
    const nodes: ClusterStatus['nodes'] = [];
    if (cache !== null) {
      for (const n of cache.nodes.values()) {
        nodes.push({ name: n.name, state: 'live', grpc: n.grpc, capacityBytes: n.capacity, freeBytes: n.free, files: cache.filesPerNode.get(n.name) ?? 0 });
      }
      for (const [name, files] of cache.filesPerNode) if (!cache.nodes.has(name)) nodes.push({ name, state: 'down', grpc: '', capacityBytes: 0, freeBytes: 0, files });
    }
    nodes.sort((a, b) => (a.state === b.state ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a.state === 'live' ? -1 : 1));
    return { self: this.self, fenced: this.fenced, nodes };
  }

  /** The numbers of the daxd_cluster_* metrics. */
  metrics(): ClusterMetricsSource {
    const cache = this.cacheRef;
    let downNodes = 0;
    if (cache !== null) for (const node of cache.filesPerNode.keys()) if (!cache.nodes.has(node)) downNodes++;
    return { fenced: this.fenced, liveNodes: cache?.nodes.size ?? 0, downNodes, redirects: this.placementRef?.redirects ?? 0 };
  }

  /**
   * Leaves the cluster (the lease is revoked: the node is down for the others at once) and
   * closes etcd, within `withinMs` (at least CLUSTER_STOP_MS_MIN: the revoke is worth one
   * try; a lease not revoked expires by itself). Called after the calls drained
   * (Daxd.stop). Idempotent.
   */
  async stop(withinMs = ETCD_CALL_MS): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.joined = false;
    const budgetMs = Math.max(CLUSTER_STOP_MS_MIN, withinMs);
    await this.cacheRef?.stop(budgetMs / 2);
    await this.membership?.stop(budgetMs / 2);
    this.etcd.close();
  }
}
