/**
 * The gRPC server of daxd: the four services of the contract over one engine, the
 * session table, and the shutdown that lets in-flight calls finish.
 *
 * Shutdown (stop):
 *   1. stop accepting: tryShutdown sends GOAWAY, refuses new calls, waits for open ones;
 *   2. end the calls that would never end on their own: op streams drain (ops already
 *      started are answered, the rest get ESHUTDOWN), sessions end (their resources are
 *      released and their Events streams end with ESHUTDOWN);
 *   3. wait for the calls to finish, at most graceMs (counted from the start of stop);
 *      then cancel what is left (forceShutdown), give the connections SHUTDOWN_FORCE_MS
 *      to close, and destroy the sockets of those that did not. A connection whose peer
 *      stopped reading (or whose stream grpc-js could not finish, as with the oversized
 *      trailers of issue 10, defect 4) would otherwise keep the process alive for good.
 * The caller then unmounts the engine: nothing reaches it any more.
 *
 * Every request is decoded strictly (strict-decode.ts) and every call passes the wire
 * guard (wire-guard.ts): malformed messages are EBADMSG, statuses and trailers bounded.
 */
import type http2 from 'node:http2';
import type net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Dax } from '../dax/dax';
import type { FileSystemApi } from '../fs/types';
import { Metrics } from '../metrics';
import { SessionTable } from '../session/session-table';
import { loadDaxdProto } from '../../wire/proto';
import { filesHandlers } from './files-service';
import { mappingHandlers } from './mapping-service';
import { withFaultBatchEncoder } from '../../wire/fault-codec';
import { dmaHandlers } from './dma-service';
import { OpStreamRegistry } from './files-streams';
import { instrument } from './instrument';
import { raiseConnectionWindow, raiseStreamWindow, SERVER_OPTIONS } from './flow-control';
import { SHUTDOWN_FORCE_MS, SHUTDOWN_GRACE_MS } from './limits';
import { sessionHandlers } from './session-service';
import { strictService } from './strict-decode';
import { StreamMemory, type StreamMemoryLimits } from './stream-memory';
import { unaryMemory } from './unary-memory';
import { wireGuard } from './wire-guard';
import { frameRepliesInPlace } from '../../wire/frame-in-place';
import type { Authenticator } from '../auth/authenticator';
import { principalOf } from '../auth/call-principal';
import { PrincipalFs } from '../auth/principal-fs';
import type { Principal } from '../auth/principal';
import { QuotaLedger } from '../auth/quota';
import { refuseUnverifiedPeers } from '../tls/client-auth';
import { grpcServerCredentials, onEachHttp2Server } from '../tls/grpc-credentials';
import type { TlsMaterial } from '../tls/material';
import type { Cluster } from '../cluster/cluster';
import { fenced, routedFiles } from './cluster-routing';
import { ClusterService } from './cluster-service';
import { StandardServices } from './standard-services';

/** The gRPC address could not be bound (in use, not local, malformed). */
export class ListenError extends Error {
  constructor(address: string, cause: Error) {
    super(`cannot listen on ${address}: ${cause.message}`, { cause });
    this.name = 'ListenError';
  }
}

export interface RpcServerOptions {
  fs: FileSystemApi;
  /** The dax layer over the same file system (Mapping service; Fsync writes back mapped pages). */
  dax: Dax;
  log: Logger;
  /** host:port; port 0 picks a free port. */
  address: string;
  maxSessions?: number;
  /** Where calls are timed and counted (instrument.ts); a private registry when absent. */
  metrics?: Metrics;
  /** TLS (--tls-cert ...): served over TLS, following the material's reloads; plaintext when absent. */
  tls?: TlsMaterial;
  /** Bounds of the stream memory account (tests use small ones; defaults from limits.ts). */
  streamLimits?: Partial<StreamMemoryLimits>;
  /** Who may call (--auth); null or absent = auth off, every call acts for OPEN_ACCESS. */
  auth?: Authenticator | null;
  /** The node's cluster membership (--etcd): fencing, routing by name, the Cluster service. Absent: a lone server. */
  cluster?: Cluster | null;
}

export class RpcServer {
  private stopping: Promise<void> | null = null;

  private constructor(
    private readonly server: grpc.Server,
    readonly sessions: SessionTable,
    /** The principals' quotas (server/auth/quota.ts); NBD shares it. */
    readonly quota: QuotaLedger,
    private readonly streams: OpStreamRegistry,
    /** The bound address, host:port with the real port. */
    readonly address: string,
    private readonly log: Logger,
    /** The raw sockets of open connections (null if grpc-js internals moved). */
    private readonly sockets: Set<net.Socket> | null,
    private readonly clusterService: ClusterService,
    /** grpc.health.v1.Health and reflection (standard-services.ts): Daxd sets the health status. */
    readonly standard: StandardServices,
  ) {}

  static async start(options: RpcServerOptions): Promise<RpcServer> {
    const { fs, log } = options;
    const proto = loadDaxdProto().daxd.v1;
    const sessions = new SessionTable({ log, maxSessions: options.maxSessions });
    const streams = new OpStreamRegistry(new StreamMemory(options.streamLimits));
    const metrics = options.metrics ?? new Metrics();
    const server = new grpc.Server({ ...SERVER_OPTIONS, interceptors: [wireGuard(log, metrics), unaryMemory(streams.memory, log)] });
    if (!raiseStreamWindow(server)) log.warn('grpc-js internals changed: HTTP/2 stream window left at its default');
    if (!frameRepliesInPlace()) log.warn('grpc-js internals changed: bulk replies are framed by copying');
    const auth = options.auth ?? null;
    const cluster = options.cluster ?? null;
    // In a cluster, mutating calls are fenced (cluster-routing.ts), inside the admission.
    const add = <H extends grpc.UntypedServiceImplementation>(service: grpc.ServiceDefinition, handlers: H) => server.addService(strictService(service),
      instrument(service, cluster === null ? handlers : fenced(service, handlers, cluster, log), metrics, log, auth));
    const quota = new QuotaLedger(options.dax.fs, options.dax, sessions);
    // One view of the file system per principal (principals are fixed at start: --auth is read once).
    const views = new Map<Principal, PrincipalFs>();
    const fsOf = (call: object): PrincipalFs => {
      const principal = principalOf(call);
      let view = views.get(principal);
      if (view === undefined) {
        view = new PrincipalFs(principal, fs, quota);
        views.set(principal, view);
      }
      return view;
    };
    add(proto.Session.service, sessionHandlers(sessions, quota, log));
    const files = filesHandlers(fsOf, log, streams, (ino, datasync) => options.dax.fsync(ino, datasync), metrics);
    add(proto.Files.service, cluster === null ? files : routedFiles(files, fsOf, cluster, log));
    add(withFaultBatchEncoder(proto.Mapping.service), mappingHandlers(options.dax, sessions, fsOf, log));
    // A cluster node fences each Dma.Stream op that writes (the stream is admitted as a reader).
    add(proto.Dma.service, dmaHandlers(options.dax, sessions, fsOf, quota, log, streams, metrics, cluster === null ? undefined : () => cluster.assertMayMutate()));
    const clusterService = new ClusterService(cluster, log, fsOf);
    add(proto.Cluster.service, clusterService.handlers());
    // Health (open: probes carry no token) and reflection (a read), NOT_SERVING until Daxd is ready.
    const standard = new StandardServices(log);
    standard.addToServer(server, metrics, auth);
    // `--tls-client-auth request`: refuse a client certificate that does not verify
    // (client-auth.ts), hooked on each HTTP/2 server before it can accept a connection.
    const requestChecked = options.tls?.clientAuth === 'request'
      ? onEachHttp2Server(server, (h) => refuseUnverifiedPeers(h, (reason) => log.debug({ reason }, 'grpc: refused a client certificate that does not verify')))
      : null;
    const port = await new Promise<number>((resolve, reject) => {
      const credentials = options.tls === undefined ? grpc.ServerCredentials.createInsecure() : grpcServerCredentials(options.tls);
      server.bindAsync(options.address, credentials, (err, boundPort) => {
        if (err) reject(new ListenError(options.address, err));
        else resolve(boundPort);
      });
    });
    if (requestChecked !== null && !requestChecked()) {
      // Fail closed: without the check, `request` would accept any client certificate.
      server.forceShutdown();
      throw new ListenError(options.address, new Error('grpc-js internals changed: --tls-client-auth request cannot be enforced (use require)'));
    }
    if (!raiseConnectionWindow(server)) log.warn('grpc-js internals changed: HTTP/2 connection window left at its default');
    const sockets = trackSockets(server);
    if (sockets === null) log.warn('grpc-js internals changed: a stuck connection can delay shutdown past SHUTDOWN_FORCE_MS');
    return new RpcServer(server, sessions, quota, streams, withPort(options.address, port), log, sockets, clusterService, standard);
  }

  /** The memory the op streams hold (bounded: STREAM/CONNECTION/SERVER_BYTES_BUFFERED_MAX). */
  get streamMemory(): StreamMemory {
    return this.streams.memory;
  }

  /** False once stop() began: new calls are refused (readiness). */
  get accepting(): boolean {
    return this.stopping === null;
  }

  /** Graceful stop (see the top of this file). Idempotent. */
  stop(graceMs = SHUTDOWN_GRACE_MS): Promise<void> {
    if (this.stopping === null) this.stopping = this.runStop(graceMs);
    return this.stopping;
  }

  /** Cancel every call now (second signal). */
  forceStop(): void {
    this.server.forceShutdown();
  }

  private async runStop(graceMs: number): Promise<void> {
    const timedOut = delay(graceMs);
    const drained = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    for (const stream of this.streams) stream.drain();
    this.clusterService.endAll();
    this.standard.setServing(false, 'shutting down', false);
    this.standard.endWatches();
    await this.sessions.closeAll();
    const late = await Promise.race([drained.then(() => false), timedOut.promise.then(() => true)]);
    timedOut.cancel();
    if (!late) return;
    this.log.warn({ graceMs }, 'calls still open after the shutdown grace period: cancelling them');
    this.server.forceShutdown();
    await this.closeSockets(SHUTDOWN_FORCE_MS);
  }

  /** Waits up to forceMs for the connections to close, then destroys the sockets left. */
  private async closeSockets(forceMs: number): Promise<void> {
    const sockets = this.sockets;
    if (sockets === null || sockets.size === 0) return;
    const closed = Promise.all([...sockets].map((socket) => new Promise<void>((resolve) => socket.once('close', () => resolve()))));
    const timedOut = delay(forceMs);
    const late = await Promise.race([closed.then(() => false), timedOut.promise.then(() => true)]);
    timedOut.cancel();
    if (!late) return;
    this.log.warn({ forceMs, connections: sockets.size }, 'connections still open after SHUTDOWN_FORCE_MS: destroying their sockets');
    for (const socket of sockets) socket.destroy();
  }
}

/** A timer as a promise, cancellable so it keeps nothing alive. */
function delay(ms: number): { promise: Promise<void>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

/**
 * The raw sockets of the server's connections, from the 'connection' event of its HTTP/2
 * servers (a private field of grpc.Server, as in flow-control.ts; an Http2Session's own
 * `socket` is a proxy that refuses destroy()). null if that field moved.
 */
function trackSockets(server: grpc.Server): Set<net.Socket> | null {
  const servers = (server as unknown as { http2Servers?: Map<http2.Http2Server, unknown> }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) return null;
  const sockets = new Set<net.Socket>();
  for (const http2Server of servers.keys()) {
    http2Server.on('connection', (socket: net.Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
  }
  return sockets;
}

/** "host:0" -> "host:port" (IPv6 hosts keep their brackets). */
function withPort(address: string, port: number): string {
  const colon = address.lastIndexOf(':');
  const host = colon < 0 ? address : address.slice(0, colon);
  return `${host}:${port}`;
}
