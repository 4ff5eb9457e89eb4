/**
 * `npm run bench:faults`: page-fault and load/store rates of the dax layer, in-process
 * (faults-inprocess.ts) and over gRPC (faults-grpc.ts), against the targets of issue 4:
 *   in-process >= 500k faults/s on mapped pages; <= 200 bytes per mapped entry;
 *   batched faults >= 10x unary.
 * Prints a table, then the JSON (also written to --json PATH, default
 * test-artifacts/bench-faults.json). Not a test: a missed target is reported, not failed.
 *
 * Usage: node dist/test/bench/faults.bench.js [--json PATH] [--reps N] [--quick]
 *                                             [--only inprocess|grpc]
 * To profile the in-process fault path:
 *   node --cpu-prof --cpu-prof-dir=test-artifacts dist/test/bench/faults.bench.js --only inprocess
 */
import assert from 'node:assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runGrpc, type GrpcResult } from './faults-grpc';
import { removeDir, runInProcess, type InProcessConfig, type InProcessResult } from './faults-inprocess';

interface Config {
  jsonPath: string;
  reps: number;
  quick: boolean;
  only: 'inprocess' | 'grpc' | null;
}

const TARGETS = {
  mappedFaultsPerSec: 500_000,
  bytesPerMappedEntry: 200,
  batchedOverUnary: 10,
} as const;

function parseArgs(argv: string[]): Config {
  const cfg: Config = { jsonPath: path.join('test-artifacts', 'bench-faults.json'), reps: 3, quick: false, only: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      assert(i + 1 < argv.length, `${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--json') cfg.jsonPath = value();
    else if (arg === '--reps') cfg.reps = Number(value());
    else if (arg === '--quick') cfg.quick = true;
    else if (arg === '--only') {
      const only = value();
      assert(only === 'inprocess' || only === 'grpc', '--only inprocess|grpc');
      cfg.only = only;
    } else throw new Error(`unknown argument ${arg} (usage: [--json PATH] [--reps N] [--quick] [--only inprocess|grpc])`);
  }
  assert(Number.isSafeInteger(cfg.reps) && cfg.reps >= 1, '--reps must be a positive integer');
  return cfg;
}

function inProcessConfig(cfg: Config): InProcessConfig {
  const q = cfg.quick;
  return {
    reps: cfg.reps, holePages: q ? 8_192 : 32_768, allocPages: q ? 4_096 : 16_384, mappedPasses: q ? 2 : 4,
    lockOps: q ? 100_000 : 500_000, faulters: 64, faultsPerFaulter: q ? 100 : 400, memoryEntries: q ? 200_000 : 1_000_000,
  };
}

interface Row {
  what: string;
  value: string;
  target: string;
  met: string;
}

const fmt = (n: number): string => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(2));
const verdict = (ok: boolean): string => (ok ? 'yes' : 'NO');

function inProcessRows(r: InProcessResult): Row[] {
  return [
    { what: 'in-process READ fault on a hole (faults/s)', value: fmt(r.readHoleFaultsPerSec), target: '', met: '' },
    { what: 'in-process WRITE fault, allocating (faults/s)', value: fmt(r.writeAllocateFaultsPerSec), target: '', met: '' },
    {
      what: 'in-process READ fault on a mapped page (faults/s)', value: fmt(r.mappedFaultsPerSec),
      target: `>= ${fmt(TARGETS.mappedFaultsPerSec)}`, met: verdict(r.mappedFaultsPerSec >= TARGETS.mappedFaultsPerSec),
    },
    { what: 'entry lock + unlock, uncontended, awaited (ns/op)', value: fmt(r.entryLockAwaitNsPerOp), target: '', met: '' },
    { what: 'entry lock + unlock, uncontended, tryLock (ns/op)', value: fmt(r.entryLockSyncNsPerOp), target: '', met: '' },
    { what: `${r.contended.faulters} faulters on one index (faults/s)`, value: fmt(r.contended.faultsPerSec), target: '', met: '' },
    { what: `${r.contended.faulters} faulters on one index: wait max / p99 (ms)`, value: `${fmt(r.contended.waitMaxMs)} / ${fmt(r.contended.waitP99Ms)}`, target: '', met: '' },
    { what: `${r.contended.faulters} faulters: dropping their PTEs (ms)`, value: fmt(r.contended.ptesDroppedMs), target: '', met: '' },
    {
      what: `memory per mapped entry, with its PTE (${fmt(r.memory.entries)} entries, bytes)`, value: fmt(r.memory.bytesPerEntryWithPte),
      target: `<= ${TARGETS.bytesPerMappedEntry}`, met: verdict(r.memory.bytesPerEntryWithPte <= TARGETS.bytesPerMappedEntry),
    },
    {
      what: 'memory per entry, no PTE (bytes)', value: fmt(r.memory.bytesPerEntryOnly),
      target: `<= ${TARGETS.bytesPerMappedEntry}`, met: verdict(r.memory.bytesPerEntryOnly <= TARGETS.bytesPerMappedEntry),
    },
  ];
}

function grpcRows(g: GrpcResult): Row[] {
  const rows: Row[] = [];
  const group = (label: string, x: GrpcResult['faults'], unit: string, targeted: boolean) => {
    rows.push({ what: `gRPC ${label} unary QD1 / QD16 (${unit})`, value: `${fmt(x.unaryQd1)} / ${fmt(x.unaryQd16)}`, target: '', met: '' });
    rows.push({ what: `gRPC ${label} batched(1024) QD1 / QD4 (${unit})`, value: `${fmt(x.batchQd1)} / ${fmt(x.batchQd4)}`, target: '', met: '' });
    const qd1 = x.batchQd1 / x.unaryQd1;
    const best = Math.max(x.batchQd1, x.batchQd4) / Math.max(x.unaryQd1, x.unaryQd16);
    rows.push({
      what: `gRPC ${label} batched / unary: QD1, best vs best (x)`, value: `${fmt(qd1)} / ${fmt(best)}`,
      target: targeted ? `>= ${TARGETS.batchedOverUnary}` : '', met: targeted ? verdict(Math.min(qd1, best) >= TARGETS.batchedOverUnary) : '',
    });
  };
  group('faults', g.faults, 'faults/s', true);
  group('64 B load+store', g.access64, 'ops/s', false);
  group('4 KiB load+store', g.access4k, 'ops/s', false);
  rows.push({ what: '16 MiB sequential read: MappedFile / Files.Read (MiB/s)', value: `${fmt(g.mappedReadMiBPerSec)} / ${fmt(g.filesReadMiBPerSec)}`, target: '', met: '' });
  return rows;
}

function printTable(rows: Row[]): void {
  const w = (k: keyof Row) => Math.max(k.length, ...rows.map((r) => r[k].length));
  const line = (r: Row) => `| ${r.what.padEnd(w('what'))} | ${r.value.padStart(w('value'))} | ${r.target.padEnd(w('target'))} | ${r.met.padEnd(w('met'))} |`;
  console.log(line({ what: 'what', value: 'value', target: 'target', met: 'met' }));
  console.log(`|${'-'.repeat(w('what') + 2)}|${'-'.repeat(w('value') + 2)}|${'-'.repeat(w('target') + 2)}|${'-'.repeat(w('met') + 2)}|`);
  for (const r of rows) console.log(line(r));
}

async function main(): Promise<void> {
  const cfg = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'daxd-bench-faults-'));
  const log = (s: string) => process.stderr.write(`${s}\n`);
  try {
    let inProcess: InProcessResult | null = null;
    let grpc: GrpcResult | null = null;
    if (cfg.only !== 'grpc') {
      log('in-process (server/dax on an MmapStorage volume):');
      inProcess = await runInProcess(inProcessConfig(cfg), tmp, log);
    }
    if (cfg.only !== 'inprocess') {
      log('over gRPC (daxd child process on 127.0.0.1):');
      grpc = await runGrpc({ reps: cfg.reps, seconds: cfg.quick ? 0.3 : 0.6 }, tmp, log);
    }
    const rows = [...(inProcess ? inProcessRows(inProcess) : []), ...(grpc ? grpcRows(grpc) : [])];
    console.log();
    printTable(rows);
    const result = {
      bench: 'faults', at: new Date().toISOString(), node: process.version, cpus: os.cpus().length, loadavg: os.loadavg(),
      reps: cfg.reps, quick: cfg.quick, seconds: (performance.now() - t0) / 1000, targets: TARGETS, inProcess, grpc,
    };
    const json = JSON.stringify(result, null, 2);
    console.log(`\n${json}`);
    fs.mkdirSync(path.dirname(path.resolve(cfg.jsonPath)), { recursive: true });
    fs.writeFileSync(cfg.jsonPath, `${json}\n`);
    log(`bench:faults done in ${result.seconds.toFixed(1)} s; JSON written to ${cfg.jsonPath}`);
  } finally {
    removeDir(tmp);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
