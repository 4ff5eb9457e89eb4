/**
 * What the HTTP plugins read: the live server's layers, its metrics registry, and a few
 * facts about the process. Every plugin takes these as its options; none keeps state.
 */
import type { Dax } from '../dax/dax';
import type { FileSystem, MountReport } from '../fs/filesystem';
import type { Metrics } from '../metrics';
import type { SessionTable } from '../session/session-table';

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

export interface HttpDeps {
  fs: FileSystem;
  dax: Dax;
  sessions: SessionTable;
  metrics: Metrics;
  readiness(): Readiness;
  facts: ServerFacts;
}
