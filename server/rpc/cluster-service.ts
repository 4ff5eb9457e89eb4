/**
 * The Cluster service (proto `service Cluster`): Members, Locate and Watch answered from
 * the node's watch cache of etcd (server/cluster/watch-cache.ts); Drain run by the drained
 * node itself (server/cluster/drain.ts), streaming its progress. A server without --etcd
 * answers every call UNIMPLEMENTED / ENOTSUP.
 *
 * Watch sends the current state (NODE_UP per live node, PLACED per placement, then
 * SYNCED) and then every change.
 *
 * A principal confined to a prefix learns nothing by name outside it, here as in Files
 * (server/auth/principal-fs.ts): Locate checks the name first (EACCES outside the prefix,
 * whether or not it is placed), and Watch sends PLACED/REMOVED only for names inside it.
 * Members shows every node and its file count. Memory is bounded: a stream whose client lets
 * CLUSTER_WATCH_EVENTS_BUFFERED_MAX events queue up is ended with ELIMIT (the client
 * watches again). Streams end with ESHUTDOWN when the server stops (endAll).
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { PrincipalFs } from '../auth/principal-fs';
import type { Cluster } from '../cluster/cluster';
import type { DrainProgress, NodeRecord, PlacementRecord } from '../cluster/keys';
import { CLUSTER_WATCH_EVENTS_BUFFERED_MAX, NODE_NAME_BYTES_MAX } from '../cluster/limits';
import type { CacheEvent } from '../cluster/watch-cache';
import { InvalidArgumentError, LimitError, NotFoundError, NotSupportedError, ShutdownError } from '../errors';
import { excerpt } from '../excerpt';
import type { ClusterHandlers } from '../../wire/generated/daxd/v1/Cluster';
import type { ClusterEvent } from '../../wire/generated/daxd/v1/ClusterEvent';
import type { ClusterNode } from '../../wire/generated/daxd/v1/ClusterNode';
import type { DrainRequest__Output } from '../../wire/generated/daxd/v1/DrainRequest';
import type { DrainResponse } from '../../wire/generated/daxd/v1/DrainResponse';
import type { DrainStatus } from '../../wire/generated/daxd/v1/DrainStatus';
import type { Placement } from '../../wire/generated/daxd/v1/Placement';
import type { WatchRequest__Output } from '../../wire/generated/daxd/v1/WatchRequest';
import { toServiceError } from './status';
import { unary } from './unary';
import * as v from './validate';

function nodeToWire(node: NodeRecord, files: number): ClusterNode {
  return {
    name: node.name, grpc: node.grpc, nbd: node.nbd, http: node.http, volume_uuid: node.volumeUuid, capacity: node.capacity, free: node.free,
    version: node.version, started_at_ms: node.startedAtMs, live: true, files,
    ...(node.drain === undefined ? {} : { drain: drainToWire(node.drain) }),
  };
}

function drainToWire(p: DrainProgress): DrainStatus {
  return {
    files_total: p.filesTotal, files_moved: p.filesMoved, files_failed: p.filesFailed, bytes_total: p.bytesTotal, bytes_copied: p.bytesCopied,
    current: p.current, current_target: p.currentTarget,
  };
}

const DRAIN_LAYOUT_BREAKS = ['WAIT', 'FAIL', 'RECALL'] as const;
const NODE_NAME = /^[A-Za-z0-9._-]+$/;

function placementToWire(cluster: Cluster, name: string, p: PlacementRecord): Placement {
  const node = cluster.cache.nodes.get(p.node);
  return { name, node: p.node, ino: p.ino, node_live: node !== undefined, grpc: node?.grpc ?? '' };
}

function eventToWire(cluster: Cluster, e: CacheEvent): ClusterEvent {
  switch (e.kind) {
    case 'NODE_UP': return { kind: 'NODE_UP', node: nodeToWire(e.node, cluster.cache.filesPerNode.get(e.node.name) ?? 0) };
    case 'NODE_DOWN': return { kind: 'NODE_DOWN', node: { name: e.name, live: false } };
    case 'PLACED': return { kind: 'PLACED', placement: placementToWire(cluster, e.name, e.placement) };
    case 'REMOVED': return { kind: 'REMOVED', placement: { name: e.name } };
  }
}

/** The Members answer: live nodes, then nodes that hold files but are down. */
export function members(cluster: Cluster): { self: string; nodes: ClusterNode[] } {
  const { nodes, filesPerNode } = cluster.cache;
  const out = [...nodes.values()].map((n) => nodeToWire(n, filesPerNode.get(n.name) ?? 0));
  for (const [name, files] of filesPerNode) if (!nodes.has(name)) out.push({ name, live: false, files });
  out.sort((a, b) => (a.name! < b.name! ? -1 : a.name! > b.name! ? 1 : 0));
  return { self: cluster.self, nodes: out };
}

export class ClusterService {
  private readonly watches = new Set<() => void>();

  /** `fsOf`: the file system as the call's principal may use it (its prefix). */
  constructor(private readonly cluster: Cluster | null, private readonly log: Logger, private readonly fsOf: (call: object) => PrincipalFs) {}

  private joined(): Cluster {
    if (this.cluster === null) throw new NotSupportedError('the Cluster service (this server runs without --etcd)');
    return this.cluster;
  }

  /** Ends every Watch stream (ESHUTDOWN): the server is stopping. */
  endAll(): void {
    for (const end of [...this.watches]) end();
  }

  handlers(): ClusterHandlers {
    const { log } = this;
    return {
      Members: unary(log, 'Cluster.Members', () => members(this.joined())),
      Locate: unary(log, 'Cluster.Locate', (req, call) => {
        const cluster = this.joined();
        const name = this.fsOf(call).name(v.fileName(req.name));
        const p = cluster.cache.files.get(name);
        if (p === undefined) throw new NotFoundError(`${JSON.stringify(name.slice(0, 64))} is placed on no node`);
        return placementToWire(cluster, name, p);
      }),
      Watch: (call) => this.watch(call),
      Drain: (call) => void this.drain(call),
    };
  }

  /** Cluster.Drain: validated here, run by Cluster.drain; one message per progress step, the last with done. */
  private async drain(call: grpc.ServerWritableStream<DrainRequest__Output, DrainResponse>): Promise<void> {
    const controller = new AbortController();
    call.on('cancelled', () => controller.abort(new ShutdownError('the Drain call was cancelled')));
    try {
      const cluster = this.joined();
      if (!cluster.drainEnabled) throw new NotSupportedError('Cluster.Drain on this server (no file engine attached)');
      const node = call.request.node;
      if (node.length === 0 || node.length > NODE_NAME_BYTES_MAX || !NODE_NAME.test(node)) {
        throw new InvalidArgumentError(`node ${excerpt(node)} is not 1..${NODE_NAME_BYTES_MAX} characters of [A-Za-z0-9._-]`);
      }
      const policy = v.enumValue(call.request.layout_break, DRAIN_LAYOUT_BREAKS, 'layout_break');
      const auth = call.metadata.get('authorization')[0];
      const result = await cluster.drain(node, policy, typeof auth === 'string' ? auth : null, controller.signal, (p) => {
        if (!controller.signal.aborted) call.write({ node, status: drainToWire(p), done: false });
      });
      call.write({ node, status: drainToWire(result), done: true });
      call.end();
    } catch (err) {
      if (!controller.signal.aborted) call.emit('error', toServiceError(err, this.log, 'Cluster.Drain'));
    }
  }

  private watch(call: grpc.ServerWritableStream<WatchRequest__Output, ClusterEvent>): void {
    let cluster: Cluster;
    try {
      cluster = this.joined();
      void cluster.cache;
    } catch (err) {
      call.emit('error', toServiceError(err, this.log, 'Cluster.Watch'));
      return;
    }
    let ended = false;
    const end = (err: Error | null) => {
      if (ended) return;
      ended = true;
      cluster.cache.off('change', onChange);
      this.watches.delete(endShutdown);
      if (err === null) call.end();
      else call.emit('error', toServiceError(err, this.log, 'Cluster.Watch'));
    };
    const endShutdown = () => end(new ShutdownError());
    const send = (event: ClusterEvent) => {
      if (ended) return;
      call.write(event);
      if (call.writableLength > CLUSTER_WATCH_EVENTS_BUFFERED_MAX) {
        end(new LimitError('CLUSTER_WATCH_EVENTS_BUFFERED_MAX', call.writableLength, CLUSTER_WATCH_EVENTS_BUFFERED_MAX));
      }
    };
    const { principal } = this.fsOf(call);
    const onChange = (e: CacheEvent) => {
      if ((e.kind === 'PLACED' || e.kind === 'REMOVED') && !principal.mayName(e.name)) return;
      send(eventToWire(cluster, e));
    };
    cluster.cache.on('change', onChange);
    this.watches.add(endShutdown);
    call.on('cancelled', () => {
      ended = true;
      cluster.cache.off('change', onChange);
      this.watches.delete(endShutdown);
    });
    call.sendMetadata(new grpc.Metadata());
    const { nodes, files, filesPerNode } = cluster.cache;
    for (const n of nodes.values()) send({ kind: 'NODE_UP', node: nodeToWire(n, filesPerNode.get(n.name) ?? 0) });
    for (const [name, p] of files) if (principal.mayName(name)) send({ kind: 'PLACED', placement: placementToWire(cluster, name, p) });
    send({ kind: 'SYNCED' });
  }
}
