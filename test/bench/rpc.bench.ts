/**
 * npm run bench:rpc — daxd's Read and Write over gRPC next to a bare grpc-js echo server
 * (echo-server.ts) measured in the same run, with the same payloads and the same client.
 *
 * Cases: 4 KiB at queue depth 1, 16, 64 and 1 MiB at QD 1 and 4, reads and writes. Each
 * case runs four ways: unary Files.Read/Write against echo and daxd, and the SDK's
 * pipelined streams (Files.ReadStream/WriteStream) against echo and daxd. Both servers are
 * child processes (the client runs here).
 * Reads hit random aligned offsets of a 64 MiB file written beforehand; writes overwrite it.
 *
 * Besides throughput, each run records the CPU time per op of the client (this process)
 * and of the server process, which stays meaningful on a busy machine.
 *
 * Prints a table and one JSON line; the JSON also goes to test-artifacts/bench-rpc.json.
 * Each (case, transport) runs BENCH_ROUNDS times (default 3) per server, alternating which
 * server goes first; the table shows medians. BENCH_SECONDS (default 1.5) is the measured
 * time per run; BENCH_FILTER (a regex on the case label, e.g. "1 MiB") picks cases.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DaxClient } from '../../client';
import { REPO_ROOT, startServer, tempDir } from '../support/start-server';
import { MiB } from '../support/units';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1.5);
/** Runs per (case, transport, server); the table shows medians (at least 3: single runs drift by about 15%). */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP_SECONDS = 0.3;
const FILE_BYTES = 64 * 1024 * 1024;
const KIB4 = 4096;

type Op = 'read' | 'write';
type Transport = 'unary' | 'stream';
interface Case { op: Op; sizeBytes: number; qd: number }
interface Measured {
  opsPerSec: number;
  mbPerSec: number;
  p50Us: number;
  p99Us: number;
  /** CPU time per op of this process (client) and of the server process: robust to a busy machine. */
  clientCpuUsPerOp: number;
  serverCpuUsPerOp: number;
}
interface Target { name: 'echo' | 'daxd'; client: DaxClient; ino: number; pid: number }
type Row = Case & Record<`${Target['name']}_${Transport}`, Measured>;

/** Field by field median of several runs. */
function median(runs: Measured[]): Measured {
  const mid = (pick: (m: Measured) => number) => {
    const sorted = runs.map(pick).sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  };
  return {
    opsPerSec: mid((m) => m.opsPerSec), mbPerSec: mid((m) => m.mbPerSec), p50Us: mid((m) => m.p50Us), p99Us: mid((m) => m.p99Us),
    clientCpuUsPerOp: mid((m) => m.clientCpuUsPerOp), serverCpuUsPerOp: mid((m) => m.serverCpuUsPerOp),
  };
}

/** Clock ticks per second of /proc/PID/stat (getconf CLK_TCK; 100 on Linux). */
const CLK_TCK = 100;

/** utime + stime of a process, in microseconds. */
function processCpuUs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
}

const CASES: Case[] = [
  ...[1, 16, 64].map((qd) => ({ op: 'read' as Op, sizeBytes: KIB4, qd })),
  ...[1, 16, 64].map((qd) => ({ op: 'write' as Op, sizeBytes: KIB4, qd })),
  ...[1, 4].map((qd) => ({ op: 'read' as Op, sizeBytes: MiB, qd })),
  ...[1, 4].map((qd) => ({ op: 'write' as Op, sizeBytes: MiB, qd })),
];

function unaryOp(target: Target, op: Op, offset: number, data: Buffer, sizeBytes: number): Promise<void> {
  const files = target.client.raw.files;
  return new Promise((resolve, reject) => {
    const done = (err: Error | null) => (err ? reject(err) : resolve());
    if (op === 'read') files.Read({ ino: target.ino, offset, length: sizeBytes }, done);
    else files.Write({ ino: target.ino, offset, data }, done);
  });
}

async function streamOp(target: Target, op: Op, offset: number, data: Buffer, sizeBytes: number): Promise<void> {
  if (op === 'read') await target.client.read(target.ino, offset, sizeBytes);
  else await target.client.write(target.ino, offset, data);
}

async function measure(target: Target, transport: Transport, c: Case, seconds: number): Promise<Measured> {
  const data = Buffer.alloc(c.sizeBytes, 0x5a);
  const slots = FILE_BYTES / c.sizeBytes;
  const run = transport === 'unary' ? unaryOp : streamOp;
  const latenciesUs: number[] = [];
  const endAt = performance.now() + seconds * 1000;
  let ops = 0;
  const worker = async () => {
    while (performance.now() < endAt) {
      const t0 = performance.now();
      await run(target, c.op, Math.floor(Math.random() * slots) * c.sizeBytes, data, c.sizeBytes);
      latenciesUs.push((performance.now() - t0) * 1000);
      ops++;
    }
  };
  const t0 = performance.now();
  const clientCpu0 = process.cpuUsage();
  const serverCpu0Us = processCpuUs(target.pid);
  await Promise.all(Array.from({ length: c.qd }, worker));
  const elapsedS = (performance.now() - t0) / 1000;
  const clientCpu = process.cpuUsage(clientCpu0);
  const serverCpuUs = processCpuUs(target.pid) - serverCpu0Us;
  latenciesUs.sort((a, b) => a - b);
  const pct = (p: number) => Math.round(latenciesUs[Math.min(latenciesUs.length - 1, Math.floor(latenciesUs.length * p))]);
  return {
    opsPerSec: ops / elapsedS, mbPerSec: (ops * c.sizeBytes) / elapsedS / 1e6, p50Us: pct(0.5), p99Us: pct(0.99),
    clientCpuUsPerOp: (clientCpu.user + clientCpu.system) / ops, serverCpuUsPerOp: serverCpuUs / ops,
  };
}

function startEcho(): Promise<{ address: string; pid: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [path.join(__dirname, 'echo-server.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').once('data', (line: string) => {
      const { echo } = JSON.parse(line) as { echo: string };
      resolve({ address: echo, pid: child.pid as number, stop: () => { process.kill(child.pid as number, 'SIGTERM'); return exited; } });
    });
    void exited.then(() => reject(new Error('echo server exited')));
  });
}

function label(c: Case): string {
  return `${c.op} ${c.sizeBytes === MiB ? '1 MiB' : '4 KiB'} QD${c.qd}`;
}

function fmt(m: Measured, c: Case): string {
  return c.sizeBytes === MiB ? `${m.mbPerSec.toFixed(0)} MB/s` : `${(m.opsPerSec / 1000).toFixed(1)}k op/s`;
}

async function main(): Promise<void> {
  const tmp = tempDir('daxd-bench-');
  const daxd = await startServer({ volumePath: path.join(tmp.dir, 'bench.vol'), size: '256M' });
  const echo = await startEcho();
  const daxdClient = DaxClient.connect(daxd.address);
  const echoClient = DaxClient.connect(echo.address);
  try {
    const file = await daxdClient.create('bench');
    await daxdClient.write(file.ino, 0, Buffer.alloc(FILE_BYTES, 1));
    await daxdClient.fsync(file.ino);
    const targets: Target[] = [
      { name: 'echo', client: echoClient, ino: 0, pid: echo.pid },
      { name: 'daxd', client: daxdClient, ino: file.ino, pid: daxd.pid },
    ];
    const rows: Row[] = [];
    const only = new RegExp(process.env.BENCH_FILTER ?? '');
    for (const c of CASES.filter((k) => only.test(label(k)))) {
      const row = { ...c } as Row;
      for (const transport of ['unary', 'stream'] as Transport[]) {
        const runs: Record<Target['name'], Measured[]> = { echo: [], daxd: [] };
        for (let round = 0; round < ROUNDS; round++) {
          // Alternate who goes first, so drift over time hits both alike.
          for (const target of round % 2 === 0 ? targets : [...targets].reverse()) {
            await measure(target, transport, c, WARMUP_SECONDS);
            runs[target.name].push(await measure(target, transport, c, SECONDS));
          }
        }
        row[`echo_${transport}`] = median(runs.echo);
        row[`daxd_${transport}`] = median(runs.daxd);
      }
      rows.push(row);
      process.stderr.write(`  measured ${label(c)}\n`);
    }
    printTable(rows);
    const json = JSON.stringify({ bench: 'rpc', seconds: SECONDS, rounds: ROUNDS, loadAverage: os.loadavg(), nodeVersion: process.version, rows });
    fs.mkdirSync(path.join(REPO_ROOT, 'test-artifacts'), { recursive: true });
    fs.writeFileSync(path.join(REPO_ROOT, 'test-artifacts', 'bench-rpc.json'), `${json}\n`);
    process.stdout.write(`${json}\n`);
  } finally {
    daxdClient.close();
    echoClient.close();
    await echo.stop();
    await daxd.stop();
    tmp.remove();
  }
}

function printTable(rows: Row[]): void {
  const pct = (a: number, b: number) => `${Math.round((100 * a) / b)}%`;
  const cpu = (m: Measured) => m.clientCpuUsPerOp + m.serverCpuUsPerOp;
  const header = [
    'case', 'echo unary', 'daxd unary', 'ratio', 'echo stream', 'daxd stream', 'ratio',
    'CPU us/op echo/daxd stream', 'CPU ratio', 'daxd p50/p99 us', 'stream vs echo unary',
  ];
  const lines = rows.map((r) => [
    label(r), fmt(r.echo_unary, r), fmt(r.daxd_unary, r), pct(r.daxd_unary.opsPerSec, r.echo_unary.opsPerSec),
    fmt(r.echo_stream, r), fmt(r.daxd_stream, r), pct(r.daxd_stream.opsPerSec, r.echo_stream.opsPerSec),
    `${cpu(r.echo_stream).toFixed(1)} / ${cpu(r.daxd_stream).toFixed(1)}`, pct(cpu(r.echo_stream), cpu(r.daxd_stream)),
    `${r.daxd_stream.p50Us}/${r.daxd_stream.p99Us}`, pct(r.daxd_stream.opsPerSec, r.echo_unary.opsPerSec),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const render = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  process.stdout.write(`load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} on ${os.cpus().length} CPUs; medians of ${ROUNDS} runs of ${SECONDS} s\n`);
  process.stdout.write(`${render(header)}\n| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |\n${lines.map(render).join('\n')}\n`);
  process.stdout.write('ratio = daxd / echo throughput (same run); CPU ratio = echo / daxd CPU per op (client + server),\n'
    + 'what the throughput ratio tends to when both are CPU-bound on an otherwise idle machine.\n');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
