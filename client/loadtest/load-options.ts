/**
 * The options of one daxd-load run (the CLI builds them from flags; the bench builds them
 * directly) and the bounds they are checked against.
 */
export const WORKLOAD_NAMES = [
  'randread', 'randwrite', 'randrw', 'seqread', 'seqwrite',
  'fault-read-hole', 'fault-write-allocate', 'fault-mapped',
  'mapped-load', 'mapped-store', 'mapped-rw',
  'pin-churn', 'pin-stream', 'truncate-vs-pin', 'mixed',
] as const;
export type WorkloadName = (typeof WORKLOAD_NAMES)[number];

/** Bounds of the knobs: every loop and queue of a run is bounded by these. */
export const CLIENTS_MAX = 64;
export const QD_MAX = 1024;
/** Workers in all (clients x qd): each may hold a session, and a server takes 1024. */
export const WORKERS_MAX = 1024;
export const WORKERS_WITH_SESSIONS_MAX = 512;
export const FILES_MAX = 1024;
export const BS_BYTES_MAX = 16 * 1024 * 1024;
export const BATCH_MAX = 1024;
/** Pages in one pin (the server's PIN_PAGES_MAX). */
export const PIN_PAGES_MAX = 1024;
export const DURATION_MS_MAX = 24 * 3600 * 1000;
/** Failures after which a run stops early (it has failed anyway). */
export const ERRORS_MAX = 100;
/** How long a stopping run waits for its workers' last ops before giving up on them. */
export const DRAIN_MS_MAX = 30_000;

export interface LoadOptions {
  /** host:port of the daxd to load. */
  address: string;
  workload: WorkloadName;
  clients: number;
  /** Workers (outstanding requests) per client. */
  qd: number;
  bsBytes: number;
  /** Size of each file. */
  sizeBytes: number;
  files: number;
  /** Measured phase length; null: until opsMax. At least one of the two is set. */
  durationMs: number | null;
  /** Requests across all workers; null: until durationMs. */
  opsMax: number | null;
  seed: number;
  verify: boolean;
  /** randrw, mapped-rw, pin-churn, pin-stream: percentage of reads. */
  mixPct: number;
  /** Fault storms: pages per FaultBatch (and per mapped round). */
  batch: number;
  /** Time series resolution. */
  sampleMs: number;
  /** Files are named PREFIX.N. */
  filePrefix: string;
  keepFiles: boolean;
  /** Live progress bar on stderr. */
  progress: boolean;
}

export const DEFAULT_LOAD_OPTIONS: Omit<LoadOptions, 'address' | 'seed'> = {
  workload: 'randread', clients: 1, qd: 16, bsBytes: 4096, sizeBytes: 64 * 1024 * 1024, files: 1,
  durationMs: 10_000, opsMax: null, verify: false, mixPct: 50, batch: 64, sampleMs: 1000,
  filePrefix: 'daxd-load', keepFiles: false, progress: true,
};
