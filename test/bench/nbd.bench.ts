/**
 * `npm run bench:nbd`: daxd's NBD export against nbdkit's file plugin, nothing else. Both
 * serve a fully written 256 MiB file on 127.0.0.1 and get exactly the same fio commands
 * (fio's nbd engine; only the URI differs): 4 KiB randread and randwrite at QD 1, 16, 64;
 * 1 MiB sequential read and write at QD 4. Each case runs BENCH_ROUNDS times (default 3)
 * for BENCH_SECONDS (default 1.5), alternating which server goes first; the table shows
 * medians, CPU µs per op of the client (fio) and of the server process, and the issue's
 * targets (test/bench/nbd-targets.ts) as met or not. The same comparison is a column of
 * `npm run bench`. Writes test-artifacts/bench-nbd.json.
 *
 * `--profile` (or BENCH_PROFILE=1) then runs 4 KiB randwrite QD1, 4 KiB randread QD64 and
 * 1 MiB seqwrite QD4 for 4 s each against a fresh daxd under node --cpu-prof and prints where
 * the server's CPU time goes during the fio run (profiles kept in test-artifacts/).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DAXD_BIN, REPO_ROOT, startServer, tempDir } from '../support/start-server';
import { formatSummary, summarize, type CpuProfile } from './cpu-profile-summary';
import { ensureNbdTools, makeImage, startNbdkit } from './baselines/nbd-fio';
import { CASES, median, prepareDaxd, runNbd, type Case, type Measured } from './bench-all';
import { daxdNbdTargets, DAXD_NBD_TARGETS } from './nbd-targets';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1.5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const FILE_BYTES = 256 * 1024 * 1024;
const PROFILE = process.argv.includes('--profile') || process.env.BENCH_PROFILE === '1';
const PROFILED_CASES = ['randwrite-4k-qd1', 'randread-4k-qd64', 'seqwrite-1m-qd4'];
const PROFILE_SECONDS = 4;

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function fig(c: Case, m: Measured | undefined): string {
  if (!m) return '-';
  if (c.unit === 'MB/s') return (m.bytesPerSec / 1e6).toFixed(0);
  return m.opsPerSec >= 1e4 ? `${(m.opsPerSec / 1000).toFixed(1)}k` : m.opsPerSec.toFixed(0);
}

interface Row {
  c: Case;
  nbdkit?: Measured;
  daxdNbd?: Measured;
}

function table(rows: Row[]): string {
  const header = ['case', 'unit', 'nbdkit', 'daxd-nbd', 'daxd-nbd/nbdkit', 'target', 'p50/p99 us nbdkit', 'p50/p99 us daxd-nbd', 'CPU us/op c+s nbdkit', 'CPU us/op c+s daxd-nbd'];
  const lat = (m: Measured | undefined) => (m ? `${m.p50Us.toFixed(0)}/${m.p99Us.toFixed(0)}` : '-');
  const cpu = (m: Measured | undefined) => (m ? `${m.clientCpuUsPerOp.toFixed(1)}+${m.serverCpuUsPerOp.toFixed(1)}` : '-');
  const lines = rows.map((r) => {
    const target = DAXD_NBD_TARGETS.find((t) => t.id === r.c.id);
    const x = r.nbdkit && r.daxdNbd && r.nbdkit.opsPerSec > 0 ? r.daxdNbd.opsPerSec / r.nbdkit.opsPerSec : undefined;
    return [
      r.c.label, r.c.unit, fig(r.c, r.nbdkit), fig(r.c, r.daxdNbd), x === undefined ? '-' : `${x.toFixed(2)}x`,
      target ? `>= ${target.ratioMin.toFixed(1)}x` : '-', lat(r.nbdkit), lat(r.daxdNbd), cpu(r.nbdkit), cpu(r.daxdNbd),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const render = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  return [render(header), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...lines.map(render)].join('\n');
}

/** A `daxd serve` child under node --cpu-prof (profile written to profDir at its exit). */
function startProfiledDaxd(dir: string, profDir: string): Promise<{ grpc: string; nbd: string; pid: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${profDir}`, DAXD_BIN, 'serve', '--volume', path.join(dir, 'profile.vol'), '--size', '1G',
    '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--nbd', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pid = child.pid as number;
  return new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      buffered += s;
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const entry = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
        buffered = buffered.slice(nl + 1);
        if (entry.msg === 'daxd serving') {
          resolve({ grpc: String(entry.grpc), nbd: String(entry.nbd), pid, stop: () => { process.kill(pid, 'SIGTERM'); return exited; } });
        }
      }
    });
    void exited.then(() => reject(new Error('the profiled daxd exited before serving')));
  });
}

/** Runs case `id` for PROFILE_SECONDS against a fresh daxd under --cpu-prof: where its CPU goes during the fio run. */
async function profileCase(dir: string, c: Case): Promise<string> {
  const profDir = path.join(dir, `profiles-${c.id}`);
  fs.mkdirSync(profDir, { recursive: true });
  const server = await startProfiledDaxd(dir, profDir);
  let stopped = false;
  try {
    const files = await prepareDaxd(server.grpc);
    const fromUs = Number(process.hrtime.bigint() / 1000n);
    const m = runNbd({ uri: `nbd://${server.nbd}/${files.data.name}`, pid: server.pid }, c, PROFILE_SECONDS, new Set());
    const window = { fromUs, toUs: Number(process.hrtime.bigint() / 1000n) };
    await server.stop();
    stopped = true;
    const file = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) return `profile of ${c.label}: no profile written`;
    fs.mkdirSync(path.join(REPO_ROOT, 'test-artifacts'), { recursive: true });
    fs.copyFileSync(path.join(profDir, file), path.join(REPO_ROOT, 'test-artifacts', `bench-nbd-${c.id}-server.cpuprofile`));
    const profile = JSON.parse(fs.readFileSync(path.join(profDir, file), 'utf8')) as CpuProfile;
    const rate = c.unit === 'MB/s' ? `${(m.bytesPerSec / 1e6).toFixed(0)} MB/s` : `${(m.opsPerSec / 1000).toFixed(1)}k IOPS`;
    return [
      `profile of daxd-nbd ${c.label} (${rate} while profiled; ${m.serverCpuUsPerOp.toFixed(1)} us server CPU per op):`,
      formatSummary(`server (node --cpu-prof, ${file})`, summarize(profile, 15, window)),
    ].join('\n');
  } finally {
    if (!stopped) await server.stop();
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  const load = () => os.loadavg().map((l) => l.toFixed(1)).join(' ');
  log(`bench:nbd: node ${process.version}, ${os.cpus().length} CPUs, load average ${load()}; ${ROUNDS} rounds of ${SECONDS} s per case`);
  const missing = ensureNbdTools(log);
  if (missing) throw new Error(missing);
  const tmp = tempDir('daxd-bench-nbd-');
  const commands = new Set<string>();
  const daxd = await startServer({ volumePath: path.join(tmp.dir, 'bench.vol'), size: '1G' });
  const nbdAddress = daxd.nbd;
  commands.add(`node bin/daxd.js serve --volume ${path.join(tmp.dir, 'bench.vol')} --size 1G --grpc 127.0.0.1:0 --nbd 127.0.0.1:0   # daxd, pid ${daxd.pid}, NBD on ${nbdAddress}`);
  let nbdkit: Awaited<ReturnType<typeof startNbdkit>> | null = null;
  try {
    const image = path.join(tmp.dir, 'nbd.img');
    makeImage(image, FILE_BYTES);
    nbdkit = await startNbdkit(image);
    commands.add(`${nbdkit.command}   # pid ${nbdkit.pid}`);
    log('bench:nbd: laying out daxd\'s 256 MiB data file');
    const files = await prepareDaxd(daxd.address);
    const daxdNbd = { uri: `nbd://${nbdAddress}/${files.data.name}`, pid: daxd.pid };
    const cases = CASES.filter((c) => c.fio !== undefined);
    // Warm-up (JIT, page cache), not measured.
    runNbd(nbdkit, cases[0], 0.5, new Set());
    runNbd(daxdNbd, cases[0], 0.5, new Set());
    const runs = new Map<string, { nbdkit: Measured[]; daxdNbd: Measured[] }>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of cases) {
        const r = runs.get(c.id) ?? { nbdkit: [], daxdNbd: [] };
        runs.set(c.id, r);
        const order: Array<'nbdkit' | 'daxdNbd'> = round % 2 === 0 ? ['daxdNbd', 'nbdkit'] : ['nbdkit', 'daxdNbd'];
        for (const t of order) r[t].push(runNbd(t === 'nbdkit' ? nbdkit : daxdNbd, c, SECONDS, commands));
        log(`bench:nbd: round ${round + 1}: ${c.label}`);
      }
    }
    const rows: Row[] = cases.map((c) => {
      const r = runs.get(c.id)!;
      return { c, nbdkit: median(r.nbdkit), daxdNbd: median(r.daxdNbd) };
    });
    const targets = daxdNbdTargets(rows.map((r) => ({ id: r.c.id, label: r.c.label, nbdkit: r.nbdkit, daxdNbd: r.daxdNbd })));
    const out = [
      `daxd NBD export vs nbdkit: medians of ${ROUNDS} run(s) of ${SECONDS} s per case; ${os.cpus().length} CPUs, load average ${load()}`,
      table(rows),
      'CPU us/op: client (fio) + server process CPU per op. Both servers get the same fio command; only the URI differs.',
      '', 'targets:', ...targets.map((t) => `  ${t}`),
      '', 'commands:', ...[...commands].map((c) => `  ${c}`),
    ];
    process.stdout.write(`${out.join('\n')}\n`);
    const json = JSON.stringify({
      bench: 'nbd', seconds: SECONDS, rounds: ROUNDS, loadAverage: os.loadavg(), cpus: os.cpus().length, nodeVersion: process.version,
      rows: rows.map((r) => ({ id: r.c.id, label: r.c.label, unit: r.c.unit, nbdkit: r.nbdkit, daxdNbd: r.daxdNbd })),
      targets, commands: [...commands], elapsedS: (performance.now() - started) / 1000,
    });
    fs.mkdirSync(path.join(REPO_ROOT, 'test-artifacts'), { recursive: true });
    fs.writeFileSync(path.join(REPO_ROOT, 'test-artifacts', 'bench-nbd.json'), `${json}\n`);
    if (PROFILE) {
      for (const id of PROFILED_CASES) {
        log(`bench:nbd: profiling ${id}`);
        process.stdout.write(`\n${await profileCase(tmp.dir, cases.find((c) => c.id === id)!)}\n`);
      }
    }
    log(`bench:nbd: done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    await nbdkit?.stop();
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
