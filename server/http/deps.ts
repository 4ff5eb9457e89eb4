/**
 * What the HTTP plugins read: the live server's layers, its metrics registry, and a few
 * facts about the process. Every plugin takes these as its options; none keeps state.
 */
import type { Authenticator } from '../auth/authenticator';
import type { Dax } from '../dax/dax';
import type { FileSystem, MountReport } from '../fs/filesystem';
import type { Metrics } from '../metrics';
import type { SessionTable } from '../session/session-table';
import type { DrainProgress } from '../cluster/keys';

export interface Readiness {
  /** The volume is mounted and not being unmounted. */
  volumeMounted: boolean;
  /** Mount replayed (or discarded) the journal: metadata is consistent. */
  journalReplayed: boolean;
  /** The gRPC server takes new calls (false once a graceful stop began). */
  acceptingCalls: boolean;
}

export interface ServerFacts {
  version: string;
  volumePath: string;
  grpcAddress: string;
  /** Filled in once the HTTP server is bound. */
  httpAddress: string;
  startedAtMs: number;
  mount: MountReport;
}

/** One open NBD connection, as the admin API lists it (server/nbd's NbdServer.list()). */
export interface NbdConnectionRow {
  id: number;
  /** The client's host:port. */
  peer: string;
  /** The export (file name) once negotiated; null during the handshake. */
  export: string | null;
  openedAtMs: number;
  /** Requests received and not yet answered. */
  inFlight: number;
}

/** What the HTTP side reads of the NBD server (NbdServer satisfies it). */
export interface NbdView {
  readonly address: string;
  readonly connectionCount: number;
  list(): NbdConnectionRow[];
}

/** `--metrics-auth`: /metrics open (none), or for any principal's token (token; needs --auth). */
export type MetricsAuth = 'none' | 'token';

/** A cluster node's view of its cluster (server/cluster), for GET /api/v1/cluster and the dashboard. */
export interface ClusterStatus {
  self: string;
  fenced: boolean;
  /** Live nodes, then nodes that hold files but are down, by name. */
  nodes: Array<{ name: string; state: 'live' | 'down'; grpc: string; capacityBytes: number; freeBytes: number; files: number; drain: ClusterDrainStatus | null }>;
}

/** A drain in progress on a node (its etcd record; server/cluster/drain.ts). */
export type ClusterDrainStatus = DrainProgress;

export interface HttpDeps {
  fs: FileSystem;
  dax: Dax;
  sessions: SessionTable;
  metrics: Metrics;
  /** The NBD export, when the server runs one. */
  nbd?: NbdView | null;
  readiness(): Readiness;
  facts: ServerFacts;
  /** `--auth`: who may call (auth-hook.ts); null = auth off, every route open. */
  auth: Authenticator | null;
  metricsAuth: MetricsAuth;
  /** A cluster node (--etcd): its view of the cluster; absent or null for a lone server. */
  cluster?: (() => ClusterStatus) | null;
}
