/**
 * What an NBD connection is given by its server (nbd-server.ts): the engine, the exports,
 * the limits, the observer that turns its requests into metrics, TLS and the principals'
 * authenticator and quotas. Types only: the connection (connection.ts) is the behaviour.
 */
import type { Logger } from 'pino';
import type { Authenticator } from '../auth/authenticator';
import type { QuotaLedger } from '../auth/quota';
import type { Dax } from '../dax/dax';
import type { FileSystem } from '../fs/filesystem';
import type { LayoutBreakPolicy } from '../fs/types';
import type { BufferPool } from './buffer-pool';
import type { Exports } from './exports';
import type { NbdTlsOptions } from './starttls';
import type { CommandName } from './wire-format';

export interface NbdLimits {
  connectionsMax: number;
  requestsInFlightMax: number;
  connectionBytesBufferedMax: number;
  handshakeMsMax: number;
  optionsMax: number;
  optionBytesMax: number;
  layoutBreakTimeoutMs: number;
}

/** Where the server's I/O and requests are reported (metrics: server/server.ts wires it). */
export interface NbdObserver {
  connectionOpened?(): void;
  connectionClosed?(): void;
  /** A request answered (errno 0: success); `bytes`: data read or written. */
  request?(command: CommandName, seconds: number, errno: number, bytes: number): void;
  /** A STARTTLS upgrade ended: `ok`, or `failed` (handshake error, certificate refused, client gone, timeout). */
  tlsHandshake?(outcome: 'ok' | 'failed'): void;
}

export interface ConnectionDeps {
  fs: FileSystem;
  dax: Dax;
  exports: Exports;
  log: Logger;
  observer: NbdObserver;
  policy: LayoutBreakPolicy;
  limits: NbdLimits;
  /** Large reply and payload buffers for reuse (server-wide). */
  pool: BufferPool;
  shuttingDown(): boolean;
  /** STARTTLS (absent: mode off). */
  tls?: NbdTlsOptions;
  /** Quotas of principals (absent: none are enforced over NBD, as in tests of the NBD server alone). */
  quota?: QuotaLedger;
  /** Principals from client certificates (null: auth off, every connection is OPEN_ACCESS). */
  auth: Authenticator | null;
  /** A cluster node: throws FencedError while it is fenced (WRITE, TRIM, WRITE_ZEROES are refused). */
  fence?: () => void;
  /** A cluster node: a drain's switch of the file (server/cluster/drain-gate.ts): undefined to go on now, else a promise to wait for; throws NotOwnerError once the file moved. */
  gate?: (ino: number) => Promise<void> | undefined;
}
