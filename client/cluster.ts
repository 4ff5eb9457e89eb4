/**
 * DaxCluster: one namespace over the nodes of a daxd cluster (`daxd serve --etcd`;
 * docs/CLUSTER.md).
 *
 *   const cluster = DaxCluster.connect({ seeds: ['127.0.0.1:7070', '127.0.0.1:7071'] });
 *   const file = await cluster.create('hello.txt');          // placed by the servers
 *   await cluster.write(file, 0, Buffer.from('hello'));       // to the file's node
 *   const client = await cluster.clientOf(file);             // a DaxClient for mmap, pins
 *
 * Routing: a call by name (create, lookup, unlink) goes to the node the placement cache
 * names, else to a seed; a NOT_OWNER answer names the owner (trailer daxd-owner) and the
 * call follows it, at most CLUSTER_REDIRECTS_MAX times. A node that cannot be reached is
 * dropped from the cache and the call asks a seed again. The cache is filled by the
 * answers and by one Cluster.Watch stream (started with the first call); it is only a
 * hint: the servers decide. Calls by inode (read, write, ...) go to the file's node, by
 * its name (ClusterFileInfo.node), through one DaxClient per node, opened lazily.
 * Errors are the DaxClient's (DaxClientError with code and reason: NODE_DOWN, FENCED, ...).
 */
import * as grpc from '@grpc/grpc-js';
import type { ProtoGrpcType } from '../wire/generated/daxd';
import type { ClusterClient } from '../wire/generated/daxd/v1/Cluster';
import type { ClusterEvent__Output } from '../wire/generated/daxd/v1/ClusterEvent';
import type { ClusterNode__Output } from '../wire/generated/daxd/v1/ClusterNode';
import type { DrainResponse__Output } from '../wire/generated/daxd/v1/DrainResponse';
import type { DrainStatus__Output } from '../wire/generated/daxd/v1/DrainStatus';
import type { FileInfo__Output } from '../wire/generated/daxd/v1/FileInfo';
import type { MembersResponse__Output } from '../wire/generated/daxd/v1/MembersResponse';
import { OWNER_METADATA_KEY, OWNER_NODE_METADATA_KEY, REDIRECTED_METADATA_KEY } from '../wire/metadata';
import { loadDaxdProto } from '../wire/proto';
import { bearerInterceptor, channelCredentials, tlsChannelOptions } from './credentials';
import { CLIENT_CHANNEL_OPTIONS, DaxClient, type DaxClientOptions, type FileInfo, type WriteOutcome } from './dax-client';
import { DaxClientError } from './errors';
import { DEADLINE_MS_DEFAULT } from './limits';

/** NOT_OWNER redirects (and unreachable nodes) one call by name follows before it gives up. */
export const CLUSTER_REDIRECTS_MAX = 4;

export interface DaxClusterOptions extends DaxClientOptions {
  /** host:port of some nodes; any live one will do. */
  seeds: string[];
}

/** A file of the cluster: its FileInfo on `node` (a node name). */
export interface ClusterFileInfo extends FileInfo {
  node: string;
}

export interface ClusterMember {
  name: string;
  grpc: string;
  live: boolean;
  files: number;
  capacity: number;
  free: number;
  volumeUuid: string;
  /** Set while the node is being drained. */
  drain?: DrainProgress;
}

/** StatVolume summed over the live nodes. */
export interface ClusterVolumeInfo {
  nodes: number;
  blockSize: number;
  blocksTotal: number;
  blocksFree: number;
  blocksUsed: number;
  files: number;
  maxFiles: number;
  size: number;
}

interface Redirect {
  node: string;
  address: string;
}

/** A drain's progress (Cluster.Drain's messages; ClusterMember.drain while one runs). */
export interface DrainProgress {
  node: string;
  filesTotal: number;
  filesMoved: number;
  filesFailed: number;
  bytesTotal: number;
  bytesCopied: number;
  /** The file being moved and where to ('' between files). */
  current: string;
  currentTarget: string;
  /** The last message: every file was tried. */
  done: boolean;
}

export interface DrainOptions {
  /** What moving a file does while it is pinned for DMA: WAIT (the default) for the pins, RECALL them, or FAIL (leave the file). */
  layoutBreak?: 'WAIT' | 'RECALL' | 'FAIL';
  onProgress?: (p: DrainProgress) => void;
}

function drainProgress(node: string, s: DrainStatus__Output | null, done: boolean): DrainProgress {
  return {
    node, filesTotal: Number(s?.files_total ?? 0), filesMoved: Number(s?.files_moved ?? 0), filesFailed: Number(s?.files_failed ?? 0),
    bytesTotal: Number(s?.bytes_total ?? 0), bytesCopied: Number(s?.bytes_copied ?? 0), current: s?.current ?? '', currentTarget: s?.current_target ?? '', done,
  };
}

function fileInfo(w: FileInfo__Output, node: string): ClusterFileInfo {
  return {
    ino: Number(w.ino), name: w.name, size: Number(w.size), blocks: Number(w.blocks), generation: Number(w.generation),
    mtimeMs: Number(w.mtime_ms), ctimeMs: Number(w.ctime_ms), node,
  };
}

function member(n: ClusterNode__Output): ClusterMember {
  return {
    name: n.name, grpc: n.grpc, live: n.live, files: Number(n.files), capacity: Number(n.capacity), free: Number(n.free), volumeUuid: n.volume_uuid,
    ...(n.drain ? { drain: drainProgress(n.name, n.drain, false) } : {}),
  };
}

/** UTF-8 byte order: the order each server lists its names in. */
function byName(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export class DaxCluster {
  private readonly clients = new Map<string, DaxClient>();
  private readonly clusterStubs = new Map<string, ClusterClient>();
  /** node name -> gRPC address (live nodes, as last heard). */
  private readonly nodes = new Map<string, string>();
  /** file name -> node name (a hint). */
  private readonly placements = new Map<string, string>();
  private watch: grpc.ClientReadableStream<ClusterEvent__Output> | null = null;
  private readonly drains = new Set<grpc.ClientReadableStream<DrainResponse__Output>>();
  private seedTurn = 0;
  private readonly deadlineMs: number;
  private readonly proto: ProtoGrpcType;
  private closed = false;

  private constructor(private readonly options: DaxClusterOptions) {
    if (options.seeds.length === 0) throw new TypeError('DaxCluster.connect: seeds must name at least one node');
    this.deadlineMs = options.deadlineMs ?? DEADLINE_MS_DEFAULT;
    this.proto = loadDaxdProto();
  }

  static connect(options: DaxClusterOptions): DaxCluster {
    return new DaxCluster(options);
  }

  /** The DaxClient of a node address (one per address, opened on first use). */
  client(address: string): DaxClient {
    let client = this.clients.get(address);
    if (client === undefined) {
      const { seeds: _seeds, ...clientOptions } = this.options;
      void _seeds;
      client = DaxClient.connect(address, clientOptions);
      this.clients.set(address, client);
    }
    return client;
  }

  private clusterStub(address: string): ClusterClient {
    let stub = this.clusterStubs.get(address);
    if (stub === undefined) {
      const channelOverride = this.client(address).raw.files.getChannel();
      const interceptors = this.options.token === undefined ? [] : [bearerInterceptor(this.options.token)];
      stub = new this.proto.daxd.v1.Cluster(address, channelCredentials(this.options.tls), {
        ...CLIENT_CHANNEL_OPTIONS, ...tlsChannelOptions(this.options.tls), ...this.options.channelOptions, channelOverride, interceptors,
      });
      this.clusterStubs.set(address, stub);
    }
    return stub;
  }

  private nextSeed(): string {
    const seed = this.options.seeds[this.seedTurn % this.options.seeds.length];
    this.seedTurn++;
    return seed;
  }

  /** The DaxClient of the file's node (for mmap, pins, and any call by inode). */
  async clientOf(file: { node: string }): Promise<DaxClient> {
    let address = this.nodes.get(file.node);
    if (address === undefined) {
      await this.members();
      address = this.nodes.get(file.node);
    }
    if (address === undefined) throw new DaxClientError(grpc.status.UNAVAILABLE, 'NODE_DOWN', `node ${file.node} is not a live member of the cluster`);
    return this.client(address);
  }

  // ---- by name -------------------------------------------------------------------

  async create(name: string, options: { exclusive?: boolean } = {}): Promise<ClusterFileInfo> {
    return this.byName(name, (address, redirected) => this.files(address, 'Create', { name, exclusive: options.exclusive ?? false }, redirected));
  }

  async lookup(name: string): Promise<ClusterFileInfo> {
    return this.byName(name, (address) => this.files(address, 'Lookup', { name }, false));
  }

  async unlink(name: string): Promise<void> {
    await this.byName(name, async (address) => {
      await this.files(address, 'Unlink', { name }, false);
      return null;
    });
    this.placements.delete(name);
  }

  /** One Files call by name at `address`; NOT_OWNER rejects with a Redirect. */
  private files(address: string, method: 'Create' | 'Lookup' | 'Unlink', request: object, redirected: boolean): Promise<ClusterFileInfo> {
    const stub = this.client(address).raw.files as unknown as Record<string, (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: grpc.requestCallback<FileInfo__Output>) => void>;
    const metadata = new grpc.Metadata();
    if (redirected) metadata.set(REDIRECTED_METADATA_KEY, '1');
    return new Promise((resolve, reject) => {
      stub[method].call(stub, request, metadata, { deadline: new Date(Date.now() + this.deadlineMs) }, (err, response) => {
        if (err) {
          const owner = err.metadata?.get(OWNER_METADATA_KEY)[0];
          const ownerNode = err.metadata?.get(OWNER_NODE_METADATA_KEY)[0];
          const error = DaxClientError.fromServiceError(err);
          if (error.reason === 'NOT_OWNER' && typeof owner === 'string' && typeof ownerNode === 'string') {
            reject(Object.assign(error, { redirect: { node: ownerNode, address: owner } satisfies Redirect }));
          } else {
            reject(error);
          }
          return;
        }
        const node = [...this.nodes].find(([, a]) => a === address)?.[0] ?? '';
        resolve(fileInfo(response as FileInfo__Output, node));
      });
    });
  }

  /** Routes a call by name (see the top of this file). */
  private async byName<T extends ClusterFileInfo | null>(name: string, call: (address: string, redirected: boolean) => Promise<T>): Promise<T> {
    this.startWatch();
    const cachedNode = this.placements.get(name);
    let address = cachedNode === undefined ? undefined : this.nodes.get(cachedNode);
    let fromCache = address !== undefined;
    address ??= this.nextSeed();
    let redirected = false;
    let last: unknown = null;
    for (let attempt = 0; attempt <= CLUSTER_REDIRECTS_MAX; attempt++) {
      try {
        const result = await call(address, redirected);
        if (result !== null) {
          // The answering node owns the file: learn its name if the cache did not know the address.
          if (result.node === '') result.node = await this.nodeNameOf(address);
          this.placements.set(name, result.node);
        }
        return result;
      } catch (err) {
        last = err;
        const redirect = (err as { redirect?: Redirect }).redirect;
        if (redirect !== undefined) {
          this.nodes.set(redirect.node, redirect.address);
          this.placements.set(name, redirect.node);
          address = redirect.address;
          redirected = true;
          fromCache = false;
          continue;
        }
        if (err instanceof DaxClientError && err.code === grpc.status.UNAVAILABLE && err.reason === null) {
          // Unreachable: forget what pointed there, ask a seed.
          if (fromCache || redirected) this.placements.delete(name);
          for (const [node, a] of this.nodes) if (a === address) this.nodes.delete(node);
          address = this.nextSeed();
          redirected = false;
          fromCache = false;
          continue;
        }
        throw err;
      }
    }
    throw last;
  }

  private async nodeNameOf(address: string): Promise<string> {
    const known = [...this.nodes].find(([, a]) => a === address)?.[0];
    if (known !== undefined) return known;
    const answer = await this.membersAt(address);
    return answer.self;
  }

  // ---- by inode, on the file's node -----------------------------------------------

  /**
   * `call` on the file's node. If the node is unreachable at the address known, the
   * members are asked again and, if the node came back at another address (a restart),
   * the call is sent there once. A file moved by a drain (NOT_OWNER, or ENOENT for its
   * old inode) is looked up again by name and, found on another node, the call is sent
   * there once; `file` is updated in place (node, ino).
   */
  private async onNode<T>(file: { node: string; ino?: number; name?: string }, call: (client: DaxClient) => Promise<T>): Promise<T> {
    try {
      return await this.onNodeOnce(file, call);
    } catch (err) {
      if (!(err instanceof DaxClientError && (err.reason === 'NOT_OWNER' || err.reason === 'ENOENT')) || file.name === undefined || file.ino === undefined) throw err;
      this.placements.delete(file.name);
      let moved: ClusterFileInfo;
      try {
        moved = await this.lookup(file.name);
      } catch {
        throw err;
      }
      if (moved.node === file.node && moved.ino === file.ino) throw err;
      file.node = moved.node;
      file.ino = moved.ino;
      return this.onNodeOnce(file, call);
    }
  }

  private async onNodeOnce<T>(file: { node: string }, call: (client: DaxClient) => Promise<T>): Promise<T> {
    const client = await this.clientOf(file);
    try {
      return await call(client);
    } catch (err) {
      if (!(err instanceof DaxClientError && err.code === grpc.status.UNAVAILABLE && err.reason === null)) throw err;
      this.nodes.delete(file.node);
      const again = await this.clientOf(file);
      if (again === client) throw err;
      return call(again);
    }
  }

  async read(file: ClusterFileInfo, offset: number, length: number): Promise<Buffer> {
    return this.onNode(file, (client) => client.read(file.ino, offset, length));
  }

  async write(file: ClusterFileInfo, offset: number, data: Uint8Array, options: { sync?: boolean } = {}): Promise<WriteOutcome> {
    return this.onNode(file, (client) => client.write(file.ino, offset, data, options));
  }

  async stat(file: ClusterFileInfo): Promise<ClusterFileInfo> {
    return { ...(await this.onNode(file, (client) => client.stat(file.ino))), node: file.node };
  }

  // ---- the whole cluster ----------------------------------------------------------

  private membersAt(address: string): Promise<MembersResponse__Output> {
    const stub = this.clusterStub(address);
    return new Promise((resolve, reject) => {
      stub.Members({}, new grpc.Metadata(), { deadline: new Date(Date.now() + this.deadlineMs) }, (err, response) => {
        if (err) reject(DaxClientError.fromServiceError(err));
        else resolve(response as MembersResponse__Output);
      });
    });
  }

  /** Every node (live ones and down ones that hold files), from the first seed that answers. */
  async members(): Promise<ClusterMember[]> {
    let last: unknown = null;
    for (let i = 0; i < this.options.seeds.length; i++) {
      try {
        const answer = await this.membersAt(this.nextSeed());
        for (const n of answer.nodes) if (n.live) this.nodes.set(n.name, n.grpc);
        return answer.nodes.map(member);
      } catch (err) {
        last = err;
        if (!(err instanceof DaxClientError && err.code === grpc.status.UNAVAILABLE)) throw err;
      }
    }
    throw last;
  }

  /**
   * Cluster.Drain: moves every file off `node` to the other live nodes (docs/CLUSTER.md
   * "Drain"). Sent to a seed, it follows the NOT_OWNER that names the node (the drained
   * node drives its drain). `onProgress` gets each progress message; resolves with the
   * last (done). The call has no deadline (a drain takes as long as its data); cancel by
   * closing the DaxCluster.
   */
  async drain(node: string, options: DrainOptions = {}): Promise<DrainProgress> {
    let address = this.nodes.get(node) ?? this.nextSeed();
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.drainAt(address, node, options);
      } catch (err) {
        if (attempt >= CLUSTER_REDIRECTS_MAX) throw err;
        const redirect = (err as { redirect?: Redirect }).redirect;
        if (redirect !== undefined) {
          this.nodes.set(redirect.node, redirect.address);
          address = redirect.address;
        } else if (err instanceof DaxClientError && err.code === grpc.status.UNAVAILABLE && err.reason === null) {
          // Unreachable (a node restarted elsewhere): forget it, ask a seed.
          for (const [n, a] of this.nodes) if (a === address) this.nodes.delete(n);
          address = this.nextSeed();
        } else {
          throw err;
        }
      }
    }
  }

  private drainAt(address: string, node: string, options: DrainOptions): Promise<DrainProgress> {
    const stream = this.clusterStub(address).Drain({ node, layout_break: options.layoutBreak ?? 'WAIT' });
    this.drains.add(stream);
    return new Promise<DrainProgress>((resolve, reject) => {
      let last: DrainProgress | null = null;
      stream.on('data', (m: DrainResponse__Output) => {
        last = drainProgress(m.node, m.status, m.done);
        options.onProgress?.(last);
      });
      stream.on('error', (err: grpc.ServiceError) => {
        this.drains.delete(stream);
        const error = DaxClientError.fromServiceError(err);
        const owner = err.metadata?.get(OWNER_METADATA_KEY)[0];
        const ownerNode = err.metadata?.get(OWNER_NODE_METADATA_KEY)[0];
        if (error.reason === 'NOT_OWNER' && typeof owner === 'string' && typeof ownerNode === 'string') {
          reject(Object.assign(error, { redirect: { node: ownerNode, address: owner } satisfies Redirect }));
        } else {
          reject(error);
        }
      });
      stream.on('end', () => {
        this.drains.delete(stream);
        if (last?.done === true) resolve(last);
        else reject(new DaxClientError(grpc.status.UNAVAILABLE, null, `the Drain of ${node} ended without its last message`));
      });
    });
  }

  /** Every file of the live nodes whose name starts with prefix, in name order (each node's pages merged). */
  async *listAll(prefix = ''): AsyncGenerator<ClusterFileInfo> {
    const live = (await this.members()).filter((m) => m.live);
    const iterators = live.map((m) => ({ node: m.name, it: this.client(m.grpc).listAll(prefix)[Symbol.asyncIterator]() }));
    const heads = await Promise.all(iterators.map((i) => i.it.next()));
    // Bounded: one page per node in memory (the DaxClient pages), one head per node here.
    for (;;) {
      let best = -1;
      for (let i = 0; i < heads.length; i++) {
        if (heads[i].done) continue;
        if (best < 0 || byName((heads[i].value as FileInfo).name, (heads[best].value as FileInfo).name) < 0) best = i;
      }
      if (best < 0) return;
      yield { ...(heads[best].value as FileInfo), node: iterators[best].node };
      heads[best] = await iterators[best].it.next();
    }
  }

  /** StatVolume of every live node, summed. */
  async statVolume(): Promise<ClusterVolumeInfo> {
    const live = (await this.members()).filter((m) => m.live);
    const infos = await Promise.all(live.map((m) => this.client(m.grpc).statVolume()));
    const sum = (f: (v: (typeof infos)[number]) => number) => infos.reduce((s, v) => s + f(v), 0);
    return {
      nodes: infos.length, blockSize: infos[0]?.blockSize ?? 0, blocksTotal: sum((v) => v.blocksTotal), blocksFree: sum((v) => v.blocksFree),
      blocksUsed: sum((v) => v.blocksUsed), files: sum((v) => v.files), maxFiles: sum((v) => v.maxFiles), size: sum((v) => v.size),
    };
  }

  // ---- placement cache ------------------------------------------------------------

  /** One Watch stream at a seed fills the caches; restarted by the next call after it ends. */
  private startWatch(): void {
    if (this.watch !== null || this.closed) return;
    const stream = this.clusterStub(this.nextSeed()).Watch({});
    this.watch = stream;
    stream.on('data', (e: ClusterEvent__Output) => {
      switch (e.kind) {
        case 'NODE_UP': if (e.node) this.nodes.set(e.node.name, e.node.grpc); break;
        case 'NODE_DOWN': if (e.node) this.nodes.delete(e.node.name); break;
        case 'PLACED': if (e.placement) this.placements.set(e.placement.name, e.placement.node); break;
        case 'REMOVED': if (e.placement) this.placements.delete(e.placement.name); break;
        default: break;
      }
    });
    const ended = () => {
      if (this.watch === stream) this.watch = null;
    };
    stream.on('error', ended);
    stream.on('end', ended);
  }

  /** Cancels the Watch and closes every node's client. */
  close(): void {
    this.closed = true;
    this.watch?.cancel();
    this.watch = null;
    for (const d of this.drains) d.cancel();
    this.drains.clear();
    for (const stub of this.clusterStubs.values()) stub.close();
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
    this.clusterStubs.clear();
  }
}
