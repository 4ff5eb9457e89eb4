/**
 * `daxd-fsx`: an fsx-style exerciser (bin/daxd-fsx.js calls main(argv)).
 *
 *   daxd-fsx --seed 42 --ops 5000 [--server 127.0.0.1:7070]
 *
 * On a mismatch (or an unexpected error) it prints the seed, the failing op and the ops
 * before it, and exits 1: `daxd-fsx --seed N` with the same options replays the run.
 * Without --server it starts a private daxd on 127.0.0.1 (port 0) and stops it at the end.
 * Exit status: 0 passed, 1 failed, 2 usage error.
 */
import fs from 'node:fs';
import {
  addressValue, durationValue, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, helpText, intValue, parseFlags, sizeValue, str, UsageError,
  type FlagSpec, type FlagValues,
} from '../flags';
import { startPrivateServer, type PrivateServer } from '../private-server';
import { CONNECT_FLAGS, connectionOptions, hasConnectionFlags, type ConnectionOptions } from '../connect-flags';
import { freshSeed } from '../rng';
import { DEFAULT_WEIGHTS, FSX_OP_NAMES, OP_HELP, type FsxOpName } from './fsx-ops';
import { FsxProgress } from './fsx-progress';
import { runFsx, type FsxOptions, type FsxResult } from './fsx-run';

const SESSIONS_MAX = 16;
const SIZE_BYTES_MAX = 64 * 1024 * 1024;
const LOG_MAX = 10_000;
const PRIVATE_VOLUME_BYTES = 256 * 1024 * 1024;

export const FSX_FLAGS: FlagSpec[] = [
  { name: 'server', value: 'HOST:PORT', help: 'the daxd to exercise; without it a private daxd is started on 127.0.0.1 (port 0) with a temporary volume and stopped at the end' },
  ...CONNECT_FLAGS,
  { name: 'seed', value: 'N', default: 'from the clock, printed', help: 'seed of the op sequence: the same seed and options replay the same ops' },
  { name: 'ops', short: 'N', value: 'N', default: '1000', help: 'operations to run' },
  { name: 'duration', value: 'TIME', default: '60s', help: 'stop (passing) after this long even if --ops are not done' },
  { name: 'sessions', value: 'N', default: '3', help: `sessions (each on its own connection, with a shared and a private mapping of the file) that ops are spread over (1..${SESSIONS_MAX})` },
  { name: 'max-size', value: 'SIZE', default: '256k', help: `largest file offset ops reach (at most ${SIZE_BYTES_MAX / 1048576}M)` },
  { name: 'max-len', value: 'SIZE', default: '64k', help: 'largest length of one read, write, load, store, punch, ...' },
  { name: 'log', value: 'N', default: '40', help: 'ops printed before the failing one' },
  { name: 'weights', value: 'OP=W,...', help: 'change op weights (0 disables an op), e.g. "pin=20,collapse=0"; ops below' },
  { name: 'file', value: 'NAME', default: 'daxd-fsx.SEED', help: 'name of the file exercised (emptied first, removed at the end)' },
  { name: 'json', value: 'FILE', help: 'write the result (counts, failure and its op log) as JSON' },
  { name: 'verbose', short: 'v', help: 'print every op before it runs' },
  { name: 'help', short: 'h', help: 'print this help' },
];

function opList(): string {
  const width = Math.max(...FSX_OP_NAMES.map((n) => n.length));
  return `ops (default weight):\n${FSX_OP_NAMES.map((n) => `  ${n.padEnd(width)}  ${String(DEFAULT_WEIGHTS[n]).padStart(2)}  ${OP_HELP[n]}`).join('\n')}\n\n`
    + 'Every read (Files read, mapped and COW loads, DMA reads) is compared with an in-memory model of the file;\n'
    + 'every size change with stat; the whole file every 100 ops and at the end.\n'
    + 'exit status: 0 passed, 1 failed (mismatch or unexpected error: the seed and the last ops are printed), 2 usage error.';
}

export function fsxHelp(): string {
  return helpText('daxd-fsx [options]', 'fsx-style exerciser for daxd: a seeded random sequence of operations on one file from several sessions,\nchecked against an in-memory model after every read.', FSX_FLAGS, opList());
}

function parseWeights(text: string | undefined): Record<FsxOpName, number> {
  const weights = { ...DEFAULT_WEIGHTS };
  if (text === undefined) return weights;
  for (const part of text.split(',').filter((p) => p.trim() !== '')) {
    const m = /^\s*([a-z]+)\s*=\s*(\d+)\s*$/.exec(part);
    if (m === null || !(FSX_OP_NAMES as readonly string[]).includes(m[1])) throw new UsageError(`--weights: ${JSON.stringify(part)} is not OP=WEIGHT with OP one of ${FSX_OP_NAMES.join(', ')}`);
    weights[m[1] as FsxOpName] = intValue(m[2], 'weights', 0, 1000);
  }
  if (FSX_OP_NAMES.every((n) => weights[n] === 0)) throw new UsageError('--weights: every op is disabled');
  return weights;
}

function toOptions(v: FlagValues, address: string): FsxOptions {
  const seedText = str(v, 'seed');
  const seed = seedText === undefined ? freshSeed() : intValue(seedText, 'seed', 0, 2 ** 31 - 1);
  const maxSizeBytes = sizeValue(str(v, 'max-size') ?? '256k', 'max-size');
  if (maxSizeBytes < 8192 || maxSizeBytes > SIZE_BYTES_MAX) throw new UsageError(`--max-size must be in [8k, ${SIZE_BYTES_MAX / 1048576}M]`);
  const maxLenBytes = sizeValue(str(v, 'max-len') ?? '64k', 'max-len');
  if (maxLenBytes < 1 || maxLenBytes > maxSizeBytes) throw new UsageError('--max-len must be in [1, --max-size]');
  return {
    address, seed, maxSizeBytes, maxLenBytes,
    opsMax: intValue(str(v, 'ops') ?? '1000', 'ops', 1, Number.MAX_SAFE_INTEGER),
    durationMs: durationValue(str(v, 'duration') ?? '60s', 'duration'),
    sessions: intValue(str(v, 'sessions') ?? '3', 'sessions', 1, SESSIONS_MAX),
    logOps: intValue(str(v, 'log') ?? '40', 'log', 1, LOG_MAX),
    weights: parseWeights(str(v, 'weights')),
    fileName: str(v, 'file') ?? `daxd-fsx.${seed}`,
  };
}

function report(r: FsxResult): string {
  const counts = Object.entries(r.counts).map(([k, n]) => `${k} ${n}`).join(', ');
  if (r.failure === null) {
    return `daxd-fsx: PASSED ${r.opsDone} ops in ${r.elapsedS.toFixed(1)} s (seed ${r.seed}, stopped by ${r.stoppedBy}, final size ${r.finalSize})\n  ${counts}\n`;
  }
  const f = r.failure;
  return `daxd-fsx: FAILED at op #${f.op} (seed ${r.seed}): ${f.line}\n  ${f.message.split('\n').join('\n  ')}\n`
    + `last ${f.lastOps.length} ops (replay with --seed ${r.seed} and the same options):\n${f.lastOps.map((l) => `  ${l}`).join('\n')}\n`
    + `done before the failure: ${counts}\n`;
}

export async function main(argv: string[]): Promise<number> {
  let values: FlagValues;
  let options: FsxOptions;
  // Kept apart from `options`, which --json writes out: the token must not reach it.
  let connection: ConnectionOptions;
  try {
    values = parseFlags(argv, FSX_FLAGS);
    if (values.help === true) {
      process.stdout.write(fsxHelp());
      return EXIT_OK;
    }
    const server = str(values, 'server');
    options = toOptions(values, server === undefined ? '127.0.0.1:0' : addressValue(server, 'server'));
    if (server === undefined && hasConnectionFlags(values)) throw new UsageError('--tls-ca, --tls-cert, --tls-key and --token are for --server (the private daxd needs none)');
    connection = server === undefined ? {} : connectionOptions(values);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`daxd-fsx: ${err.message}\n(daxd-fsx --help lists the options)\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
  if (values.verbose === true) options.onOp = (line) => process.stdout.write(`${line}\n`);
  let server: PrivateServer | null = null;
  let progress: FsxProgress | null = null;
  let result: FsxResult;
  try {
    if (str(values, 'server') === undefined) {
      server = await startPrivateServer(PRIVATE_VOLUME_BYTES);
      options.address = server.address;
      process.stderr.write(`daxd-fsx: started a private daxd (pid ${server.pid}) on ${server.address}\n`);
    }
    process.stderr.write(`daxd-fsx: seed ${options.seed}, ${options.opsMax} ops, ${options.sessions} sessions, max size ${options.maxSizeBytes}\n`);
    // --verbose prints every op on stdout: a bar redrawn on the same terminal would garble it.
    if (values.verbose !== true) {
      const bar = progress = new FsxProgress(options.opsMax, options.durationMs);
      options.onProgress = (done, elapsedMs) => bar.update(done, elapsedMs);
    }
    result = await runFsx(options, connection);
  } catch (err) {
    progress?.stop();
    process.stderr.write(`daxd-fsx: ${err instanceof Error ? err.message : String(err)} (seed ${options.seed})\n`);
    return EXIT_FAILURE;
  } finally {
    progress?.stop();
    await server?.stop();
  }
  const json = str(values, 'json');
  if (json !== undefined) fs.writeFileSync(json, `${JSON.stringify({ ...result, options: { ...options, onOp: undefined, onProgress: undefined } }, null, 1)}\n`);
  (result.passed ? process.stdout : process.stderr).write(report(result));
  return result.passed ? EXIT_OK : EXIT_FAILURE;
}
