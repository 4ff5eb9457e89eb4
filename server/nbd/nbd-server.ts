/**
 * The NBD server of daxd: a TCP listener whose connections (connection.ts) serve daxd
 * files as NBD exports, over the same engine as the gRPC server.
 *
 * Connections: at most NBD_CONNECTIONS_MAX; one more is closed at accept (a hard
 * disconnect before the greeting: there is no way to send an error that early).
 *
 * Stop: stop accepting; connections still negotiating are closed; the others answer
 * later requests ESHUTDOWN, stop their layout-break waits, answer what is in flight and
 * close. After graceMs whatever is still open is destroyed. stop() resolves once no
 * request of any connection runs in the engine, so the caller may unmount.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import type { Authenticator } from '../auth/authenticator';
import type { QuotaLedger } from '../auth/quota';
import type { Dax } from '../dax/dax';
import type { FileSystem } from '../fs/filesystem';
import type { LayoutBreakPolicy } from '../fs/types';
import { BufferPool } from './buffer-pool';
import { NbdConnection } from './connection';
import type { NbdLimits, NbdObserver } from './connection-deps';
import { Exports } from './exports';
import {
  NBD_CONNECTION_BYTES_BUFFERED_MAX, NBD_CONNECTIONS_MAX, NBD_HANDSHAKE_MS_MAX, NBD_LAYOUT_BREAK_TIMEOUT_MS, NBD_OPTION_BYTES_MAX, NBD_OPTIONS_MAX,
  NBD_REQUESTS_IN_FLIGHT_MAX,
} from './limits';

import type { NbdTlsOptions } from './starttls';

export type { NbdObserver } from './connection-deps';
export type { NbdTlsMode, NbdTlsOptions } from './starttls';

/** The NBD address could not be bound (in use, not local, malformed). */
export class NbdListenError extends Error {
  constructor(address: string, cause: Error) {
    super(`cannot listen for NBD on ${address}: ${cause.message}`, { cause });
    this.name = 'NbdListenError';
  }
}

export interface NbdServerOptions {
  fs: FileSystem;
  dax: Dax;
  log: Logger;
  /** host:port; port 0 picks a free port. */
  address: string;
  /** The export the empty name means (--nbd-default-export). */
  defaultExport?: string;
  /** What TRIM / WRITE_ZEROES do over a pinned page (--nbd-layout-break; default WAIT). */
  layoutBreak?: LayoutBreakPolicy;
  observer?: NbdObserver;
  /** Tests use small ones; defaults from limits.ts. */
  limits?: Partial<NbdLimits>;
  /** NBD_OPT_STARTTLS (starttls.ts); absent: mode off. */
  tls?: NbdTlsOptions;
  /** Principals from client certificates; absent or null: auth off (every connection acts as OPEN_ACCESS). */
  auth?: Authenticator | null;
  /** The principals' quotas (server/auth/quota.ts, shared with gRPC): NBD writes count toward allocated bytes. */
  quota?: QuotaLedger;
  /** A cluster node (server/cluster): throws FencedError while it is fenced; changes are then refused. */
  fence?: () => void;
  /** A cluster node: a drain's switch of the file (server/cluster/drain-gate.ts): undefined to go on now, else a promise to wait for; throws NotOwnerError once the file moved. */
  gate?: (ino: number) => Promise<void> | undefined;
}

/** One open connection, as the admin side lists it. */
export interface NbdConnectionInfo {
  id: number;
  peer: string;
  export: string | null;
  openedAtMs: number;
  inFlight: number;
  /** Bytes held (admitted payloads and replies not yet taken by the kernel), and whether reading is paused. */
  buffered: { bytes: number; paused: boolean };
}

export const DEFAULT_LIMITS: NbdLimits = {
  connectionsMax: NBD_CONNECTIONS_MAX,
  requestsInFlightMax: NBD_REQUESTS_IN_FLIGHT_MAX,
  connectionBytesBufferedMax: NBD_CONNECTION_BYTES_BUFFERED_MAX,
  handshakeMsMax: NBD_HANDSHAKE_MS_MAX,
  optionsMax: NBD_OPTIONS_MAX,
  optionBytesMax: NBD_OPTION_BYTES_MAX,
  layoutBreakTimeoutMs: NBD_LAYOUT_BREAK_TIMEOUT_MS,
};

export class NbdServer {
  private readonly connections = new Set<NbdConnection>();
  private stopping: Promise<void> | null = null;

  private constructor(
    private readonly server: net.Server,
    /** The bound address, host:port with the real port. */
    readonly address: string,
    private readonly log: Logger,
  ) {}

  static async start(options: NbdServerOptions): Promise<NbdServer> {
    const { host, port } = splitAddress(options.address);
    const limits = { ...DEFAULT_LIMITS, ...options.limits };
    const server = net.createServer({ allowHalfOpen: true, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new NbdListenError(options.address, err)));
      server.listen({ host, port, exclusive: true }, () => resolve());
    });
    const bound = server.address() as net.AddressInfo;
    const nbd = new NbdServer(server, `${host.includes(':') ? `[${host}]` : host}:${bound.port}`, options.log);
    const observer = options.observer ?? {};
    const deps = {
      fs: options.fs, dax: options.dax, exports: new Exports(options.fs, options.defaultExport), log: options.log, observer,
      policy: options.layoutBreak ?? 'WAIT', limits, pool: new BufferPool(), shuttingDown: () => nbd.stopping !== null,
      tls: options.tls, auth: options.auth ?? null, quota: options.quota, fence: options.fence, gate: options.gate,
    };
    if (deps.auth !== null && (deps.tls === undefined || deps.tls.mode === 'off')) {
      // Principals come from client certificates only: without TLS no NBD client has one.
      options.log.warn('--auth without NBD TLS: NBD clients have no principal, so they see no export (add --tls-cert/--tls-key, or --nbd off)');
    }
    server.on('error', (err) => options.log.error({ err }, 'nbd listener error'));
    server.on('connection', (socket) => {
      if (nbd.stopping !== null || nbd.connections.size >= limits.connectionsMax) {
        options.log.warn({ peer: `${socket.remoteAddress}:${socket.remotePort}`, connections: nbd.connections.size, max: limits.connectionsMax },
          nbd.stopping !== null ? 'nbd connection refused: shutting down' : 'nbd connection refused: NBD_CONNECTIONS_MAX reached');
        socket.destroy();
        return;
      }
      const conn = new NbdConnection(socket, deps);
      nbd.connections.add(conn);
      observer.connectionOpened?.();
      void conn.done.then(() => {
        nbd.connections.delete(conn);
        observer.connectionClosed?.();
      });
    });
    return nbd;
  }

  /** Open connections (for the admin API and dashboard). */
  list(): NbdConnectionInfo[] {
    return [...this.connections].map((c) => ({ id: c.id, peer: c.peer, export: c.exportInfo?.name ?? null, openedAtMs: c.openedAtMs, inFlight: c.inFlight, buffered: c.bufferedState() }));
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** See the top of the file. Idempotent. */
  stop(graceMs: number): Promise<void> {
    if (this.stopping === null) this.stopping = this.runStop(graceMs);
    return this.stopping;
  }

  private async runStop(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.connections) c.shutdown();
    const all = () => Promise.all([...this.connections].map((c) => c.done));
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([
      all().then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs))),
    ]);
    clearTimeout(timer);
    if (late) {
      this.log.warn({ graceMs, connections: this.connections.size }, 'nbd connections still open after the shutdown grace period: closing them');
      for (const c of this.connections) c.destroy();
      await all();
    }
    await closed;
  }
}

/** "host:port" (IPv6 as [::1]:port) -> parts; throws NbdListenError on anything else. */
export function splitAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address);
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || !Number.isInteger(port) || port > 65535) throw new NbdListenError(address, new Error('expected HOST:PORT (port 0 picks a free port)'));
  return { host: m[1] ?? m[2], port };
}
