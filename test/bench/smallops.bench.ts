/**
 * npm run bench:smallops — CPU per 4 KiB op at queue depth 1, daxd next to the bare grpc-js
 * echo (echo-server.ts), in the same run: the SDK's pipelined streams as daxd-load drives
 * them (randread, randwrite) and unary Files.Read / Files.Write through the SDK's
 * callUnary (client/unary-call.ts). Client CPU is this process's (process.cpuUsage), server
 * CPU the child's (/proc/PID/stat), both per op; the figures that matter on a busy machine.
 *
 *   node dist/test/bench/smallops.bench.js [--before DIR] [--profile]
 *
 * --before DIR (or BENCH_BEFORE=DIR): also runs an older build (DIR/dist/cli/main.js),
 * alternating with this one each round. --profile: then runs each case once more against
 * a daxd under --cpu-prof (this process under the inspector) and prints where the CPU goes
 * (profiles kept in test-artifacts/smallops-*.cpuprofile); --profile-echo: the echo's too; with
 * --before, the older build's too.
 * BENCH_SECONDS (default 1.5) per run, BENCH_ROUNDS (default 3); medians.
 */
import fs from 'node:fs';
import inspector from 'node:inspector';
import os from 'node:os';
import path from 'node:path';
import { DaxClient } from '../../client';
import { callUnary, type UnaryMethod } from '../../client/unary-call';
import { DEFAULT_LOAD_OPTIONS } from '../../client/loadtest/load-options';
import type { LoadFile } from '../../client/loadtest/run-context';
import { runLoad } from '../../client/loadtest/runner';
import { REPO_ROOT, tempDir } from '../support/start-server';
import { MiB } from '../support/units';
import { startDaxdChild, type DaxdChild } from './daxd-child';
import { formatSummary, summarize, type CpuProfile } from './cpu-profile-summary';
import { processCpuUs, startEcho } from './bench-util';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1.5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const KIB4 = 4096;
const FILE_BYTES = 64 * MiB;
const UNARY_DEADLINE_MS = 10_000;
const PROFILE_INTERVAL_US = 100;

export type SmallCase = 'stream-read' | 'stream-write' | 'unary-read' | 'unary-write';
export const SMALL_CASES: SmallCase[] = ['stream-read', 'stream-write', 'unary-read', 'unary-write'];

export interface SmallFigures {
  opsPerSec: number;
  clientCpuUsPerOp: number;
  serverCpuUsPerOp: number;
  /** read(2)-like and write(2)-like syscalls per op (/proc/PID/io syscr, syscw): socket wake-ups and sends. */
  clientSyscallsPerOp: { r: number; w: number };
  serverSyscallsPerOp: { r: number; w: number };
}

function syscalls(pid: number | 'self'): { r: number; w: number } {
  const io = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? NaN);
  return { r: field('syscr'), w: field('syscw') };
}

export interface SmallTarget {
  name: string;
  address: string;
  pid: number;
  file: LoadFile;
}

/** Runs case c at QD1 against target t for `seconds`: ops/s and CPU per op of both sides. */
export async function measureSmall(t: SmallTarget, c: SmallCase, seconds: number): Promise<SmallFigures> {
  const cpu0 = process.cpuUsage();
  const server0 = processCpuUs(t.pid);
  const sys0 = { client: syscalls('self'), server: syscalls(t.pid) };
  let ops: number;
  let elapsedS: number;
  if (c === 'stream-read' || c === 'stream-write') {
    const r = await runLoad({
      ...DEFAULT_LOAD_OPTIONS, address: t.address, workload: c === 'stream-read' ? 'randread' : 'randwrite', clients: 1, qd: 1, bsBytes: KIB4,
      sizeBytes: t.file.sizeBytes, files: 1, durationMs: seconds * 1000, opsMax: null, seed: 1, verify: false, sampleMs: 500, progress: false,
    }, {}, { files: [t.file] });
    if (!r.passed) throw new Error(`${c} against ${t.name} failed: ${JSON.stringify(r.errors)}`);
    ops = r.total.ops;
    elapsedS = r.elapsedS;
  } else {
    const client = DaxClient.connect(t.address);
    try {
      await client.ready();
      const files = client.raw.files;
      const data = Buffer.alloc(KIB4, 0x5a);
      const slots = t.file.sizeBytes / KIB4;
      const opts = { deadlineMs: UNARY_DEADLINE_MS, idempotent: false, retries: 0, backoffMs: 0 };
      const read = files.Read.bind(files) as UnaryMethod<unknown, unknown>;
      const write = files.Write.bind(files) as UnaryMethod<unknown, unknown>;
      const t0 = performance.now();
      const endAt = t0 + seconds * 1000;
      ops = 0;
      while (performance.now() < endAt) {
        const offset = Math.floor(Math.random() * slots) * KIB4;
        if (c === 'unary-read') await callUnary(read, { ino: t.file.ino, offset, length: KIB4 }, opts);
        else await callUnary(write, { ino: t.file.ino, offset, data }, opts);
        ops++;
      }
      elapsedS = (performance.now() - t0) / 1000;
    } finally {
      client.close();
    }
  }
  const cpu = process.cpuUsage(cpu0);
  const serverUs = processCpuUs(t.pid) - server0;
  const sys1 = { client: syscalls('self'), server: syscalls(t.pid) };
  const n = Math.max(1, ops);
  const per = (a: { r: number; w: number }, b: { r: number; w: number }) => ({ r: (b.r - a.r) / n, w: (b.w - a.w) / n });
  return {
    opsPerSec: n / elapsedS, clientCpuUsPerOp: (cpu.user + cpu.system) / n, serverCpuUsPerOp: serverUs / n,
    clientSyscallsPerOp: per(sys0.client, sys1.client), serverSyscallsPerOp: per(sys0.server, sys1.server),
  };
}

/** Creates and writes the 64 MiB file the cases use on a daxd. */
export async function layOutSmall(address: string): Promise<LoadFile> {
  const client = DaxClient.connect(address);
  try {
    const f = await client.create('smallops.data');
    const chunk = Buffer.alloc(MiB, 0xa5);
    for (let at = 0; at < FILE_BYTES; at += MiB) await client.write(f.ino, at, chunk);
    await client.fsync(f.ino);
    return { index: 0, ino: f.ino, name: 'smallops.data', pages: FILE_BYTES / KIB4, sizeBytes: FILE_BYTES };
  } finally {
    client.close();
  }
}

function medianOf(runs: SmallFigures[]): SmallFigures {
  const mid = (pick: (m: SmallFigures) => number) => runs.map(pick).sort((a, b) => a - b)[Math.floor(runs.length / 2)];
  return {
    opsPerSec: mid((m) => m.opsPerSec), clientCpuUsPerOp: mid((m) => m.clientCpuUsPerOp), serverCpuUsPerOp: mid((m) => m.serverCpuUsPerOp),
    clientSyscallsPerOp: { r: mid((m) => m.clientSyscallsPerOp.r), w: mid((m) => m.clientSyscallsPerOp.w) },
    serverSyscallsPerOp: { r: mid((m) => m.serverSyscallsPerOp.r), w: mid((m) => m.serverSyscallsPerOp.w) },
  };
}

/**
 * Profiles case c against a fresh daxd (or echo) under --cpu-prof, and this process under
 * the inspector: both summaries over the measured run only.
 */
async function profileSmall(dir: string, c: SmallCase, seconds: number, what: 'daxd' | 'before' | 'echo', beforeDir: string | null): Promise<string> {
  const profDir = path.join(dir, `prof-${what}-${c}`);
  fs.mkdirSync(profDir, { recursive: true });
  // 100 us between samples (V8's default is 1 ms): at ~4k ops/s that is a few samples per op.
  const nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-interval=${PROFILE_INTERVAL_US}`];
  const server = what === 'echo' ? await startEcho(nodeArgs)
    : await startDaxdChild({ volumePath: path.join(profDir, 'p.vol'), size: '256M', nodeArgs, buildDir: what === 'before' ? (beforeDir ?? undefined) : undefined });
  const session = new inspector.Session();
  session.connect();
  const post = <T>(method: string, params?: object) => new Promise<T>((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))));
  try {
    const file: LoadFile = what !== 'echo' ? await layOutSmall(server.address) : { index: 0, ino: 1, name: 'echo', pages: FILE_BYTES / KIB4, sizeBytes: FILE_BYTES };
    const target = { name: what, address: server.address, pid: server.pid, file };
    await measureSmall(target, c, 0.5);
    await post('Profiler.enable');
    await post('Profiler.setSamplingInterval', { interval: PROFILE_INTERVAL_US });
    await post('Profiler.start');
    const fromUs = Number(process.hrtime.bigint() / 1000n);
    const m = await measureSmall(target, c, seconds);
    const window = { fromUs, toUs: Number(process.hrtime.bigint() / 1000n) };
    const { profile } = await post<{ profile: CpuProfile }>('Profiler.stop');
    await server.stop();
    const out = [`profile of ${c} QD1 against ${what} (${m.opsPerSec.toFixed(0)} ops/s, CPU us/op client ${m.clientCpuUsPerOp.toFixed(0)} server ${m.serverCpuUsPerOp.toFixed(0)} while profiled):`,
      formatSummary('client', summarize(profile, 25, window))];
    const stem = path.join(REPO_ROOT, 'test-artifacts', `smallops-${what}-${c}`);
    fs.mkdirSync(path.dirname(stem), { recursive: true });
    fs.writeFileSync(`${stem}-client.cpuprofile`, JSON.stringify(profile));
    fs.writeFileSync(`${stem}-window.json`, JSON.stringify({ ...window, ops: Math.round(m.opsPerSec * seconds) }));
    const serverProfile = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (serverProfile) {
      const p = JSON.parse(fs.readFileSync(path.join(profDir, serverProfile), 'utf8')) as CpuProfile;
      out.push(formatSummary('server', summarize(p, 25, window)));
      fs.copyFileSync(path.join(profDir, serverProfile), `${stem}-server.cpuprofile`);
    }
    return out.join('\n');
  } finally {
    session.disconnect();
    await server.stop();
  }
}

function beforeDir(): string | null {
  const i = process.argv.indexOf('--before');
  return i >= 0 ? process.argv[i + 1] ?? null : process.env.BENCH_BEFORE ?? null;
}

async function main(): Promise<void> {
  const tmp = tempDir('daxd-smallops-');
  const before = beforeDir();
  const only = new RegExp(process.env.BENCH_FILTER ?? '');
  const cases = SMALL_CASES.filter((c) => only.test(c));
  const children: DaxdChild[] = [];
  const echo = await startEcho();
  try {
    const targets: SmallTarget[] = [];
    const add = async (name: string, buildDir?: string) => {
      const child = await startDaxdChild({ volumePath: path.join(tmp.dir, `${name}.vol`), size: '256M', buildDir });
      children.push(child);
      targets.push({ name, address: child.address, pid: child.pid, file: await layOutSmall(child.address) });
    };
    await add('daxd');
    if (before) await add('before', before);
    targets.push({ name: 'echo', address: echo.address, pid: echo.pid, file: { ...targets[0].file, ino: 1 } });
    const runs = new Map<string, SmallFigures[]>();
    for (const c of cases) for (const t of targets) await measureSmall(t, c, 0.3);
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of cases) {
        const order = round % 2 === 0 ? targets : [...targets].reverse();
        for (const t of order) {
          const key = `${c}/${t.name}`;
          runs.set(key, [...(runs.get(key) ?? []), await measureSmall(t, c, SECONDS)]);
        }
      }
      process.stderr.write(`smallops: round ${round + 1} done\n`);
    }
    const lines = [`4 KiB QD1, medians of ${ROUNDS} x ${SECONDS} s; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; CPU us/op client+server (ratio of the total to echo's)`];
    const header = ['case', ...targets.map((t) => `${t.name} ops/s`), ...targets.map((t) => `${t.name} c+s us`), ...targets.filter((t) => t.name !== 'echo').map((t) => `${t.name}/echo CPU`),
      ...targets.map((t) => `${t.name} syscalls r/w c;s`)];
    lines.push(header.join(' | '));
    const json: Record<string, Record<string, SmallFigures>> = {};
    for (const c of cases) {
      const m = Object.fromEntries(targets.map((t) => [t.name, medianOf(runs.get(`${c}/${t.name}`) ?? [])]));
      json[c] = m;
      const total = (f: SmallFigures) => f.clientCpuUsPerOp + f.serverCpuUsPerOp;
      lines.push([c, ...targets.map((t) => m[t.name].opsPerSec.toFixed(0)),
        ...targets.map((t) => `${m[t.name].clientCpuUsPerOp.toFixed(0)}+${m[t.name].serverCpuUsPerOp.toFixed(0)}=${total(m[t.name]).toFixed(0)}`),
        ...targets.filter((t) => t.name !== 'echo').map((t) => `${(total(m[t.name]) / total(m.echo)).toFixed(2)}x`),
        ...targets.map((t) => {
          const f = m[t.name];
          return `${f.clientSyscallsPerOp.r.toFixed(1)}/${f.clientSyscallsPerOp.w.toFixed(1)};${f.serverSyscallsPerOp.r.toFixed(1)}/${f.serverSyscallsPerOp.w.toFixed(1)}`;
        })].join(' | '));
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    if (process.argv.includes('--profile') || process.argv.includes('--profile-echo')) {
      const whats: Array<'daxd' | 'before' | 'echo'> = ['daxd', ...(before ? ['before' as const] : []), ...(process.argv.includes('--profile-echo') ? ['echo' as const] : [])];
      for (const c of cases) for (const what of whats) process.stdout.write(`\n${await profileSmall(tmp.dir, c, 3, what, before)}\n`);
    }
    process.stdout.write(`${JSON.stringify({ bench: 'smallops', seconds: SECONDS, rounds: ROUNDS, loadAverage: os.loadavg(), before, figures: json })}\n`);
  } finally {
    for (const child of children) await child.stop();
    await echo.stop();
    tmp.remove();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
