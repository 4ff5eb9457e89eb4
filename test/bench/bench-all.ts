/**
 * `npm run bench`: daxd and its baselines side by side, in the same run, on this machine.
 * Prints one table (and one JSON line, also written to test-artifacts/bench-all.json) and
 * the exact commands of the baselines. Not part of `npm test`; nothing fails on a slow
 * figure: the product targets are reported as met or not.
 *
 * daxd is driven by daxd-load's engine (client/loadtest/runner.ts: the SDK's pipelined
 * streams, mappings and pins; one connection) against a daxd child process on 127.0.0.1
 * port 0. Cases: 4 KiB random read/write at QD 1, 16, 64 over a 256 MiB file; 1 MiB
 * sequential read/write at QD 4; fault storms (read on holes, write-allocate, first
 * touches through MappedFile); pin -> DMA -> unpin cycles (write and read).
 *
 * Baselines, same payloads, in the same run:
 * - echo: a bare grpc-js server speaking daxd's Files wire format (test/bench/echo-server.ts),
 *   driven by the same engine and SDK: the transport ceiling;
 * - nbdkit: its file plugin on a 256 MiB file, driven by fio's nbd engine (installed with
 *   apt-get when missing, if we are root; else the bench says how and goes on without);
 * - daxd-nbd: the same daxd's NBD export of its 256 MiB data file, driven by exactly the
 *   fio commands nbdkit gets (only the URI differs): the issue's targets are ratios to
 *   nbdkit in the same run. `npm run bench:nbd` runs just these two (nbd.bench.ts);
 * - TCP: Node net, 1 MiB writes into a sink process over loopback;
 * - mmap: copies into and out of a MAP_SHARED mapping (and first-touch page faults of a
 *   fresh sparse mapping): the memory limit.
 *
 * Each (case, target) runs BENCH_ROUNDS times (default 3) for BENCH_SECONDS (default 1.5),
 * alternating the order of the targets; the table shows medians. The run is bounded
 * (RUN_BUDGET_MS: later rounds are skipped past it).
 *
 * `--before DIR` (or BENCH_BEFORE=DIR): an older build (DIR/dist/cli/main.js, e.g. a
 * worktree of main built beforehand) runs as a second daxd next to this one; every daxd
 * case also runs against it, in the same rounds (the order alternates), and the table gets
 * its figure and the ratio after/before: a before/after table from one run.
 *
 * Rows: CASES are the daxd-load cases (one engine, many targets). Anything else (a bench
 * module of its own: in-process faults, DMA, ...) is a RowSource (bench-rows.ts) listed in
 * EXTRA_ROWS: a function returning BenchRows, called once after the rounds and printed in
 * the second table. Adding one is one line there. CPU us/op is printed per target, client
 * and server separately (client: process.cpuUsage of this process or fio's figure; server:
 * /proc/PID/stat).
 *
 * `--profile` (or BENCH_PROFILE=1) then runs 4 KiB randread QD 64 and 1 MiB seqread QD 4
 * again with the server under --cpu-prof and the client under the inspector's profiler,
 * and prints where the CPU time goes (the profiles are kept in test-artifacts/).
 */
import fs from 'node:fs';
import inspector from 'node:inspector';
import os from 'node:os';
import path from 'node:path';
import { DaxClient } from '../../client';
import { DEFAULT_LOAD_OPTIONS, type LoadOptions, type WorkloadName } from '../../client/loadtest/load-options';
import { startPrivateServer } from '../../client/loadtest/private-server';
import type { LoadFile } from '../../client/loadtest/run-context';
import { runLoad, type RunResult } from '../../client/loadtest/runner';
import { REPO_ROOT, startServer, tempDir } from '../support/start-server';
import { ensureNbdTools, fioArgs, makeImage, runFio, startNbdkit, type FioFigures, type Nbdkit } from './baselines/nbd-fio';
import { daxdNbdTargets } from './nbd-targets';
import { measureRawMmap, type RawMmapFigures } from './baselines/raw-mmap';
import { startTcpSink, tcpBandwidth } from './baselines/tcp-loopback';
import { formatSummary, summarize, type CpuProfile } from './cpu-profile-summary';
import { faultsRows } from './faults-rows';
import { pmdRows } from './pmd-rows';
import { MiB } from '../support/units';
import { startDaxdChild, type DaxdChild } from './daxd-child';
import { processCpuUs, startEcho } from './bench-util';
import { faultsInProcessRows, type BenchRow, type RowSource } from './bench-rows';
import { grpcTargets } from './bench-targets';
import { formatBulk, runBulkBench } from './bulk.bench';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1.5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PROFILE = process.argv.includes('--profile') || process.env.BENCH_PROFILE === '1';
/** Rounds that would start past this are skipped: the whole bench stays under 6 minutes. */
const RUN_BUDGET_MS = 200_000;
/** With --before every daxd case runs twice per round: a larger budget, same bound overall. */
const RUN_BUDGET_BEFORE_MS = 250_000;
/** The older build to compare with (--before DIR / BENCH_BEFORE=DIR), or null. */
const BEFORE_DIR = (() => {
  const i = process.argv.indexOf('--before');
  return i >= 0 ? (process.argv[i + 1] ?? null) : (process.env.BENCH_BEFORE ?? null);
})();
const FILE_BYTES = 256 * 1024 * 1024;
const HOLES_BYTES = 64 * 1024 * 1024;
const KIB4 = 4096;

export interface Measured {
  opsPerSec: number;
  bytesPerSec: number;
  p50Us: number;
  p99Us: number;
  /** CPU per op of the client and of the server process, us (robust to a busy machine). */
  clientCpuUsPerOp: number;
  serverCpuUsPerOp: number;
}

type TargetName = 'daxd' | 'before' | 'echo' | 'nbd' | 'daxd-nbd' | 'tcp';

export interface Case {
  id: string;
  label: string;
  /** What the figure counts. */
  unit: 'IOPS' | 'MB/s' | 'faults/s' | 'cycles/s';
  workload: WorkloadName;
  bs: number;
  qd: number;
  mixPct?: number;
  holes?: boolean;
  /** Targets measured per round besides daxd. */
  with: TargetName[];
  fio?: { rw: 'randread' | 'randwrite' | 'read' | 'write'; bs: string };
}

export const CASES: Case[] = [
  ...[1, 16, 64].map((qd): Case => ({ id: `randread-4k-qd${qd}`, label: `4 KiB randread QD${qd}`, unit: 'IOPS', workload: 'randread', bs: KIB4, qd, with: ['echo', 'nbd', 'daxd-nbd'], fio: { rw: 'randread', bs: '4k' } })),
  ...[1, 16, 64].map((qd): Case => ({ id: `randwrite-4k-qd${qd}`, label: `4 KiB randwrite QD${qd}`, unit: 'IOPS', workload: 'randwrite', bs: KIB4, qd, with: ['echo', 'nbd', 'daxd-nbd'], fio: { rw: 'randwrite', bs: '4k' } })),
  { id: 'seqread-1m-qd4', label: '1 MiB seqread QD4', unit: 'MB/s', workload: 'seqread', bs: MiB, qd: 4, with: ['echo', 'nbd', 'daxd-nbd', 'tcp'], fio: { rw: 'read', bs: '1m' } },
  { id: 'seqwrite-1m-qd4', label: '1 MiB seqwrite QD4', unit: 'MB/s', workload: 'seqwrite', bs: MiB, qd: 4, with: ['echo', 'nbd', 'daxd-nbd', 'tcp'], fio: { rw: 'write', bs: '1m' } },
  { id: 'fault-read-hole', label: 'READ faults on holes (batch 64, QD4)', unit: 'faults/s', workload: 'fault-read-hole', bs: KIB4, qd: 4, holes: true, with: [] },
  { id: 'fault-write-allocate', label: 'WRITE faults allocating (batch 64, QD4)', unit: 'faults/s', workload: 'fault-write-allocate', bs: KIB4, qd: 4, holes: true, with: [] },
  { id: 'fault-mapped', label: 'MappedFile first touches (64/round, QD4)', unit: 'faults/s', workload: 'fault-mapped', bs: KIB4, qd: 4, with: [] },
  // Three unary calls per cycle (Pin, Dma.Write/Read, Unpin), as before Dma.Stream.
  { id: 'pin-write', label: 'pin + 4 KiB DMA write + unpin, QD16', unit: 'cycles/s', workload: 'pin-churn', bs: KIB4, qd: 16, mixPct: 0, with: [] },
  { id: 'pin-read', label: 'pin + 4 KiB DMA read + unpin, QD16', unit: 'cycles/s', workload: 'pin-churn', bs: KIB4, qd: 16, mixPct: 100, with: [] },
  // MappedFile reads of 1 MiB (random slots; PTEs cached after the first touch); "other": 1 MiB Files seqread.
  { id: 'mapped-read-1m', label: 'MappedFile 1 MiB reads, QD4', unit: 'MB/s', workload: 'mapped-load', bs: MiB, qd: 4, with: [] },
  // Dma.Stream: a pin cycle is one op (client.dma); the 1 MiB rows compare with the seq 1 MiB QD4 rows above (Files I/O).
  { id: 'pin-write-stream', label: 'pin + 4 KiB DMA write + unpin, QD16, Dma.Stream', unit: 'cycles/s', workload: 'pin-stream', bs: KIB4, qd: 16, mixPct: 0, with: [] },
  { id: 'pin-read-stream', label: 'pin + 4 KiB DMA read + unpin, QD16, Dma.Stream', unit: 'cycles/s', workload: 'pin-stream', bs: KIB4, qd: 16, mixPct: 100, with: [] },
  { id: 'dma-read-1m-qd4', label: '1 MiB DMA read (pin+read+unpin) QD4, Dma.Stream', unit: 'MB/s', workload: 'pin-stream', bs: MiB, qd: 4, mixPct: 100, with: [] },
  { id: 'dma-write-1m-qd4', label: '1 MiB DMA write (pin+write+unpin) QD4, Dma.Stream', unit: 'MB/s', workload: 'pin-stream', bs: MiB, qd: 4, mixPct: 0, with: [] },
];

/**
 * Bench modules with rows of their own, run once after the rounds, in this order. To add
 * one: write test/bench/<name>.ts exporting a RowSource and add one line here.
 */
export const EXTRA_ROWS: Array<{ name: string; rows: RowSource }> = [
  { name: 'faults in-process', rows: faultsInProcessRows },
  { name: 'faults and mappings (FaultBatch, page table, MappedFile)', rows: faultsRows },
  { name: 'PMD faults against PTE faults (in-process, per 4 KiB covered)', rows: pmdRows },
];

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

export { processCpuUs };

export function median(runs: Measured[]): Measured {
  const mid = (pick: (m: Measured) => number) => {
    const sorted = runs.map(pick).sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  };
  return {
    opsPerSec: mid((m) => m.opsPerSec), bytesPerSec: mid((m) => m.bytesPerSec), p50Us: mid((m) => m.p50Us), p99Us: mid((m) => m.p99Us),
    clientCpuUsPerOp: mid((m) => m.clientCpuUsPerOp), serverCpuUsPerOp: mid((m) => m.serverCpuUsPerOp),
  };
}

interface Endpoint {
  address: string;
  pid: number;
  data: LoadFile;
  holes: LoadFile | null;
}

function loadOptions(address: string, c: Case, file: LoadFile, seconds: number): LoadOptions {
  return {
    ...DEFAULT_LOAD_OPTIONS, address, workload: c.workload, clients: 1, qd: c.qd, bsBytes: c.bs, sizeBytes: file.sizeBytes, files: 1,
    durationMs: seconds * 1000, opsMax: null, seed: 1, verify: false, mixPct: c.mixPct ?? 50, batch: 64, sampleMs: 500, progress: false,
  };
}

/** The daxd-load command line equivalent to a daxd case (printed, for reproduction). */
function loadCommand(c: Case): string {
  return `daxd-load --server ADDR -w ${c.workload} --bs ${c.bs === MiB ? '1M' : '4k'} --qd ${c.qd}${c.mixPct !== undefined ? ` --mix ${c.mixPct}` : ''}`
    + `${c.workload.startsWith('fault') ? ' --batch 64' : ''} --size ${c.holes ? '64M' : '256M'} --duration ${SECONDS}s`;
}

async function runEngine(e: Endpoint, c: Case, seconds: number): Promise<Measured> {
  const file = c.holes ? e.holes : e.data;
  if (!file) throw new Error(`${c.id} needs a holes file`);
  const cpu0 = process.cpuUsage();
  const server0 = processCpuUs(e.pid);
  const r: RunResult = await runLoad(loadOptions(e.address, c, file, seconds), {}, { files: [file] });
  const cpu = process.cpuUsage(cpu0);
  const serverUs = processCpuUs(e.pid) - server0;
  if (!r.passed) throw new Error(`${c.id} against ${e.address} failed: ${JSON.stringify(r.errors)}`);
  const ops = Math.max(1, r.total.ops);
  return {
    opsPerSec: r.total.opsPerSec, bytesPerSec: r.total.bytesPerSec, p50Us: r.total.latencyUs.p50, p99Us: r.total.latencyUs.p99,
    clientCpuUsPerOp: (cpu.user + cpu.system) / ops, serverCpuUsPerOp: serverUs / ops,
  };
}

/** One fio run of case c against an NBD server (nbdkit or daxd's export): the same command but for the URI. */
export function runNbd(nbd: { uri: string; pid: number }, c: { id: string; qd: number; fio?: Case['fio'] }, seconds: number, commands: Set<string>): Measured {
  if (!c.fio) throw new Error(`${c.id} has no fio equivalent`);
  const args = fioArgs(nbd.uri, c.fio.rw, c.fio.bs, c.qd, FILE_BYTES, seconds);
  commands.add(`fio ${args.join(' ')}`);
  const server0 = processCpuUs(nbd.pid);
  const f: FioFigures = runFio(args);
  const serverUs = processCpuUs(nbd.pid) - server0;
  const ops = Math.max(1, f.opsPerSec * seconds);
  return { opsPerSec: f.opsPerSec, bytesPerSec: f.bytesPerSec, p50Us: f.p50Us, p99Us: f.p99Us, clientCpuUsPerOp: f.clientCpuUsPerOp, serverCpuUsPerOp: serverUs / ops };
}

/** Unary Files.Read of 4 KiB against echo at QD16: the ceiling of one unary call (pins make 3 per cycle). */
async function echoUnary(address: string, seconds: number): Promise<number> {
  const client = DaxClient.connect(address);
  try {
    await client.ready();
    const endAt = performance.now() + seconds * 1000;
    const t0 = performance.now();
    let n = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (performance.now() < endAt) {
        await new Promise<void>((resolve, reject) => client.raw.files.Read({ ino: 1, offset: 0, length: KIB4 }, (err) => (err ? reject(err) : resolve())));
        n++;
      }
    }));
    return n / ((performance.now() - t0) / 1000);
  } finally {
    client.close();
  }
}

/** Lays out daxd's bench files: 256 MiB of data, 64 MiB of holes. */
export async function prepareDaxd(address: string): Promise<{ data: LoadFile; holes: LoadFile }> {
  const client = DaxClient.connect(address);
  try {
    const data = await client.create('bench.data');
    const chunk = Buffer.alloc(MiB, 0xa5);
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < FILE_BYTES) {
        const at = next;
        next += MiB;
        await client.write(data.ino, at, chunk);
      }
    }));
    await client.fsync(data.ino);
    const holes = await client.create('bench.holes');
    await client.truncate(holes.ino, HOLES_BYTES);
    const file = (ino: number, name: string, sizeBytes: number): LoadFile => ({ index: 0, ino, name, pages: sizeBytes / KIB4, sizeBytes });
    return { data: file(data.ino, 'bench.data', FILE_BYTES), holes: file(holes.ino, 'bench.holes', HOLES_BYTES) };
  } finally {
    client.close();
  }
}

interface Row {
  c: Case;
  daxd: Measured;
  /** The --before build, same case, same rounds. */
  before?: Measured;
  echo?: Measured;
  nbd?: Measured;
  /** daxd's own NBD export, same fio commands as nbd. */
  daxdNbd?: Measured;
  tcp?: number;
  mmap?: number;
  /** For faults: the raw first-touch fault rate; for pins: echo unary / 3. */
  ref?: { name: string; value: number };
}

function fig(c: Case, m: Measured | undefined): string {
  if (!m) return '-';
  if (c.unit === 'MB/s') return `${(m.bytesPerSec / 1e6).toFixed(0)}`;
  return m.opsPerSec >= 1e4 ? `${(m.opsPerSec / 1000).toFixed(1)}k` : m.opsPerSec.toFixed(0);
}

function value(c: Case, m: Measured): number {
  return c.unit === 'MB/s' ? m.bytesPerSec / 1e6 : m.opsPerSec;
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || b === 0 ? '-' : `${(a / b).toFixed(2)}x`;
}

function render(header: string[], lines: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const line = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...lines.map(line)].join('\n');
}

const num = (v: number | undefined) => (v === undefined ? '-' : v >= 1e4 ? `${(v / 1000).toFixed(1)}k` : v < 10 ? v.toFixed(2) : v.toFixed(0));

/** Throughput per target and the ratios (d = daxd, this build). */
function table(rows: Row[], withBefore: boolean): string {
  const header = ['case', 'unit', 'daxd', ...(withBefore ? ['before', 'd/before'] : []), 'echo', 'nbdkit', 'daxd-nbd', 'TCP', 'mmap', 'other',
    'd/echo', 'd/nbd', 'dn/nbd', 'd/TCP', 'd/mmap', 'd/other', 'daxd p50/p99 us'];
  const lines = rows.map((r) => {
    const d = value(r.c, r.daxd);
    return [
      r.c.label, r.c.unit, fig(r.c, r.daxd), ...(withBefore ? [fig(r.c, r.before), ratio(d, r.before && value(r.c, r.before))] : []),
      fig(r.c, r.echo), fig(r.c, r.nbd), fig(r.c, r.daxdNbd), num(r.tcp), num(r.mmap),
      r.ref ? `${num(r.ref.value)} (${r.ref.name})` : '-',
      ratio(d, r.echo && value(r.c, r.echo)), ratio(d, r.nbd && value(r.c, r.nbd)), ratio(r.daxdNbd && value(r.c, r.daxdNbd), r.nbd && value(r.c, r.nbd)),
      ratio(d, r.tcp), ratio(d, r.mmap), ratio(d, r.ref?.value),
      `${r.daxd.p50Us.toFixed(0)}/${r.daxd.p99Us.toFixed(0)}`,
    ];
  });
  return render(header, lines);
}

/** CPU us per op, client and server separately, per target (and daxd's total over echo's). */
function cpuTable(rows: Row[], withBefore: boolean): string {
  const targets: Array<[string, (r: Row) => Measured | undefined]> = [
    ['daxd', (r) => r.daxd], ...(withBefore ? [['before', (r: Row) => r.before] as [string, (r: Row) => Measured | undefined]] : []),
    ['echo', (r) => r.echo], ['nbdkit', (r) => r.nbd], ['daxd-nbd', (r) => r.daxdNbd],
  ];
  const us = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
  const total = (m: Measured) => m.clientCpuUsPerOp + m.serverCpuUsPerOp;
  const header = ['case', ...targets.flatMap(([t]) => [`${t} client`, `${t} server`]), 'd/echo CPU', ...(withBefore ? ['d/before CPU'] : [])];
  const lines = rows.map((r) => {
    const cells = targets.flatMap(([, pick]) => {
      const m = pick(r);
      return m ? [us(m.clientCpuUsPerOp), us(m.serverCpuUsPerOp)] : ['-', '-'];
    });
    return [r.c.label, ...cells, ratio(total(r.daxd), r.echo && total(r.echo)), ...(withBefore ? [ratio(total(r.daxd), r.before && total(r.before))] : [])];
  });
  return render(header, lines);
}

/** The rows of the bench modules (EXTRA_ROWS). */
function extraTable(rows: BenchRow[], withBefore: boolean): string {
  const header = ['case', 'unit', 'daxd', ...(withBefore ? ['before', 'd/before'] : []), 'ref', 'd/ref', 'CPU us/op client', 'CPU us/op server'];
  const lines = rows.map((r) => [
    r.label, r.unit, num(r.daxd), ...(withBefore ? [num(r.before), ratio(r.daxd, r.before)] : []),
    r.ref ? `${num(r.ref.value)} (${r.ref.name})` : '-', ratio(r.daxd, r.ref?.value),
    r.clientCpuUsPerOp === undefined ? '-' : r.clientCpuUsPerOp.toFixed(1), r.serverCpuUsPerOp === undefined ? '-' : r.serverCpuUsPerOp.toFixed(1),
  ]);
  return render(header, lines);
}

function targets(rows: Row[], extra: BenchRow[]): string[] {
  const get = (id: string) => rows.find((r) => r.c.id === id);
  const out: string[] = [];
  for (const id of ['randread-4k-qd64', 'randwrite-4k-qd64']) {
    const r = get(id);
    if (!r) continue;
    if (!r.nbd) out.push(`${r.c.label} >= 1.0x nbdkit: no nbdkit figure`);
    else {
      const x = r.daxd.opsPerSec / r.nbd.opsPerSec;
      out.push(`${r.c.label} >= 1.0x nbdkit: ${x.toFixed(2)}x ${x >= 1 ? 'MET' : 'NOT MET'}`);
    }
  }
  for (const id of ['seqread-1m-qd4', 'seqwrite-1m-qd4']) {
    const r = get(id);
    if (!r || r.tcp === undefined) continue;
    const x = r.daxd.bytesPerSec / 1e6 / r.tcp;
    out.push(`${r.c.label} >= 0.80x loopback TCP: ${x.toFixed(2)}x ${x >= 0.8 ? 'MET' : 'NOT MET'}`);
  }
  out.push(...daxdNbdTargets(rows.map((r) => ({ id: r.c.id, label: r.c.label, nbdkit: r.nbd, daxdNbd: r.daxdNbd }))));
  out.push(...grpcTargets(rows.map((r) => ({ id: r.c.id, label: r.c.label, unit: r.c.unit, bs: r.c.bs, qd: r.c.qd, daxd: r.daxd, before: r.before, echo: r.echo, tcp: r.tcp })), extra));
  return out;
}

/** Cases profiled by --profile: the 4 KiB target and the 1 MiB one. */
const PROFILED_CASES = ['randread-4k-qd64', 'seqread-1m-qd4'];

/**
 * Runs case `id` for 4 s against a fresh daxd under --cpu-prof, with this process under the
 * inspector's profiler, and summarises both profiles over the run only.
 */
export async function profileCase(dir: string, id: string): Promise<string> {
  const c = CASES.find((k) => k.id === id);
  if (!c) throw new Error(`no case ${id}`);
  const profDir = path.join(dir, `profiles-${id}`);
  fs.mkdirSync(profDir, { recursive: true });
  const server = await startPrivateServer(512 * MiB, ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
  const session = new inspector.Session();
  session.connect();
  const post = <T>(method: string, params?: object) => new Promise<T>((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))));
  try {
    const file: LoadFile = await (async () => {
      const client = DaxClient.connect(server.address);
      try {
        const f = await client.create('profile.data');
        for (let at = 0; at < 64 * MiB; at += MiB) await client.write(f.ino, at, Buffer.alloc(MiB, 1));
        return { index: 0, ino: f.ino, name: 'profile.data', pages: (64 * MiB) / KIB4, sizeBytes: 64 * MiB };
      } finally {
        client.close();
      }
    })();
    await post('Profiler.enable');
    await post('Profiler.start');
    const fromUs = Number(process.hrtime.bigint() / 1000n);
    const r = await runLoad(loadOptions(server.address, c, file, 4), {}, { files: [file] });
    const window = { fromUs, toUs: Number(process.hrtime.bigint() / 1000n) };
    const { profile } = await post<{ profile: CpuProfile }>('Profiler.stop');
    await server.stop();
    const serverProfile = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    const rate = c.unit === 'MB/s' ? `${(r.total.bytesPerSec / 1e6).toFixed(0)} MB/s` : `${(r.total.opsPerSec / 1000).toFixed(1)}k ${c.unit}`;
    const lines = [`profile of ${c.label} (${rate} while profiled):`, formatSummary('client (this process, inspector)', summarize(profile, 15, window))];
    if (serverProfile) {
      const p = JSON.parse(fs.readFileSync(path.join(profDir, serverProfile), 'utf8')) as CpuProfile;
      // Only the run: the server's start-up (module loading, mkfs) and layout are left out.
      lines.push(formatSummary(`server (node --cpu-prof, ${serverProfile})`, summarize(p, 15, window)));
      fs.copyFileSync(path.join(profDir, serverProfile), path.join(REPO_ROOT, 'test-artifacts', `bench-${id}-server.cpuprofile`));
    }
    fs.writeFileSync(path.join(REPO_ROOT, 'test-artifacts', `bench-${id}-client.cpuprofile`), JSON.stringify(profile));
    return lines.join('\n');
  } finally {
    session.disconnect();
    await server.stop();
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  log(`bench: node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}; ${ROUNDS} rounds of ${SECONDS} s per case`);
  const nbdMissing = ensureNbdTools(log);
  if (nbdMissing) log(`bench: NBD baseline skipped: ${nbdMissing}`);
  const tmp = tempDir('daxd-bench-all-');
  const commands = new Set<string>();
  const daxd = await startServer({ volumePath: path.join(tmp.dir, 'bench.vol'), size: '1G' });
  const daxdNbdAddress = daxd.nbd;
  commands.add(`node bin/daxd.js serve --volume ${path.join(tmp.dir, 'bench.vol')} --size 1G --grpc 127.0.0.1:0 --nbd 127.0.0.1:0   # daxd, pid ${daxd.pid}, NBD on ${daxdNbdAddress}`);
  const echo = await startEcho();
  commands.add(`node ${path.relative(REPO_ROOT, path.join(__dirname, 'echo-server.js'))}   # grpc-js echo, pid ${echo.pid}`);
  let before: DaxdChild | null = null;
  /** Cases the --before build cannot run (see the round loop). */
  const beforeLacks = new Set<string>();
  if (BEFORE_DIR !== null) {
    before = await startDaxdChild({ volumePath: path.join(tmp.dir, 'before.vol'), size: '1G', buildDir: path.resolve(BEFORE_DIR) });
    commands.add(`node test/bench/daxd-launch.js ${before.mainJs} serve --volume ${path.join(tmp.dir, 'before.vol')} --size 1G ...   # the --before build, pid ${before.pid}`);
  }
  const sink = await startTcpSink();
  commands.add(`node ${path.relative(REPO_ROOT, path.join(__dirname, 'baselines', 'tcp-sink.js'))}   # TCP sink; client: net.connect + 1 MiB socket.write() with 'drain'`);
  let nbd: Nbdkit | null = null;
  try {
    if (!nbdMissing) {
      const image = path.join(tmp.dir, 'nbd.img');
      makeImage(image, FILE_BYTES);
      nbd = await startNbdkit(image);
      commands.add(`${nbd.command}   # pid ${nbd.pid}`);
    }
    log('bench: laying out daxd files (256 MiB data, 64 MiB holes)');
    const files = await prepareDaxd(daxd.address);
    // Export name = file name; the same fio commands as nbdkit's but for this URI.
    const daxdNbd = { uri: `nbd://${daxdNbdAddress}/${files.data.name}`, pid: daxd.pid };
    const endpoints: Record<'daxd' | 'echo', Endpoint> & { before?: Endpoint } = {
      daxd: { address: daxd.address, pid: daxd.pid, data: files.data, holes: files.holes },
      echo: { address: echo.address, pid: echo.pid, data: { ...files.data, ino: 1 }, holes: null },
    };
    if (before) {
      log(`bench: laying out the same files on the --before build (${before.mainJs})`);
      const bf = await prepareDaxd(before.address);
      endpoints.before = { address: before.address, pid: before.pid, data: bf.data, holes: bf.holes };
    }
    log('bench: raw mmap baseline');
    const raw: RawMmapFigures = measureRawMmap(tmp.dir, FILE_BYTES, SECONDS);
    commands.add('raw mmap: native.mmap of a 256 MiB file (MAP_SHARED), Buffer.copy of 4 KiB at random aligned offsets / 1 MiB sequential, in and out; first touch of each page of a fresh sparse 256 MiB mapping (read, write)');
    // Warm-up (JIT, connections, page cache), not measured.
    await runEngine(endpoints.daxd, CASES[1], 0.5);
    await runEngine(endpoints.echo, CASES[1], 0.5);
    if (endpoints.before) await runEngine(endpoints.before, CASES[1], 0.5);
    const budgetMs = endpoints.before ? RUN_BUDGET_BEFORE_MS : RUN_BUDGET_MS;
    const runs = new Map<string, Record<TargetName, Measured[]>>();
    const tcpRuns: number[] = [];
    const echoUnaryRuns: number[] = [];
    let rounds = 0;
    for (let round = 0; round < ROUNDS; round++) {
      if (round > 0 && performance.now() - started > budgetMs) {
        log(`bench: time budget reached, ${round} round(s) done`);
        break;
      }
      for (const c of CASES) {
        const r = runs.get(c.id) ?? { daxd: [], before: [], echo: [], nbd: [], 'daxd-nbd': [], tcp: [] };
        runs.set(c.id, r);
        const order: TargetName[] = ['daxd', ...(endpoints.before ? ['before' as const] : []), ...c.with.filter((t) => t !== 'tcp')];
        if (round % 2 === 1) order.reverse();
        for (const t of order) {
          if (t === 'nbd') {
            if (nbd) r.nbd.push(runNbd(nbd, c, SECONDS, commands));
          } else if (t === 'daxd-nbd') {
            if (!nbdMissing) r['daxd-nbd'].push(runNbd(daxdNbd, c, SECONDS, commands));
          } else if (t === 'daxd' || t === 'echo') {
            r[t].push(await runEngine(endpoints[t], c, SECONDS));
          } else if (t === 'before' && endpoints.before && !beforeLacks.has(c.id)) {
            // An older build may lack what a case drives (e.g. an RPC added since): its
            // cell stays empty and the case is not tried on it again.
            try {
              r.before.push(await runEngine(endpoints.before, c, SECONDS));
            } catch (err) {
              beforeLacks.add(c.id);
              log(`bench: ${c.id} does not run on the --before build: ${(err as Error).message.slice(0, 200)}`);
            }
          }
        }
        log(`bench: round ${round + 1}: ${c.label}`);
      }
      tcpRuns.push((await tcpBandwidth(sink.address, SECONDS)).bytesPerSec / 1e6);
      echoUnaryRuns.push(await echoUnary(echo.address, SECONDS));
      rounds++;
    }
    for (const c of CASES) log(`  daxd ${c.label}: ${loadCommand(c)}`);
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const tcp = med(tcpRuns);
    const unary = med(echoUnaryRuns);
    const rows: Row[] = CASES.map((c) => {
      const r = runs.get(c.id) as Record<TargetName, Measured[]>;
      const row: Row = { c, daxd: median(r.daxd) };
      if (r.before.length > 0) row.before = median(r.before);
      if (r.echo.length > 0) row.echo = median(r.echo);
      if (r.nbd.length > 0) row.nbd = median(r.nbd);
      if (r['daxd-nbd'].length > 0) row.daxdNbd = median(r['daxd-nbd']);
      if (c.with.includes('tcp')) row.tcp = tcp;
      if (c.unit === 'MB/s') row.mmap = (c.workload === 'seqread' || c.mixPct === 100 ? raw.copyOut1mBytesPerSec : raw.copyIn1mBytesPerSec) / 1e6;
      if (c.unit === 'IOPS') row.mmap = c.workload === 'randread' ? raw.copyOut4kOpsPerSec : raw.copyIn4kOpsPerSec;
      if (c.workload === 'fault-write-allocate') row.ref = { name: 'raw write faults', value: raw.writeFaultsPerSec };
      else if (c.unit === 'faults/s') row.ref = { name: 'raw read faults', value: raw.readFaultsPerSec };
      if (c.unit === 'cycles/s') row.ref = { name: 'echo unary/3', value: unary / 3 };
      return row;
    });
    // DMA and mapped 1 MiB rows: compared with 1 MiB Files reads (writes) of the same run.
    const filesRead1m = rows.find((row) => row.c.id === 'seqread-1m-qd4');
    const filesWrite1m = rows.find((row) => row.c.id === 'seqwrite-1m-qd4');
    for (const row of rows) {
      if ((row.c.id === 'dma-read-1m-qd4' || row.c.id === 'mapped-read-1m') && filesRead1m) row.ref = { name: 'Files 1 MiB read', value: filesRead1m.daxd.bytesPerSec / 1e6 };
      if (row.c.id === 'dma-write-1m-qd4' && filesWrite1m) row.ref = { name: 'Files 1 MiB write', value: filesWrite1m.daxd.bytesPerSec / 1e6 };
    }
    const extra: BenchRow[] = [];
    for (const source of EXTRA_ROWS) {
      if (performance.now() - started > budgetMs + 60_000) {
        log(`bench: time budget reached, ${source.name} skipped`);
        continue;
      }
      log(`bench: ${source.name}`);
      try {
        extra.push(...await source.rows({ tmpDir: tmp.dir, seconds: SECONDS, rounds: Math.min(ROUNDS, 3), beforeDir: BEFORE_DIR, log }));
      } catch (err) {
        log(`bench: ${source.name} failed: ${(err as Error).stack ?? String(err)}`);
      }
    }
    const out: string[] = [];
    out.push(`daxd bench: medians of ${rounds} run(s) of ${SECONDS} s per case; ${os.cpus().length} CPUs, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    out.push(table(rows, before !== null));
    if (before) out.push(`before = ${before.mainJs} (the --before build), run in the same rounds as daxd (this build); d/before = daxd / before.`);
    out.push('', 'CPU us/op, client and server separately (client: this process, or fio for NBD; server: the server process, from /proc/PID/stat):');
    out.push(cpuTable(rows, before !== null));
    if (extra.length > 0) out.push('', 'bench modules (EXTRA_ROWS):', extraTable(extra, before !== null));
    out.push('d/X = daxd / X in the same run. echo = bare grpc-js server, same SDK and payloads (transport ceiling); nbdkit = nbdkit file plugin + fio nbd engine;');
    out.push('daxd-nbd = daxd\'s NBD export of the same daxd, the same fio commands; dn/nbd = daxd-nbd / nbdkit;');
    out.push(`TCP = Node net loopback, 1 MiB writes (${tcp.toFixed(0)} MB/s); mmap = copy into/out of a MAP_SHARED mapping (4 KiB random: ops/s; 1 MiB: MB/s);`);
    out.push(`other: raw first-touch page faults of a mapped sparse file (read ${raw.readFaultsPerSec.toFixed(0)}/s, write ${raw.writeFaultsPerSec.toFixed(0)}/s), echo unary 4 KiB QD16 ${unary.toFixed(0)} req/s / 3 calls per pin cycle.`);
    out.push('1 MiB DMA / MappedFile rows: other = 1 MiB Files seqread of daxd in the same run.');
    out.push('', 'targets:', ...targets(rows, extra).map((t) => `  ${t}`));
    out.push('', 'commands:', ...[...commands].map((c) => `  ${c}`));
    if (nbdMissing) out.push(`  (nbdkit baseline missing: ${nbdMissing})`);
    process.stdout.write(`${out.join('\n')}\n`);
    // 1 MiB gRPC read/write next to the tuned echo and TCP, with CPU and GC per MiB (bulk.bench.ts).
    const bulkTrees = [{ name: 'after', root: REPO_ROOT }, ...(BEFORE_DIR === null ? [] : [{ name: 'before', root: path.resolve(BEFORE_DIR) }])];
    const bulk = await runBulkBench({ trees: bulkTrees, seconds: SECONDS, rounds: ROUNDS, log });
    process.stdout.write(`\n${formatBulk(bulk)}\n`);
    let profile: string | null = null;
    if (PROFILE) {
      const parts: string[] = [];
      for (const id of PROFILED_CASES) {
        log(`bench: profiling ${id}`);
        parts.push(await profileCase(tmp.dir, id));
      }
      profile = parts.join('\n\n');
      process.stdout.write(`\n${profile}\n`);
    }
    const json = JSON.stringify({
      bench: 'all', seconds: SECONDS, rounds, loadAverage: os.loadavg(), cpus: os.cpus().length, nodeVersion: process.version,
      before: before?.mainJs ?? null,
      rows: rows.map((r) => ({ id: r.c.id, label: r.c.label, unit: r.c.unit, daxd: r.daxd, before: r.before, echo: r.echo, nbd: r.nbd, daxdNbd: r.daxdNbd, tcpMBps: r.tcp, mmap: r.mmap, ref: r.ref })),
      extraRows: extra, bulk,
      raw, tcpMBps: tcp, echoUnaryPerSec: unary, targets: targets(rows, extra), commands: [...commands], nbdMissing, profile,
      elapsedS: (performance.now() - started) / 1000,
    });
    fs.mkdirSync(path.join(REPO_ROOT, 'test-artifacts'), { recursive: true });
    fs.writeFileSync(path.join(REPO_ROOT, 'test-artifacts', 'bench-all.json'), `${json}\n`);
    process.stdout.write(`${json}\n`);
    log(`bench: done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    await nbd?.stop();
    await sink.stop();
    await echo.stop();
    await before?.stop();
    await daxd.stop();
    tmp.remove();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
