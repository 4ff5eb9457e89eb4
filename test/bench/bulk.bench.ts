/**
 * `npm run bench:bulk`: 1 MiB sequential reads and writes over gRPC (Files.ReadStream /
 * WriteStream through the SDK's pipeline, QD 4), next to the tuned grpc-js echo server
 * (echo-server.ts: the transport ceiling) and Node TCP loopback (baselines/tcp-loopback.ts),
 * all in the same run. bench-all.ts calls runBulkBench for its 1 MiB rows' companion table.
 *
 * Each target runs in its own processes: the server as a child, the client as a child
 * (bulk-driver.ts) that loads the SDK of the target's tree. So `--before DIR` (or
 * BULK_BEFORE=DIR) adds an older build of daxd (DIR/dist, DIR/bin) and its echo server,
 * driven by its own SDK, measured alternately with this one: before/after side by side.
 *
 * Figures per target: MB/s; CPU ms per MiB of the client and of the server (from
 * process.cpuUsage and /proc/PID/stat, robust to a busy machine); GC per GiB moved, of the
 * client (perf_hooks 'gc' entries) and of the server (--trace-gc lines). Medians of
 * BENCH_ROUNDS (default 3) runs of BENCH_SECONDS (default 1.5) each, alternating the order.
 * Prints a table and one JSON line (also test-artifacts/bench-bulk.json).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DaxClient } from '../../client';
import { REPO_ROOT, tempDir } from '../support/start-server';
import { MiB } from '../support/units';
import { startTcpSink, tcpBandwidth } from './baselines/tcp-loopback';
import type { DriverInput, DriverOutput } from './bulk-driver';
import { codecMicro, formatCodecMicro } from './bulk-codec.micro';

const CLK_TCK = 100;
const FILE_BYTES = 128 * MiB;
const QD = 4;
const WARMUP_SECONDS = 0.4;
/** A child that does not report within this long is a failed run. */
const CHILD_MS_MAX = 60_000;

export interface BulkTree {
  /** Label in the table, e.g. 'after', 'before'. */
  name: string;
  /** Repository root holding dist/ and bin/ of that build. */
  root: string;
}

export interface BulkFigure {
  mbPerSec: number;
  clientCpuMsPerMiB: number;
  serverCpuMsPerMiB: number;
  clientGcPerGiB: number;
  serverGcPerGiB: number;
  clientGcMsPerGiB: number;
}

export interface BulkRow {
  workload: 'seqread' | 'seqwrite';
  label: string;
  /** Per target: "daxd:after", "echo:after", "daxd:before", ... */
  figures: Record<string, BulkFigure>;
}

export interface BulkResult {
  rows: BulkRow[];
  tcpMBps: number;
  rounds: number;
  seconds: number;
  loadAverage: number[];
}

function cpuUsOf(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
}

/** A server child: its address, pid, and the count of GC lines it printed (--trace-gc). */
interface ServerChild {
  address: string;
  pid: number;
  gcLines(): number;
  stop(): Promise<void>;
}

/** Spawns `args` under node --trace-gc; resolves once `addressOf` finds the address in a stdout line. */
function startChild(args: string[], addressOf: (entry: Record<string, unknown>) => string | null): Promise<ServerChild> {
  const child: ChildProcess = spawn(process.execPath, ['--trace-gc', ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO_ROOT });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gc = 0;
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-4096)));
  return new Promise((resolve, reject) => {
    let buffered = '';
    let found = false;
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      buffered += s;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (/(Scavenge|Mark-Compact|Mark-Sweep|Minor Mark)/.test(line) && !line.startsWith('{')) gc++;
        if (found || !line.startsWith('{')) continue;
        const address = addressOf(JSON.parse(line) as Record<string, unknown>);
        if (address !== null) {
          found = true;
          const pid = child.pid as number;
          resolve({ address, pid, gcLines: () => gc, stop: () => { process.kill(pid, 'SIGTERM'); return exited; } });
        }
      }
    });
    void exited.then(() => reject(new Error(`${args.join(' ')} exited before serving: ${stderr}`)));
  });
}

function startDaxd(tree: BulkTree, volumePath: string): Promise<ServerChild> {
  return startChild([path.join(tree.root, 'bin', 'daxd.js'), 'serve', '--volume', volumePath, '--size', '512M', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--nbd', '127.0.0.1:0'],
    (e) => (e.msg === 'daxd serving' ? String(e.grpc) : null));
}

function startEcho(tree: BulkTree): Promise<ServerChild> {
  return startChild([path.join(tree.root, 'dist', 'test', 'bench', 'echo-server.js')], (e) => (typeof e.echo === 'string' ? e.echo : null));
}

async function writeFile(address: string): Promise<number> {
  const client = DaxClient.connect(address);
  try {
    const f = await client.create('bulk.data');
    const chunk = Buffer.alloc(MiB, 0xa5);
    for (let at = 0; at < FILE_BYTES; at += 8 * MiB) {
      await Promise.all(Array.from({ length: 8 }, (_, i) => client.write(f.ino, at + i * MiB, chunk)));
    }
    await client.fsync(f.ino);
    return f.ino;
  } finally {
    client.close();
  }
}

interface Sample extends DriverOutput {
  serverCpuUs: number;
  serverGc: number;
}

/** One driver run against `server`; server CPU and GC are taken over the driver's measured phase. */
function drive(tree: BulkTree, server: ServerChild, ino: number, workload: 'seqread' | 'seqwrite', seconds: number): Promise<Sample> {
  const input: DriverInput = { tree: tree.root, address: server.address, ino, sizeBytes: FILE_BYTES, workload, bsBytes: MiB, qd: QD, seconds, warmupSeconds: WARMUP_SECONDS };
  const child = spawn(process.execPath, [path.join(__dirname, 'bulk-driver.js'), JSON.stringify(input)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-4096)));
  return new Promise((resolve, reject) => {
    let cpu0 = 0;
    let gc0 = 0;
    let buffered = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`bulk driver took more than ${CHILD_MS_MAX} ms`));
    }, CHILD_MS_MAX);
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      buffered += s;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = JSON.parse(buffered.slice(0, nl)) as DriverOutput | { phase: string };
        buffered = buffered.slice(nl + 1);
        if ('phase' in line) {
          cpu0 = cpuUsOf(server.pid);
          gc0 = server.gcLines();
        } else {
          clearTimeout(timer);
          resolve({ ...line, serverCpuUs: cpuUsOf(server.pid) - cpu0, serverGc: server.gcLines() - gc0 });
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`bulk driver exited with ${code}: ${stderr}`));
    });
  });
}

function figureOf(s: Sample): BulkFigure {
  const mib = Math.max(1, (s.bytesPerSec / MiB) * (s.ops / Math.max(1, s.opsPerSec)));
  const gib = mib / 1024;
  return {
    mbPerSec: s.bytesPerSec / 1e6, clientCpuMsPerMiB: s.clientCpuUs / 1000 / mib, serverCpuMsPerMiB: s.serverCpuUs / 1000 / mib,
    clientGcPerGiB: s.gcCount / gib, serverGcPerGiB: s.serverGc / gib, clientGcMsPerGiB: s.gcMs / gib,
  };
}

function medianFigure(figs: BulkFigure[]): BulkFigure {
  const mid = (pick: (f: BulkFigure) => number) => figs.map(pick).sort((a, b) => a - b)[Math.floor(figs.length / 2)];
  return {
    mbPerSec: mid((f) => f.mbPerSec), clientCpuMsPerMiB: mid((f) => f.clientCpuMsPerMiB), serverCpuMsPerMiB: mid((f) => f.serverCpuMsPerMiB),
    clientGcPerGiB: mid((f) => f.clientGcPerGiB), serverGcPerGiB: mid((f) => f.serverGcPerGiB), clientGcMsPerGiB: mid((f) => f.clientGcMsPerGiB),
  };
}

const WORKLOADS = [
  { workload: 'seqread', label: '1 MiB gRPC read QD4' },
  { workload: 'seqwrite', label: '1 MiB gRPC write QD4' },
] as const;

/** Runs the bulk rows for every tree (daxd and its echo) plus TCP, alternating the order each round. */
export async function runBulkBench(options: { trees: BulkTree[]; seconds: number; rounds: number; log?: (line: string) => void }): Promise<BulkResult> {
  const log = options.log ?? (() => undefined);
  const tmp = tempDir('daxd-bench-bulk-');
  const servers: ServerChild[] = [];
  const sink = await startTcpSink();
  try {
    const targets: Array<{ key: string; tree: BulkTree; server: ServerChild; ino: number }> = [];
    for (const tree of options.trees) {
      const daxd = await startDaxd(tree, path.join(tmp.dir, `${tree.name}.vol`));
      servers.push(daxd);
      const echo = await startEcho(tree);
      servers.push(echo);
      log(`bench:bulk: ${tree.name}: daxd pid ${daxd.pid} on ${daxd.address}, echo pid ${echo.pid} on ${echo.address}`);
      targets.push({ key: `daxd:${tree.name}`, tree, server: daxd, ino: await writeFile(daxd.address) });
      targets.push({ key: `echo:${tree.name}`, tree, server: echo, ino: 1 });
    }
    const samples = new Map<string, BulkFigure[]>();
    const tcp: number[] = [];
    for (let round = 0; round < options.rounds; round++) {
      for (const w of WORKLOADS) {
        const order = round % 2 === 0 ? targets : [...targets].reverse();
        for (const t of order) {
          const key = `${w.workload} ${t.key}`;
          const list = samples.get(key) ?? [];
          samples.set(key, list);
          list.push(figureOf(await drive(t.tree, t.server, t.ino, w.workload, options.seconds)));
        }
        log(`bench:bulk: round ${round + 1}: ${w.label}`);
      }
      tcp.push((await tcpBandwidth(sink.address, options.seconds)).bytesPerSec / 1e6);
    }
    const rows: BulkRow[] = WORKLOADS.map((w) => ({
      workload: w.workload, label: w.label,
      figures: Object.fromEntries(targets.map((t) => [t.key, medianFigure(samples.get(`${w.workload} ${t.key}`) as BulkFigure[])])),
    }));
    return { rows, tcpMBps: [...tcp].sort((a, b) => a - b)[Math.floor(tcp.length / 2)], rounds: options.rounds, seconds: options.seconds, loadAverage: os.loadavg() };
  } finally {
    for (const s of servers) await s.stop();
    await sink.stop();
    tmp.remove();
  }
}

/** The table: one line per (row, target), with ratios to TCP and to the same tree's echo. */
export function formatBulk(r: BulkResult): string {
  const header = ['case', 'target', 'MB/s', '/TCP', '/echo', 'CPU ms/MiB c+s', 'GC/GiB c+s', 'client GC ms/GiB'];
  const lines: string[][] = [header];
  for (const row of r.rows) {
    for (const [key, f] of Object.entries(row.figures)) {
      const echo = row.figures[`echo:${key.split(':')[1]}`];
      lines.push([
        row.label, key, f.mbPerSec.toFixed(0), (f.mbPerSec / r.tcpMBps).toFixed(2), key.startsWith('daxd') && echo ? (f.mbPerSec / echo.mbPerSec).toFixed(2) : '',
        `${f.clientCpuMsPerMiB.toFixed(2)}+${f.serverCpuMsPerMiB.toFixed(2)}`, `${f.clientGcPerGiB.toFixed(0)}+${f.serverGcPerGiB.toFixed(0)}`, f.clientGcMsPerGiB.toFixed(1),
      ]);
    }
  }
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  const text = lines.map((l) => l.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
  text.push(`TCP = Node net loopback, 1 MiB writes: ${r.tcpMBps.toFixed(0)} MB/s. Medians of ${r.rounds} run(s) of ${r.seconds} s; load average ${r.loadAverage.map((l) => l.toFixed(1)).join(' ')}.`);
  return text.join('\n');
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--before');
  const before = i >= 0 ? process.argv[i + 1] : process.env.BULK_BEFORE;
  const trees: BulkTree[] = [{ name: 'after', root: REPO_ROOT }];
  if (before) trees.push({ name: 'before', root: path.resolve(before) });
  const log = (line: string) => process.stderr.write(`${line}\n`);
  log(`bench:bulk: node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const result = await runBulkBench({ trees, seconds: Number(process.env.BENCH_SECONDS ?? 1.5), rounds: Number(process.env.BENCH_ROUNDS ?? 3), log });
  process.stdout.write(`${formatBulk(result)}\n`);
  const codec = codecMicro();
  process.stdout.write(`\ncodec CPU, in-process:\n${formatCodecMicro(codec)}\n`);
  const json = JSON.stringify({ bench: 'bulk', ...result, codec });
  fs.mkdirSync(path.join(REPO_ROOT, 'test-artifacts'), { recursive: true });
  fs.writeFileSync(path.join(REPO_ROOT, 'test-artifacts', 'bench-bulk.json'), `${json}\n`);
  process.stdout.write(`${json}\n`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
