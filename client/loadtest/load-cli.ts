/**
 * `daxd-load`: the load generator (bin/daxd-load.js calls main(argv)).
 *
 *   daxd-load --workload randread --qd 64 --bs 4k --duration 10s [--server 127.0.0.1:7070]
 *
 * Without --server it starts a private daxd (127.0.0.1, port 0, a temporary volume) and
 * stops it at the end. Prints a live progress bar on stderr, the summary on stdout,
 * optionally JSON (--json) and an HTML report (--report).
 * Exit status: 0 passed, 1 failed (errors or verify mismatches), 2 usage error.
 */
import fs from 'node:fs';
import {
  addressValue, durationValue, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, helpText, intValue, parseFlags, sizeValue, str, UsageError,
  type FlagSpec, type FlagValues,
} from './flags';
import {
  BATCH_MAX, BS_BYTES_MAX, CLIENTS_MAX, DEFAULT_LOAD_OPTIONS, DURATION_MS_MAX, FILES_MAX, QD_MAX, WORKERS_MAX, WORKLOAD_NAMES,
  type LoadOptions, type WorkloadName,
} from './load-options';
import { startPrivateServer, type PrivateServer } from './private-server';
import { CONNECT_FLAGS, connectionOptions, hasConnectionFlags, type ConnectionOptions } from './connect-flags';
import { ProgressBar } from './progress';
import { reportHtml } from './report-html';
import { freshSeed } from './rng';
import { LoadUsageError, OPS_ONLY_DURATION_MS_MAX, runLoad, validateOptions, type RunResult } from './runner';
import { summaryText } from './summary';
import { WORKLOADS } from './workloads';

const D = DEFAULT_LOAD_OPTIONS;
const PRIVATE_VOLUME_BYTES_MIN = 256 * 1024 * 1024;

export const LOAD_FLAGS: FlagSpec[] = [
  { name: 'workload', short: 'w', value: 'NAME', default: D.workload, help: 'what to run; see "workloads" below' },
  { name: 'server', value: 'HOST:PORT', help: 'the daxd to load; without it a private daxd is started on 127.0.0.1 (port 0) with a temporary volume and stopped at the end' },
  ...CONNECT_FLAGS,
  { name: 'clients', value: 'N', default: String(D.clients), help: `connections (DaxClient instances), each with its own channel and sessions (1..${CLIENTS_MAX})` },
  { name: 'qd', value: 'N', default: String(D.qd), help: `queue depth: workers per client, each with one request outstanding (1..${QD_MAX}; clients x qd <= ${WORKERS_MAX})` },
  { name: 'bs', value: 'SIZE', default: '4k', help: `request size: bytes per read/write/load/store, pages per pin (4k, 1M, ...; at most ${BS_BYTES_MAX / 1048576}M)` },
  { name: 'size', value: 'SIZE', default: '64M', help: 'size of each file (a multiple of 4k); written files are laid out before the measured phase' },
  { name: 'files', value: 'N', default: String(D.files), help: `files to spread the load over, named PREFIX.0 .. PREFIX.N-1 (1..${FILES_MAX})` },
  { name: 'duration', value: 'TIME', default: '10s', help: `length of the measured phase (500ms, 10s, 2m); with --ops alone the run ends at the op count or after ${OPS_ONLY_DURATION_MS_MAX / 1000}s` },
  { name: 'ops', value: 'N', help: 'stop after N requests in all (a read, a write, a fault batch, a pin cycle, a layout change each count one)' },
  { name: 'mix', value: 'PCT', default: String(D.mixPct), help: 'percentage of reads in randrw, of loads in mapped-rw, of read cycles in pin-churn and pin-stream' },
  { name: 'batch', value: 'N', default: String(D.batch), help: `pages per request in fault storms (FaultBatch size, MappedFile round) (1..${BATCH_MAX})` },
  { name: 'seed', value: 'N', default: 'from the clock, printed', help: 'seed of every random choice: the same seed replays the same requests' },
  { name: 'verify', help: 'stamp every written 4 KiB page with a header (file, page, generation, checksum) and check every page read; any mismatch is printed with its location and fails the run' },
  { name: 'json', value: 'FILE', help: 'write the full result as JSON (options, per-kind throughput and latency histograms, time series, errors, mismatches); "-" for stdout' },
  { name: 'report', value: 'FILE.html', help: 'write a self-contained HTML report with plots (throughput over time, latency distribution)' },
  { name: 'interval', value: 'TIME', default: '1s', help: 'time series resolution (and progress refresh)' },
  { name: 'prefix', value: 'NAME', default: D.filePrefix, help: 'file name prefix' },
  { name: 'keep', help: 'keep the files at the end (default: unlink them)' },
  { name: 'volume-size', value: 'SIZE', default: 'max(256M, 1.25 x files x size)', help: 'size of the private server\'s volume (without --server only)' },
  { name: 'no-progress', help: 'no progress bar (the summary is still printed)' },
  { name: 'help', short: 'h', help: 'print this help' },
];

function workloadList(): string {
  const width = Math.max(...WORKLOAD_NAMES.map((n) => n.length));
  return `workloads:\n${WORKLOAD_NAMES.map((n) => `  ${n.padEnd(width)}  ${WORKLOADS.get(n)?.summary ?? ''}`).join('\n')}\n\n`
    + 'exit status: 0 passed, 1 failed (an unexpected error or a verify mismatch), 2 usage error.\n'
    + 'examples:\n'
    + '  daxd-load -w randread --qd 64 --duration 10s\n'
    + '  daxd-load -w mixed --clients 2 --qd 8 --verify --duration 30s --report run.html --server 127.0.0.1:7070\n'
    + '  daxd-load -w truncate-vs-pin --qd 8 --verify --ops 2000';
}

export function loadHelp(): string {
  return helpText('daxd-load [options]', 'Load generator for daxd: file I/O, page faults, mapped loads/stores, DMA pins and their races;\n'
    + 'live progress, a summary with throughput and latency percentiles, optional verification, JSON and HTML reports.', LOAD_FLAGS, workloadList());
}

function toOptions(v: FlagValues, address: string): LoadOptions {
  const workload = str(v, 'workload') ?? D.workload;
  if (!(WORKLOAD_NAMES as readonly string[]).includes(workload)) throw new UsageError(`--workload: unknown ${JSON.stringify(workload)} (one of ${WORKLOAD_NAMES.join(', ')})`);
  const clients = intValue(str(v, 'clients') ?? String(D.clients), 'clients', 1, CLIENTS_MAX);
  const qd = intValue(str(v, 'qd') ?? String(D.qd), 'qd', 1, QD_MAX);
  if (clients * qd > WORKERS_MAX) throw new UsageError(`--clients x --qd is ${clients * qd} (max ${WORKERS_MAX})`);
  const bsBytes = sizeValue(str(v, 'bs') ?? '4k', 'bs');
  if (bsBytes < 1 || bsBytes > BS_BYTES_MAX) throw new UsageError(`--bs must be in [1, ${BS_BYTES_MAX}]`);
  const opsText = str(v, 'ops');
  const durationText = str(v, 'duration');
  const durationMs = durationText !== undefined ? durationValue(durationText, 'duration') : opsText !== undefined ? null : D.durationMs;
  if (durationMs !== null && (durationMs < 1 || durationMs > DURATION_MS_MAX)) throw new UsageError(`--duration must be in [1ms, ${DURATION_MS_MAX / 3600_000}h]`);
  const seedText = str(v, 'seed');
  return {
    address, workload: workload as WorkloadName, clients, qd, bsBytes,
    sizeBytes: sizeValue(str(v, 'size') ?? '64M', 'size'),
    files: intValue(str(v, 'files') ?? String(D.files), 'files', 1, FILES_MAX),
    durationMs, opsMax: opsText === undefined ? null : intValue(opsText, 'ops', 1, Number.MAX_SAFE_INTEGER),
    seed: seedText === undefined ? freshSeed() : intValue(seedText, 'seed', 0, 2 ** 31 - 1),
    verify: v.verify === true,
    mixPct: intValue(str(v, 'mix') ?? String(D.mixPct), 'mix', 0, 100),
    batch: intValue(str(v, 'batch') ?? String(D.batch), 'batch', 1, BATCH_MAX),
    sampleMs: Math.max(100, durationValue(str(v, 'interval') ?? '1s', 'interval')),
    filePrefix: str(v, 'prefix') ?? D.filePrefix,
    keepFiles: v.keep === true,
    progress: v['no-progress'] !== true,
  };
}

function writeOut(file: string, text: string): void {
  if (file === '-') process.stdout.write(text);
  else fs.writeFileSync(file, text);
}

export async function main(argv: string[]): Promise<number> {
  let values: FlagValues;
  let options: LoadOptions;
  // Kept apart from `options`, which the reports print: the token must not reach them.
  let connection: ConnectionOptions;
  try {
    values = parseFlags(argv, LOAD_FLAGS);
    if (values.help === true) {
      process.stdout.write(loadHelp());
      return EXIT_OK;
    }
    const server = str(values, 'server');
    options = toOptions(values, server === undefined ? '127.0.0.1:0' : addressValue(server, 'server'));
    validateOptions(options);
    if (server === undefined && hasConnectionFlags(values)) throw new UsageError('--tls-ca, --tls-cert, --tls-key and --token are for --server (the private daxd needs none)');
    connection = server === undefined ? {} : connectionOptions(values);
  } catch (err) {
    if (err instanceof UsageError || err instanceof LoadUsageError) {
      process.stderr.write(`daxd-load: ${err.message}\n(daxd-load --help lists the options)\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
  let server: PrivateServer | null = null;
  const bar = options.progress ? new ProgressBar(`daxd-load ${options.workload}`) : null;
  let result: RunResult;
  try {
    if (str(values, 'server') === undefined) {
      const wanted = str(values, 'volume-size');
      const bytes = wanted !== undefined ? sizeValue(wanted, 'volume-size')
        : Math.max(PRIVATE_VOLUME_BYTES_MIN, Math.ceil((options.files * options.sizeBytes * 1.25) / 1048576) * 1048576 + 64 * 1048576);
      server = await startPrivateServer(bytes);
      options = { ...options, address: server.address };
      process.stderr.write(`daxd-load: started a private daxd (pid ${server.pid}) on ${server.address}\n`);
    }
    process.stderr.write(`daxd-load: seed ${options.seed}\n`);
    result = await runLoad(options, {
      onPhase: (m) => process.stderr.write(`daxd-load: ${m}\n`),
      onSample: (point, fraction, errors) => bar?.update(point, fraction, errors),
    }, null, connection);
  } catch (err) {
    bar?.stop();
    if (err instanceof LoadUsageError) {
      process.stderr.write(`daxd-load: ${err.message}\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`daxd-load: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT_FAILURE;
  } finally {
    bar?.stop();
    await server?.stop();
  }
  const json = str(values, 'json');
  const report = str(values, 'report');
  if (json !== undefined) writeOut(json, `${JSON.stringify(result, null, json === '-' ? 0 : 1)}\n`);
  if (report !== undefined) writeOut(report, reportHtml(result));
  // With the JSON on stdout, the summary goes to stderr.
  (json === '-' ? process.stderr : process.stdout).write(summaryText(result));
  return result.passed ? EXIT_OK : EXIT_FAILURE;
}
