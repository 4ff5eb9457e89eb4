/**
 * `npm run bench:auth`: what authentication costs per call, side by side. Three daxd on
 * 127.0.0.1 with the same volume size: auth off; `--auth` with a plain rw principal (every
 * call hashes and looks up its bearer token); `--auth` with a rw principal confined to a
 * prefix with allocated-bytes and files quotas (every call also checks the prefix, every
 * write the quota). daxd-load runs 4 KiB randread and randwrite at QD1 and QD16 against
 * each, BENCH_SECONDS (default 5) per run, BENCH_ROUNDS (default 3) rounds with the order
 * of the servers rotated each round. Prints medians of ops/s and p50 latency and the ratio
 * to auth off, with the machine's load; writes test-artifacts/bench-auth.json.
 */
import { execFile } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, startServer, tempDir, type StartedServer } from '../support/start-server';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const LOAD_BIN = path.join(REPO_ROOT, 'bin', 'daxd-load.js');
const CASES = [['randread', 1], ['randread', 16], ['randwrite', 1], ['randwrite', 16]] as const;
const CONFIGS = ['off', 'token', 'prefix+quotas'] as const;
type Config = (typeof CONFIGS)[number];

interface Run { opsPerSec: number; p50Us: number }

function load(server: StartedServer, token: string | null, workload: string, qd: number, jsonFile: string): Promise<Run> {
  const args = [LOAD_BIN, '-w', workload, '--qd', String(qd), '--bs', '4k', '--size', '16M', '--duration', `${SECONDS}s`,
    '--server', server.address, '--no-progress', '--json', jsonFile];
  const env = token === null ? process.env : { ...process.env, DAXD_TOKEN: token };
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { env, timeout: (SECONDS + 60) * 1000 }, (err) => {
      if (err) return reject(err);
      const result = JSON.parse(fs.readFileSync(jsonFile, 'utf8')) as { passed: boolean; total: { opsPerSec: number; latencyUs: { p50: number } } };
      if (!result.passed) return reject(new Error(`daxd-load ${workload} failed`));
      resolve({ opsPerSec: result.total.opsPerSec, p50Us: result.total.latencyUs.p50 });
    });
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main(): Promise<void> {
  const tmp = tempDir('daxd-bench-auth-');
  const token = randomBytes(32).toString('base64url');
  const hash = createHash('sha256').update(token).digest('hex');
  const authFile = (name: string, principal: object) => {
    const file = path.join(tmp.dir, `${name}.json`);
    fs.writeFileSync(file, JSON.stringify({ principals: [{ name: 'bench', role: 'rw', token_sha256: hash, ...principal }] }));
    return file;
  };
  const servers: Record<Config, StartedServer> = {} as Record<Config, StartedServer>;
  try {
    const args: Record<Config, string[]> = {
      off: [],
      token: ['--auth', authFile('token', {})],
      'prefix+quotas': ['--auth', authFile('quotas', { prefix: 'daxd-load', quotas: { allocated_bytes: 1 << 30, files: 100 } })],
    };
    for (const config of CONFIGS) {
      servers[config] = await startServer({ volumePath: path.join(tmp.dir, `${config}.vol`), size: '512M', extraArgs: args[config] });
    }
    const loadBefore = os.loadavg();
    const runs: Record<string, Record<Config, Run[]>> = {};
    for (let round = 0; round < ROUNDS; round++) {
      const order = CONFIGS.map((_, i) => CONFIGS[(i + round) % CONFIGS.length]);
      for (const [workload, qd] of CASES) {
        const key = `${workload} 4k QD${qd}`;
        runs[key] ??= { off: [], token: [], 'prefix+quotas': [] };
        for (const config of order) {
          const run = await load(servers[config], config === 'off' ? null : token, workload, qd, path.join(tmp.dir, 'run.json'));
          runs[key][config].push(run);
        }
      }
    }
    const loadAfter = os.loadavg();
    const rows = Object.entries(runs).map(([key, by]) => {
      const m = (c: Config) => ({ opsPerSec: median(by[c].map((r) => r.opsPerSec)), p50Us: median(by[c].map((r) => r.p50Us)) });
      return { case: key, off: m('off'), token: m('token'), prefixQuotas: m('prefix+quotas') };
    });
    console.log(`auth overhead: ${ROUNDS} rounds x ${SECONDS} s, medians; load average ${loadBefore[0].toFixed(2)} before, ${loadAfter[0].toFixed(2)} after (${os.cpus().length} CPUs)`);
    console.log('| case | auth off ops/s (p50 µs) | --auth token ops/s (p50 µs) | ratio | --auth prefix+quotas ops/s (p50 µs) | ratio |');
    console.log('|---|---|---|---|---|---|');
    for (const r of rows) {
      const cell = (x: Run) => `${x.opsPerSec.toFixed(0)} (${x.p50Us.toFixed(0)})`;
      console.log(`| ${r.case} | ${cell(r.off)} | ${cell(r.token)} | ${(r.token.opsPerSec / r.off.opsPerSec).toFixed(2)} | ${cell(r.prefixQuotas)} | ${(r.prefixQuotas.opsPerSec / r.off.opsPerSec).toFixed(2)} |`);
    }
    const out = path.join(REPO_ROOT, 'test-artifacts', 'bench-auth.json');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, JSON.stringify({ seconds: SECONDS, rounds: ROUNDS, loadAverage: { before: loadBefore, after: loadAfter }, rows }, null, 2));
    console.log(`wrote ${path.relative(REPO_ROOT, out)}`);
  } finally {
    for (const server of Object.values(servers)) await server.stop();
    tmp.remove();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
