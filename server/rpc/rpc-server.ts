/**
 * The gRPC server of daxd: the four services of the contract over one engine, the
 * session table, and the shutdown that lets in-flight calls finish.
 *
 * Shutdown (stop):
 *   1. stop accepting: tryShutdown sends GOAWAY, refuses new calls, waits for open ones;
 *   2. end the calls that would never end on their own: op streams drain (ops already
 *      started are answered, the rest get ESHUTDOWN), sessions end (their resources are
 *      released and their Events streams end with ESHUTDOWN);
 *   3. wait for the calls to finish, at most graceMs; then cancel what is left.
 * The caller then unmounts the engine: nothing reaches it any more.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Dax } from '../dax/dax';
import type { FileSystemApi } from '../fs/types';
import { Metrics } from '../metrics';
import { SessionTable } from '../session/session-table';
import { loadDaxdProto } from '../../client/proto';
import { filesHandlers } from './files-service';
import { mappingHandlers } from './mapping-service';
import { dmaHandlers } from './dma-service';
import { OpStreamRegistry } from './files-streams';
import { instrument } from './instrument';
import { raiseConnectionWindow, raiseStreamWindow, SERVER_OPTIONS } from './flow-control';
import { SHUTDOWN_GRACE_MS } from './limits';
import { sessionHandlers } from './session-service';
import type { StreamMemory } from './stream-memory';

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
}

export class RpcServer {
  private stopping: Promise<void> | null = null;

  private constructor(
    private readonly server: grpc.Server,
    readonly sessions: SessionTable,
    private readonly streams: OpStreamRegistry,
    /** The bound address, host:port with the real port. */
    readonly address: string,
    private readonly log: Logger,
  ) {}

  static async start(options: RpcServerOptions): Promise<RpcServer> {
    const { fs, log } = options;
    const proto = loadDaxdProto().daxd.v1;
    const sessions = new SessionTable({ log, maxSessions: options.maxSessions });
    const streams = new OpStreamRegistry();
    const server = new grpc.Server(SERVER_OPTIONS);
    if (!raiseStreamWindow(server)) log.warn('grpc-js internals changed: HTTP/2 stream window left at its default');
    const metrics = options.metrics ?? new Metrics();
    const add = <H extends grpc.UntypedServiceImplementation>(service: grpc.ServiceDefinition, handlers: H) => server.addService(service, instrument(service, handlers, metrics, log));
    add(proto.Session.service, sessionHandlers(sessions, log));
    add(proto.Files.service, filesHandlers(fs, log, streams, (ino, datasync) => options.dax.fsync(ino, datasync), metrics));
    add(proto.Mapping.service, mappingHandlers(options.dax, sessions, log));
    add(proto.Dma.service, dmaHandlers(options.dax, sessions, log));
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(options.address, grpc.ServerCredentials.createInsecure(), (err, boundPort) => {
        if (err) reject(new ListenError(options.address, err));
        else resolve(boundPort);
      });
    });
    if (!raiseConnectionWindow(server)) log.warn('grpc-js internals changed: HTTP/2 connection window left at its default');
    return new RpcServer(server, sessions, streams, withPort(options.address, port), log);
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
    const drained = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    for (const stream of this.streams) stream.drain();
    await this.sessions.closeAll();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), graceMs);
    });
    const late = await Promise.race([drained.then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) {
      this.log.warn({ graceMs }, 'calls still open after the shutdown grace period: cancelling them');
      this.server.forceShutdown();
    }
  }
}

/** "host:0" -> "host:port" (IPv6 hosts keep their brackets). */
function withPort(address: string, port: number): string {
  const colon = address.lastIndexOf(':');
  const host = colon < 0 ? address : address.slice(0, colon);
  return `${host}:${port}`;
}
