/**
 * The one prom-client registry of a daxd. Every layer records through it: the rpc layer
 * directly (durations, I/O), the dax layer and the journal through observers the server
 * plugs in (server/slow-ops.ts), and the rest is read at scrape time from counters the
 * layers keep anyway (collect callbacks), so the core carries no metric code.
 *
 * Names end in base units (`_seconds`, `_bytes_total`); every label has a fixed, small
 * set of values (an RPC method, a status code, a fault kind...), never an inode, an
 * offset or a page index. One registry per server (tests run several in one process).
 * README.md ("Metrics") lists them all.
 */
import * as grpc from '@grpc/grpc-js';
import * as prom from 'prom-client';
import type { Dax } from './dax/dax';
import type { LayoutBreakOutcome } from './dax/observer';
import type { FileSystem } from './fs/filesystem';
import type { LayoutBreakPolicy } from './fs/types';
import { HotHistogram, type HotRecorder } from './metrics-hot';
import type { CommandName } from './nbd/wire-format';
import type { SessionTable } from './session/session-table';
import type { StreamMemory } from './rpc/stream-memory';

/** Unary RPCs take ~60 µs of server CPU: the buckets start at 50 µs, the defaults at 5 ms. */
export const RPC_DURATION_BUCKETS_SECONDS = [
  50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10,
];
/** An entry lock is held across awaits only (a MAP_SYNC commit, a flush): waits start near 10 µs. */
export const ENTRY_LOCK_WAIT_BUCKETS_SECONDS = [
  10e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10,
];
/** Layout changes wait for unpins: bounded by the call's deadline or the RECALL grace. */
export const LAYOUT_BREAK_WAIT_BUCKETS_SECONDS = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
export const JOURNAL_COMMIT_BUCKETS_SECONDS = [50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 5];
/** An NBD request is served in ~10 µs of CPU: the buckets start at 10 µs (FLUSH and waiting TRIMs reach seconds). */
export const NBD_REQUEST_DURATION_BUCKETS_SECONDS = [
  10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10,
];

export const IO_PATHS = ['file', 'mapping', 'dma', 'nbd'] as const;
/** file: Files.Read/Write and the op streams; mapping: Load/Store; dma: Dma.Read/Write; nbd: NBD READ/WRITE. */
export type IoPath = (typeof IO_PATHS)[number];
export type IoDirection = 'read' | 'write';

/** The live server state the collect callbacks read at scrape time. */
export interface MetricSources {
  fs: FileSystem;
  dax: Dax;
  sessions: SessionTable;
  /** The op streams' memory account (absent in tests that run no gRPC server). */
  streamMemory?: StreamMemory;
}

/** What the cluster metrics read at scrape time (server/cluster; only a node started with --etcd has them). */
export interface ClusterMetricsSource {
  fenced: boolean;
  liveNodes: number;
  /** Nodes that hold files but have no live registration. */
  downNodes: number;
  /** NOT_OWNER answers since start. */
  redirects: number;
  /** A drain of this node is running; files it moved / left in place, bytes it copied, since start. */
  draining: boolean;
  drainFilesMoved: number;
  drainFilesFailed: number;
  drainBytes: number;
}

type Labels = Record<string, string>;
type Samples = Array<[Labels, number]>;

/** gRPC status code -> its name ("OK", "NOT_FOUND"): the `code` label. */
export function statusName(code: number): string {
  return grpc.status[code] ?? 'UNKNOWN';
}

/** prom-client default metrics left out of /metrics: gauges with a counter's `_total` suffix. */
const NODEJS_GAUGES_NAMED_LIKE_COUNTERS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export class Metrics {
  readonly registry = new prom.Registry();
  private sources: MetricSources | null = null;

  private readonly rpcDuration: HotHistogram;
  private readonly rpcChildren = new Map<string, HotRecorder>();
  private readonly streamOpErrors: prom.Counter<'method' | 'code'>;
  private readonly ioOps: Record<IoPath, Record<IoDirection, prom.Counter.Internal>>;
  private readonly ioBytes: Record<IoPath, Record<IoDirection, prom.Counter.Internal>>;
  private readonly lockWaits: prom.Counter;
  private readonly lockWaitSeconds: prom.Histogram;
  private readonly layoutBreakWaits: prom.Counter<'policy' | 'outcome'>;
  private readonly layoutBreakWaitSeconds: prom.Histogram<'policy' | 'outcome'>;
  private readonly journalCommitSeconds: prom.Histogram;
  private readonly nbdConnections: prom.Gauge;
  private readonly nbdConnectionsOpened: prom.Counter;
  private readonly nbdTlsHandshakes: prom.Counter<'outcome'>;
  private readonly nbdRequestDuration: HotHistogram;
  private readonly nbdRequestChildren = new Map<string, HotRecorder>();
  /**
   * I/O ops and bytes not yet added to daxd_io_*: added at scrape time (flushIo, the collect
   * of both families). Recording is two additions: prom-client's inc() cost ~3 µs of the
   * ~60 µs of server CPU a 4 KiB stream op takes (profiled), more than the op's block lookup.
   */
  private readonly ioPending = Object.fromEntries(IO_PATHS.map((path) => [path, { read: { ops: 0, bytes: 0 }, write: { ops: 0, bytes: 0 } }])) as
    Record<IoPath, Record<IoDirection, { ops: number; bytes: number }>>;

  constructor() {
    const registers = [this.registry];
    prom.collectDefaultMetrics({ register: this.registry });
    // prom-client exports these three totals as gauges named like counters, which `promtool
    // check metrics` refuses (exit 3). Each is the sum of its per-type gauge
    // (nodejs_active_handles{type}, ..._requests, ..._resources), which stays.
    for (const name of NODEJS_GAUGES_NAMED_LIKE_COUNTERS) this.registry.removeSingleMetric(name);

    // ---- rpc ------------------------------------------------------------------------
    // A hot histogram (metrics-hot.ts): prom-client's observe() hashes and checks the labels
    // on every call, ~2% of a unary Files.Read's server CPU (profiled).
    this.rpcDuration = new HotHistogram('daxd_rpc_duration_seconds', 'Unary RPCs by method and gRPC status code, from call to reply.',
      RPC_DURATION_BUCKETS_SECONDS, this.registry);
    this.streamOpErrors = new prom.Counter({
      name: 'daxd_stream_op_errors_total', help: 'Ops of Files.ReadStream/WriteStream and Dma.Stream that failed, by status code.',
      labelNames: ['method', 'code'], registers,
    });
    const ioOps = new prom.Counter({
      name: 'daxd_io_ops_total', help: 'Data operations served: file read/write (unary and stream ops), mapping load/store, DMA read/write.',
      labelNames: ['path', 'direction'], registers, collect: () => this.flushIo(),
    });
    const ioBytes = new prom.Counter({
      name: 'daxd_io_bytes_total', help: 'Data bytes read and written, by path.', labelNames: ['path', 'direction'], registers, collect: () => this.flushIo(),
    });
    const bind = (c: prom.Counter<'path' | 'direction'>) => Object.fromEntries(IO_PATHS.map((path) => [path, {
      read: c.labels(path, 'read'), write: c.labels(path, 'write'),
    }])) as Record<IoPath, Record<IoDirection, prom.Counter.Internal>>;
    this.ioOps = bind(ioOps);
    this.ioBytes = bind(ioBytes);

    // ---- entry locks, layout breaks, journal (observers) ----------------------------
    this.lockWaits = new prom.Counter({
      name: 'daxd_entry_lock_waits_total', help: 'Requests that queued behind a locked mapping entry (S1).', registers,
    });
    this.lockWaitSeconds = new prom.Histogram({
      name: 'daxd_entry_lock_wait_seconds', help: 'Time a request waited for a mapping entry lock.',
      buckets: ENTRY_LOCK_WAIT_BUCKETS_SECONDS, registers,
    });
    this.layoutBreakWaits = new prom.Counter({
      name: 'daxd_layout_break_waits_total', help: 'Layout changes (truncate, punch, zero, collapse) that met a pinned page (S4), by layout_break policy and outcome.',
      labelNames: ['policy', 'outcome'], registers,
    });
    this.layoutBreakWaitSeconds = new prom.Histogram({
      name: 'daxd_layout_break_wait_seconds', help: 'Time a layout change waited for pins to drop.',
      labelNames: ['policy', 'outcome'], buckets: LAYOUT_BREAK_WAIT_BUCKETS_SECONDS, registers,
    });
    this.journalCommitSeconds = new prom.Histogram({
      name: 'daxd_journal_commit_duration_seconds', help: 'Journal commit latency: ordered data flush, log write and flush, checkpoint.',
      buckets: JOURNAL_COMMIT_BUCKETS_SECONDS, registers,
    });

    // ---- NBD (server/nbd: its observer calls the nbd* methods below) ------------------
    this.nbdConnections = new prom.Gauge({
      name: 'daxd_nbd_connections', help: 'NBD connections open now (handshake or transmission).', registers,
    });
    this.nbdConnectionsOpened = new prom.Counter({
      name: 'daxd_nbd_connections_opened_total', help: 'NBD connections accepted.', registers,
    });
    this.nbdTlsHandshakes = new prom.Counter({
      name: 'daxd_nbd_tls_handshakes_total', help: 'NBD_OPT_STARTTLS upgrades by outcome: ok, or failed (handshake error, certificate refused, client gone, timeout).',
      labelNames: ['outcome'], registers,
    });
    this.nbdRequestDuration = new HotHistogram('daxd_nbd_request_duration_seconds',
      'NBD requests by command and outcome (ok, or the NBD error name), from the header read to the reply handed to the socket.',
      NBD_REQUEST_DURATION_BUCKETS_SECONDS, this.registry);

    this.defineSampled();
  }

  /** A cluster node: daxd_cluster_* read `read()` at scrape time. Called once. */
  attachCluster(read: () => ClusterMetricsSource): void {
    const registers = [this.registry];
    new prom.Gauge({
      name: 'daxd_cluster_fenced', help: '1 while this node is fenced (refusing mutating calls: no lease renewal for 2/3 of its TTL, or not registered yet).',
      registers, collect() { this.set(read().fenced ? 1 : 0); },
    });
    new prom.Gauge({
      name: 'daxd_cluster_nodes', help: 'Cluster nodes as this node sees them: live (registered) or down (holding files, not registered).',
      labelNames: ['state'], registers,
      collect() {
        const r = read();
        this.set({ state: 'live' }, r.liveNodes);
        this.set({ state: 'down' }, r.downNodes);
      },
    });
    new prom.Counter({
      name: 'daxd_cluster_redirects_total', help: 'Calls by name this node answered NOT_OWNER (placed on another node).',
      registers, collect() { this.reset(); this.inc(read().redirects); },
    });
    new prom.Gauge({
      name: 'daxd_cluster_draining', help: '1 while this node is being drained (Cluster.Drain moving its files off).',
      registers, collect() { this.set(read().draining ? 1 : 0); },
    });
    new prom.Counter({
      name: 'daxd_cluster_drain_files_total', help: 'Files a drain of this node moved to another node, or left in place (failed).',
      labelNames: ['result'], registers,
      collect() {
        const r = read();
        this.reset();
        this.inc({ result: 'moved' }, r.drainFilesMoved);
        this.inc({ result: 'failed' }, r.drainFilesFailed);
      },
    });
    new prom.Counter({
      name: 'daxd_cluster_drain_bytes_total', help: 'Bytes drains of this node copied to other nodes (catch-up copies included).',
      registers, collect() { this.reset(); this.inc(read().drainBytes); },
    });
  }

  /** The server is up: collect callbacks read its state from now on. */
  attach(sources: MetricSources): void {
    this.sources = sources;
  }

  // ---- recording (hot paths: no label hashing after the first call) -------------------

  rpcFinished(method: string, code: string, seconds: number): void {
    const key = `${method} ${code}`;
    let child = this.rpcChildren.get(key);
    if (!child) this.rpcChildren.set(key, (child = this.rpcDuration.child({ method, code })));
    child.observe(seconds);
  }

  io(path: IoPath, direction: IoDirection, bytes: number): void {
    const p = this.ioPending[path][direction];
    p.ops++;
    p.bytes += bytes;
  }

  streamOpFailed(method: string, code: string): void {
    this.streamOpErrors.labels(method, code).inc();
  }

  entryLockWaitStarted(): void {
    this.lockWaits.inc();
  }

  entryLockWaited(seconds: number): void {
    this.lockWaitSeconds.observe(seconds);
  }

  layoutBreakWaited(policy: LayoutBreakPolicy, outcome: LayoutBreakOutcome, seconds: number): void {
    this.layoutBreakWaits.labels(policy, outcome).inc();
    this.layoutBreakWaitSeconds.labels(policy, outcome).observe(seconds);
  }

  journalCommitted(seconds: number): void {
    this.journalCommitSeconds.observe(seconds);
  }

  /** An NBD READ or WRITE served: daxd_io_*{path="nbd"}, counted in plain numbers on the hot path. */
  nbdIo(direction: IoDirection, bytes: number): void {
    this.io('nbd', direction, bytes);
  }

  /** Adds the pending I/O to daxd_io_* (their collect: every scrape reads them after this). */
  private flushIo(): void {
    for (const path of IO_PATHS) {
      for (const direction of ['read', 'write'] as const) {
        const p = this.ioPending[path][direction];
        if (p.ops > 0) this.ioOps[path][direction].inc(p.ops);
        if (p.bytes > 0) this.ioBytes[path][direction].inc(p.bytes);
        p.ops = 0;
        p.bytes = 0;
      }
    }
  }

  nbdConnectionOpened(): void {
    this.nbdConnections.inc();
    this.nbdConnectionsOpened.inc();
  }

  nbdConnectionClosed(): void {
    this.nbdConnections.dec();
  }

  nbdTlsHandshake(outcome: 'ok' | 'failed'): void {
    this.nbdTlsHandshakes.inc({ outcome });
  }

  /** One NBD request answered: `outcome` is 'ok' or the NBD error name (EINVAL, ENOSPC, ...). */
  /** `command`: the NBD_CMD_ name (READ, WRITE, FLUSH, ...: a fixed set, server/nbd/wire-format.ts). */
  nbdRequestFinished(command: CommandName, outcome: string, seconds: number): void {
    const key = `${command} ${outcome}`;
    let child = this.nbdRequestChildren.get(key);
    if (!child) this.nbdRequestChildren.set(key, (child = this.nbdRequestDuration.child({ command, outcome })));
    child.observe(seconds);
  }

  // ---- read at scrape time --------------------------------------------------------------

  private defineSampled(): void {
    const counter = (name: string, help: string, labelNames: string[], read: (src: MetricSources) => Samples | number) =>
      this.sampled('counter', name, help, labelNames, read);
    const gauge = (name: string, help: string, labelNames: string[], read: (src: MetricSources) => Samples | number) =>
      this.sampled('gauge', name, help, labelNames, read);
    // The dax layer's read-only API: each read is a frozen copy (server/dax/dax.ts).

    // dax layer: faults, invalidations, writeback, pins (dax-context.ts counters, pin.ts stats)
    counter('daxd_page_faults_total', 'Page faults by outcome: hole (zero page), allocate (new zeroed block), mapped (existing block), cow (private copy), sync (MAP_SYNC commit, also counted as allocate or mapped), '
      + 'pmd (PMD faults that mapped 2 MiB with one PTE, also counted as hole, allocate or mapped), pmd_fallback (PMD faults that fell back to a 4 KiB fault, which is counted too).',
      ['kind'], (src) => entries(src.dax.counters().faults, 'kind'));
    counter('daxd_pmd_fallbacks_total', 'PMD faults that fell back to a 4 KiB fault, by reason: CROSSES_EOF, NOT_CONTIGUOUS, PTE_ENTRIES, PTE_LOCKED, COW, NO_ALIGNED_SPACE.',
      ['reason'], (src) => entries(src.dax.counters().pmdFallbacks, 'reason'));
    counter('daxd_pte_invalidations_total', 'PTEs revoked by invalidation, by reason (HOLE_FILLED, TRUNCATE, PUNCH_HOLE, WRITEBACK, ...).',
      ['reason'], (src) => entries(src.dax.counters().invalidations, 'reason'));
    counter('daxd_ptes_revoked_total', 'Every PTE revoked: invalidations, unmaps and session ends.', [], (src) => src.dax.counters().revokedPtes);
    counter('daxd_writeback_flushes_total', 'Dirty mapped pages written back (msync, fsync, shutdown).', [], (src) => src.dax.counters().writebackFlushes);
    gauge('daxd_ptes', 'PTE tokens outstanding.', [], (src) => src.dax.stats().ptes);
    gauge('daxd_address_spaces', 'Files with a live address space (mapped, pinned or locked).', [], (src) => src.dax.stats().addressSpaces);
    gauge('daxd_mapping_entries', 'Mapping entries in all address spaces, by order: 0 (a 4 KiB page), 9 (a 2 MiB PMD entry, one entry for its 512 pages).',
      ['order'], (src) => {
        const o = src.dax.occupancy();
        return [[{ order: '0' }, o.mappingEntries - o.mappingEntriesPmd], [{ order: '9' }, o.mappingEntriesPmd]];
      });
    gauge('daxd_entry_locks_held', 'Mapping entry locks held now.', [], (src) => src.dax.occupancy().entryLocksHeld);
    gauge('daxd_entry_lock_waiters', 'Requests waiting for a mapping entry lock now.', [], (src) => src.dax.occupancy().entryLockWaiters);
    gauge('daxd_layout_breaks_waiting', 'Layout changes waiting for pins to drop now.', [], (src) => src.dax.occupancy().layoutBreaksWaiting);
    gauge('daxd_pins_active', 'DMA pins held (active or recalled).', [], (src) => src.dax.pinStats().active);
    gauge('daxd_pinned_blocks', 'Blocks referenced by DMA pins.', [], (src) => src.dax.pinStats().pinnedBlocks);
    counter('daxd_pin_revocations_total', 'Pins revoked (RECALL grace over, lease expired).', [], (src) => src.dax.pinStats().revocations);
    counter('daxd_pin_recalls_total', 'PinRecall events sent (layout_break RECALL).', [], (src) => src.dax.pinStats().recalls);

    // journal
    counter('daxd_journal_commits_total', 'Journal transactions committed.', [], (src) => src.fs.journal.stats.commits);
    counter('daxd_journal_blocks_logged_total', 'Metadata block images written to the journal.', [], (src) => src.fs.journal.stats.blocksLogged);

    // volume
    gauge('daxd_volume_blocks', 'Data-zone blocks by state: free, used (file data and block maps), unwritten (preallocated, a part of used; absent while the first count runs).',
      ['state'], (src) => {
        const v = src.fs.statVolume();
        const out: Samples = [[{ state: 'free' }, v.blocksFree], [{ state: 'used' }, v.blocksUsed]];
        const unwritten = src.fs.unwrittenBlocks();
        if (unwritten !== null) out.push([{ state: 'unwritten' }, unwritten]);
        return out;
      });
    gauge('daxd_volume_size_bytes', 'Size of the volume.', [], (src) => src.fs.statVolume().sizeBytes);
    gauge('daxd_volume_files', 'Files in the namespace.', [], (src) => src.fs.statVolume().files);
    gauge('daxd_volume_max_files', 'Size of the inode table.', [], (src) => src.fs.statVolume().maxFiles);

    // op streams and data-moving unary calls (bounded by STREAM/CONNECTION/SERVER_BYTES_BUFFERED_MAX)
    gauge('daxd_stream_bytes_buffered', 'Data bytes the op streams and data-moving unary calls hold now: ops running and replies not yet handed to HTTP/2.', [],
      (src) => src.streamMemory?.bytes ?? 0);

    // sessions
    gauge('daxd_sessions_active', 'Open sessions.', [], (src) => src.sessions.size);
    counter('daxd_sessions_opened_total', 'Sessions opened.', [], (src) => src.sessions.stats.opened);
    counter('daxd_sessions_ended_total', 'Sessions ended, by reason: closed, expired (missed lease), shutdown.',
      ['reason'], (src) => entries(src.sessions.stats.ended, 'reason'));
  }

  private sampled(kind: 'counter' | 'gauge', name: string, help: string, labelNames: string[], read: (src: MetricSources) => Samples | number): void {
    const sources = () => this.sources;
    const fill = (set: (labels: Labels, value: number) => void): void => {
      const src = sources();
      if (src === null) return;
      const value = read(src);
      if (typeof value === 'number') set({}, value);
      else for (const [labels, v] of value) set(labels, v);
    };
    if (kind === 'counter') {
      new prom.Counter({
        name, help, labelNames, registers: [this.registry],
        collect() {
          this.reset();
          fill((labels, v) => this.inc(labels, v));
        },
      });
    } else {
      new prom.Gauge({
        name, help, labelNames, registers: [this.registry],
        collect() {
          this.reset();
          fill((labels, v) => this.set(labels, v));
        },
      });
    }
  }
}

function entries(record: Readonly<Record<string, number>>, label: string): Samples {
  return Object.entries(record).map(([k, v]) => [{ [label]: k }, v]);
}
