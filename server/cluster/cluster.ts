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
import type * as grpc from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { BusyError, DaxError, FencedError, NodeDownError, NotFoundError, NotOwnerError } from '../errors';
import type { Failpoints } from '../dax/failpoints';
import type { LayoutBreakPolicy } from '../fs/types';
import type { FileSystemApi } from '../fs/types';
import type { ClusterMetricsSource } from '../metrics';
import type { ClusterStatus } from '../http/deps';
import type { ClusterConfig } from './config';
import { etcdClient, isEtcdUnreachable } from './etcd';
import { DrainGate } from './drain-gate';
import { Drainer, type DrainCounters, type DrainDax, type DrainFs } from './drain';
import { ClusterKeys, type DrainProgress, type NodeRecord } from './keys';
import { ETCD_CALL_MS } from './limits';
import { drainPeer } from './peer';
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

/** What a drain needs besides the cluster (Daxd.start sets it: the engine and this node's client credentials). */
export interface DrainEngine {
  fs: DrainFs;
  dax: DrainDax;
  /** Credentials of this node's calls to other nodes (its TLS material, or plain). */
  peerCredentials: () => grpc.ChannelCredentials;
}

/** Tests: DAXD_TEST_DRAIN_PAUSE=after-files:K|after-switch:K pauses a drain there (logged) so a test can kill -9 the node. */
const DRAIN_PAUSE_ENV = 'DAXD_TEST_DRAIN_PAUSE';

export class Cluster {
  readonly keys: ClusterKeys;
  /** A drain's switch as the other calls see it (fenced-fs.ts, cluster-routing.ts). */
  readonly drainGate = new DrainGate();
  /** daxd_cluster_drain_* counters. */
  readonly drainCounters: DrainCounters = { moved: 0, failed: 0, bytes: 0 };
  private drainEngine: DrainEngine | null = null;
  private draining: DrainProgress | null = null;
  private readonly etcd: Etcd3;
  private membership: Membership | null = null;
  private cacheRef: WatchCache | null = null;
  private placementRef: Placement | null = null;
  private joined = false;
  private stopped = false;
  /** What the last start-up reconcile fixed. */
  lastReconcile: ReconcileReport | null = null;
  /** Told of every change of `fenced` or `isDraining` (the gRPC health status follows them: server.ts). */
  private readonly fenceListeners = new Set<() => void>();
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

  /** Calls `listener` after each change of `fenced` or `isDraining` (it reads them); returns its removal. */
  onReadinessChange(listener: () => void): () => void {
    this.fenceListeners.add(listener);
    return () => this.fenceListeners.delete(listener);
  }

  private readinessChanged(): void {
    for (const listener of [...this.fenceListeners]) listener();
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
        ...(this.draining === null ? {} : { drain: { ...this.draining } }),
      };
    };
    const startedAtMs = Date.now();
    const membership = new Membership({
      etcd: this.etcd, keys: this.keys, ttlS: this.config.ttlS, record, log: this.log,
      onFenced: (fenced, why) => {
        if (fenced) this.log.warn({ why, ttlS: this.config.ttlS }, 'cluster: fenced: refusing mutating calls');
        else this.log.info({ why }, 'cluster: unfenced: taking mutating calls again');
        this.readinessChanged();
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
      movesAbandoned: some(report.movesAbandoned), copiesRemoved: some(report.copiesRemoved), movedRemoved: some(report.movedRemoved),
    }, 'cluster: reconciled placements with the volume');
    this.joined = true;
    this.readinessChanged();
  }

  /** A drain's copy in flight to this node (FencedFs.list leaves it out). */
  isDrainCopy(name: string): boolean {
    const p = this.cacheRef?.files.get(name);
    return p !== undefined && p.node !== this.self && p.moving === this.self;
  }

  /** Daxd.start: what drains run on. Without it Drain answers UNIMPLEMENTED. */
  enableDrain(engine: DrainEngine): void {
    this.drainEngine = engine;
  }

  get drainEnabled(): boolean {
    return this.drainEngine !== null;
  }

  /** True while this node drains itself. */
  get isDraining(): boolean {
    return this.draining !== null;
  }

  /**
   * Cluster.Drain of `node` (server/rpc/cluster-service.ts). Checks, in order: another
   * node (NOT_OWNER naming it, so the caller goes there), a down node (NODE_DOWN), an
   * unknown one (ENOENT); then this node: fenced (FENCED), already draining (EBUSY), no
   * other live node to move files to (EBUSY, saying so). Then drain.ts moves the files;
   * `onProgress` gets each progress message. Resolves with the final progress.
   */
  async drain(node: string, policy: LayoutBreakPolicy, authorization: string | null, signal: AbortSignal, onProgress: (p: DrainProgress) => void): Promise<DrainProgress> {
    const cache = this.cache;
    if (node !== this.self) {
      const record = cache.nodes.get(node);
      if (record !== undefined) {
        const err = new NotOwnerError(node, node, record.grpc);
        err.message = `node ${node} drives its own drain: send Drain to it (${record.grpc})`;
        throw err;
      }
      if (cache.filesPerNode.has(node)) throw new NodeDownError(`the drain of node ${node}`, node);
      throw new NotFoundError(`no node named ${node} in the cluster (neither live nor holding files)`);
    }
    const engine = this.drainEngine;
    if (engine === null) throw new FencedError('the drain engine is not attached yet');
    this.assertMayMutate();
    if (this.draining !== null) throw new BusyError(`node ${node} is already being drained (${this.draining.filesMoved}/${this.draining.filesTotal} files moved)`);
    this.draining = { filesTotal: 0, filesMoved: 0, filesFailed: 0, bytesTotal: 0, bytesCopied: 0, current: '', currentTarget: '' };
    this.readinessChanged(); // gRPC health: NOT_SERVING while draining (server.ts)
    try {
      const drainer = new Drainer({
        etcd: this.etcd, keys: this.keys, cache, self: this.self, fs: engine.fs, dax: engine.dax, gate: this.drainGate, log: this.log,
        peer: (to, address) => drainPeer(this.self, to, address, engine.peerCredentials(), authorization),
        publish: async (p) => {
          this.draining = p;
          await this.membership?.publish().catch((err: unknown) => this.log.warn({ err: String(err) }, 'cluster: drain: could not publish the progress'));
        },
        assertMayMutate: () => this.assertMayMutate(),
        pause: testPause(this.log),
      }, { policy }, this.drainCounters, onProgress);
      if (drainer.targets().length === 0) {
        throw new BusyError(`node ${node} is the last live node that is not draining: there is no node to move its files to`);
      }
      this.log.info({ node, policy }, 'cluster: drain started');
      const result = await drainer.run(signal);
      this.log.info({ ...result }, 'cluster: drain finished');
      return result;
    } finally {
      this.draining = null;
      this.readinessChanged();
      this.drainGate.clearMoved();
      await this.membership?.publish().catch(() => undefined);
    }
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
        nodes.push({
          name: n.name, state: 'live', grpc: n.grpc, capacityBytes: n.capacity, freeBytes: n.free, files: cache.filesPerNode.get(n.name) ?? 0,
          drain: n.drain === undefined ? null : { ...n.drain },
        });
      }
      for (const [name, files] of cache.filesPerNode) if (!cache.nodes.has(name)) nodes.push({ name, state: 'down', grpc: '', capacityBytes: 0, freeBytes: 0, files, drain: null });
    }
    nodes.sort((a, b) => (a.state === b.state ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a.state === 'live' ? -1 : 1));
    return { self: this.self, fenced: this.fenced, nodes };
  }

  /** The numbers of the daxd_cluster_* metrics. */
  metrics(): ClusterMetricsSource {
    const cache = this.cacheRef;
    let downNodes = 0;
    if (cache !== null) for (const node of cache.filesPerNode.keys()) if (!cache.nodes.has(node)) downNodes++;
    return {
      fenced: this.fenced, liveNodes: cache?.nodes.size ?? 0, downNodes, redirects: this.placementRef?.redirects ?? 0,
      draining: this.draining !== null, drainFilesMoved: this.drainCounters.moved, drainFilesFailed: this.drainCounters.failed, drainBytes: this.drainCounters.bytes,
    };
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
    this.readinessChanged();
    const budgetMs = Math.max(CLUSTER_STOP_MS_MIN, withinMs);
    await this.cacheRef?.stop(budgetMs / 2);
    await this.membership?.stop(budgetMs / 2);
    this.etcd.close();
  }
}

/** The test pause of DAXD_TEST_DRAIN_PAUSE, or undefined (production). Logs 'cluster: drain paused (test)', then waits forever: the test kills the process. */
function testPause(log: Logger): ((where: 'after-files' | 'after-switch', files: number) => Promise<void>) | undefined {
  const spec = process.env[DRAIN_PAUSE_ENV];
  const m = spec === undefined ? null : /^(after-files|after-switch):(\d+)$/.exec(spec);
  if (m === null) return undefined;
  return async (where, files) => {
    if (where !== m[1] || files !== Number(m[2])) return;
    log.info({ where, files }, 'cluster: drain paused (test)');
    await new Promise<never>(() => undefined);
  };
}
