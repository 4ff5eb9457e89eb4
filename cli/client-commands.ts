/**
 * The client subcommands: ls, stat, put, get, rm, truncate, df, inspect. Each connects with the
 * SDK to --server (default $DAXD_SERVER, else 127.0.0.1:7070), or to a cluster through
 * the seed nodes of --cluster (DaxCluster: each file's calls go to its node), over TLS with --tls-ca /
 * --tls-cert / --tls-key, as the principal of --token (else $DAXD_TOKEN), and reports a failure as
 * one line `daxd CMD: STATUS/REASON: details` with exit status 1.
 */
import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { DaxClient, DaxCluster, readChunks, writeChunks, type FileInfo, type MappingEntry } from '../client';
import { CHUNK_BYTES } from '../client/limits';
import { connectionOptions, TOKEN_ENV } from '../client/loadtest/connect-flags';
import { DEFAULT_GRPC_ADDRESS, EXIT_OK, formatBytes, parseSize, stringOption, UsageError, type Options, type Parsed } from './args';
import { byteProgressBar } from './byte-progress';
import type { Command } from './command';

/** Transfers at least this large show a progress bar (on a terminal, unless --no-progress). */
const PROGRESS_BYTES_MIN = 8 * 1024 * 1024;

const SERVER_OPTION: Options = {
  server: { type: 'string', short: 's' }, cluster: { type: 'string' },
  'tls-ca': { type: 'string' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' }, token: { type: 'string' },
};
const SERVER_HELP = `  -s, --server HOST:PORT   daxd to talk to (default $DAXD_SERVER, else ${DEFAULT_GRPC_ADDRESS})\n`
  + '  --cluster HOST:PORT[,...]  a cluster (daxd serve --etcd) through these seed nodes instead of one --server:\n'
  + '                           each file is found on its node; ls and df cover every live node\n'
  + '  --tls-ca FILE            talk TLS; the server\'s certificate must chain to this PEM CA file\n'
  + '  --tls-cert FILE          client certificate (PEM) to present (mTLS), with --tls-key\n'
  + '  --tls-key FILE           private key (PEM) of --tls-cert\n'
  + `  --token TOKEN            bearer token of a principal of the server's --auth file (default $${TOKEN_ENV};\n`
  + '                           prefer the variable: a command line is visible to other users)';

/**
 * What a command talks to: one server (--server), or a cluster (--cluster SEEDS), where a
 * file's calls go to the client of its node.
 */
interface Target {
  lookup(name: string): Promise<{ client: DaxClient; file: FileInfo }>;
  create(name: string, options?: { exclusive?: boolean }): Promise<{ client: DaxClient; file: FileInfo }>;
  unlink(name: string): Promise<void>;
  listAll(prefix: string): AsyncGenerator<FileInfo>;
  statVolume(): Promise<{ blockSize: number; blocksTotal: number; blocksUsed: number; blocksFree: number; files: number; maxFiles: number }>;
  close(): void;
}

function serverTarget(client: DaxClient): Target {
  return {
    lookup: async (name) => ({ client, file: await client.lookup(name) }),
    create: async (name, options) => ({ client, file: await client.create(name, options) }),
    unlink: (name) => client.unlink(name),
    listAll: (prefix) => client.listAll(prefix),
    statVolume: () => client.statVolume(),
    close: () => client.close(),
  };
}

function clusterTarget(cluster: DaxCluster): Target {
  return {
    lookup: async (name) => {
      const file = await cluster.lookup(name);
      return { client: await cluster.clientOf(file), file };
    },
    create: async (name, options) => {
      const file = await cluster.create(name, options);
      return { client: await cluster.clientOf(file), file };
    },
    unlink: (name) => cluster.unlink(name),
    listAll: (prefix) => cluster.listAll(prefix),
    statVolume: () => cluster.statVolume(),
    close: () => cluster.close(),
  };
}

function connect(parsed: Parsed): Target {
  // Files are read and the token checked before connecting: a bad flag is a usage error.
  const connection = connectionOptions(parsed.values);
  const seeds = stringOption(parsed.values, 'cluster');
  if (seeds !== undefined && stringOption(parsed.values, 'server') !== undefined) throw new UsageError('--cluster and --server: give one');
  const server = stringOption(parsed.values, 'server') ?? process.env.DAXD_SERVER ?? DEFAULT_GRPC_ADDRESS;
  try {
    if (seeds === undefined) return serverTarget(DaxClient.connect(server, connection));
    return clusterTarget(DaxCluster.connect({ seeds: seeds.split(',').filter((x) => x !== ''), ...connection }));
  } catch (err) {
    // A token in plaintext beyond loopback, a certificate without its key, no seeds: the flags are at fault.
    if (err instanceof TypeError) throw new UsageError(err.message);
    throw err;
  }
}

/** Run `body` with a target, closing it afterwards. */
function clientCommand(body: (target: Target, parsed: Parsed) => Promise<void>): (parsed: Parsed) => Promise<number> {
  return async (parsed) => {
    const target = connect(parsed);
    try {
      await body(target, parsed);
      return EXIT_OK;
    } finally {
      target.close();
    }
  };
}

function progressBar(totalBytes: number, parsed: Parsed): { update(doneBytes: number): void; stop(): void } {
  if (totalBytes < PROGRESS_BYTES_MIN || parsed.values['no-progress'] === true || !process.stderr.isTTY) {
    return { update: () => undefined, stop: () => undefined };
  }
  return byteProgressBar(totalBytes);
}

function describe(file: FileInfo): string {
  return [
    `name:       ${file.name}`,
    `ino:        ${file.ino}`,
    `generation: ${file.generation}`,
    `size:       ${file.size} (${formatBytes(file.size)})`,
    `blocks:     ${file.blocks} (${formatBytes(file.blocks * 4096)} allocated)`,
    `mtime:      ${new Date(file.mtimeMs).toISOString()}`,
    `ctime:      ${new Date(file.ctimeMs).toISOString()}`,
  ].join('\n');
}

const ls = clientCommand(async (target, parsed) => {
  const long = parsed.values.long === true;
  for await (const file of target.listAll(parsed.positionals[0] ?? '')) {
    const line = long
      ? `${String(file.ino).padStart(8)} ${String(file.size).padStart(14)} ${new Date(file.mtimeMs).toISOString()} ${file.name}`
      : file.name;
    process.stdout.write(`${line}\n`);
  }
});

const stat = clientCommand(async (target, parsed) => {
  const { file } = await target.lookup(parsed.positionals[0]);
  process.stdout.write(parsed.values.json === true ? `${JSON.stringify(file)}\n` : `${describe(file)}\n`);
});

const put = clientCommand(async (target, parsed) => {
  const [localPath, name] = parsed.positionals;
  const sizeBytes = fs.statSync(localPath).size;
  const { client, file } = await target.create(name);
  const bar = progressBar(sizeBytes, parsed);
  try {
    // Overwrite in place, then cut to the new length: no blocks are freed and reallocated.
    await writeChunks(client, file.ino, fs.createReadStream(localPath, { highWaterMark: CHUNK_BYTES }), { onProgress: bar.update });
  } finally {
    bar.stop();
  }
  await client.truncate(file.ino, sizeBytes);
  await client.fsync(file.ino);
  process.stdout.write(`${name}: ${sizeBytes} bytes written (ino ${file.ino})\n`);
});

const get = clientCommand(async (target, parsed) => {
  const [name, localPath] = parsed.positionals;
  const { client, file } = await target.lookup(name);
  const bar = progressBar(file.size, parsed);
  let done = 0;
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of readChunks(client, file.ino, { length: file.size })) {
      done += chunk.length;
      bar.update(done);
      yield chunk;
    }
  }
  try {
    await pipeline(counted(), fs.createWriteStream(localPath));
  } finally {
    bar.stop();
  }
  process.stdout.write(`${localPath}: ${done} bytes read from ${name}\n`);
});

/** A new sparse file of --size bytes (reads as zeros; e.g. an NBD export to fill). */
const create = clientCommand(async (target, parsed) => {
  const [name] = parsed.positionals;
  const sizeText = stringOption(parsed.values, 'size');
  if (sizeText === undefined) throw new UsageError('--size is required (e.g. --size 1G)');
  const sizeBytes = parseSize(sizeText, '--size');
  const { client, file } = await target.create(name, { exclusive: true });
  if (sizeBytes > 0) await client.truncate(file.ino, sizeBytes);
  process.stdout.write(`${name}: created, ${sizeBytes} bytes (${formatBytes(sizeBytes)})\n`);
});

const rm = clientCommand(async (target, parsed) => {
  for (const name of parsed.positionals) await target.unlink(name);
});

const truncate = clientCommand(async (target, parsed) => {
  const [name, sizeText] = parsed.positionals;
  const sizeBytes = parseSize(sizeText, 'SIZE');
  const { client, file } = await target.lookup(name);
  await client.truncate(file.ino, sizeBytes);
});

const df = clientCommand(async (target, parsed) => {
  const v = await target.statVolume();
  if (parsed.values.json === true) {
    process.stdout.write(`${JSON.stringify(v)}\n`);
    return;
  }
  const used = v.blocksUsed * v.blockSize;
  const total = v.blocksTotal * v.blockSize;
  const free = v.blocksFree * v.blockSize;
  process.stdout.write(`${'size'.padStart(10)} ${'used'.padStart(10)} ${'free'.padStart(10)} use%  files\n`);
  process.stdout.write(`${formatBytes(total).padStart(10)} ${formatBytes(used).padStart(10)} ${formatBytes(free).padStart(10)} `
    + `${String(Math.round((100 * used) / Math.max(1, total))).padStart(3)}%  ${v.files}/${v.maxFiles}\n`);
});

/** A page index argument: a non-negative decimal integer. */
function pgoffArg(text: string, what: string): number {
  const n = /^[0-9]{1,16}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${what} must be a page index (a non-negative integer), got ${JSON.stringify(text)}`);
  return n;
}

/** "PMD ZERO", "PTE MAPPED", ...: the entry's size and state in one column. */
function entryKind(e: MappingEntry): string {
  return `${e.order === 9 ? 'PMD' : e.order === 0 ? 'PTE' : `order-${e.order}`} ${e.state}`;
}

/** The mapping entries of a file's pages [FIRST, LAST] (default: every page before EOF). */
const inspect = clientCommand(async (target, parsed) => {
  const [name, firstText, lastText] = parsed.positionals;
  const { client, file } = await target.lookup(name);
  const first = firstText === undefined ? 0 : pgoffArg(firstText, 'FIRST');
  const last = lastText === undefined ? Math.max(first, Math.ceil(file.size / 4096) - 1) : pgoffArg(lastText, 'LAST');
  if (last < first) throw new UsageError(`LAST (${last}) is before FIRST (${first})`);
  const entries = await client.inspect(file.ino, first, last);
  if (parsed.values.json === true) {
    for (const e of entries) process.stdout.write(`${JSON.stringify(e)}\n`);
    return;
  }
  process.stdout.write(`${'pgoff'.padStart(12)} ${'pages'.padStart(5)}  ${'entry'.padEnd(10)} ${'pfn'.padStart(12)}  flags  pins mappers waiters\n`);
  for (const e of entries) {
    const flags = `${e.locked ? 'L' : '-'}${e.dirty ? 'D' : '-'}${e.towrite ? 'T' : '-'}`;
    process.stdout.write(`${String(e.pgoff).padStart(12)} ${String(2 ** e.order).padStart(5)}  ${entryKind(e).padEnd(10)} ${String(e.pfn).padStart(12)}  ${flags.padEnd(5)} `
      + `${String(e.pinCount).padStart(4)} ${String(e.mappers).padStart(7)} ${String(e.waiters).padStart(7)}\n`);
  }
});

function command(name: string, summary: string, usage: string, details: string, options: Options, positionals: Command['positionals'], run: Command['run']): Command {
  return { name, summary, help: `usage: daxd ${usage}\n\n${details}\n${SERVER_HELP}`, options: { ...SERVER_OPTION, ...options }, positionals, run };
}

export const clientCommands: Command[] = [
  command('ls', 'list files (optionally those starting with PREFIX)', 'ls [PREFIX] [-l]',
    'Lists file names in byte order.\n  -l, --long   ino, size, mtime and name', { long: { type: 'boolean', short: 'l' } }, { min: 0, max: 1 }, ls),
  command('stat', 'show a file\'s attributes', 'stat NAME [--json]',
    'Shows ino, generation, size, blocks and times.\n  --json   one JSON line', { json: { type: 'boolean' } }, { min: 1, max: 1 }, stat),
  command('put', 'copy a local file into daxd', 'put LOCAL NAME [--no-progress]',
    'Creates NAME (or overwrites it), writes LOCAL into it and fsyncs.\n  --no-progress   no progress bar (shown for 8 MiB and more on a terminal)',
    { 'no-progress': { type: 'boolean' } }, { min: 2, max: 2 }, put),
  command('get', 'copy a daxd file to a local file', 'get NAME LOCAL [--no-progress]',
    'Reads NAME into LOCAL (created or truncated).\n  --no-progress   no progress bar (shown for 8 MiB and more on a terminal)',
    { 'no-progress': { type: 'boolean' } }, { min: 2, max: 2 }, get),
  command('create', 'create an empty (sparse) file of a given size', 'create NAME --size N',
    'Creates NAME (EEXIST if it exists) with size N (e.g. 64M, 1G), all holes: reads as zeros, no space used.\n  --size N   the file size',
    { size: { type: 'string' } }, { min: 1, max: 1 }, create),
  command('rm', 'remove files', 'rm NAME...', 'Unlinks each NAME (in order; stops at the first failure).', {}, { min: 1, max: Infinity }, rm),
  command('truncate', 'set a file\'s size', 'truncate NAME SIZE', 'Sets the size of NAME to SIZE (e.g. 0, 4096, 10M).', {}, { min: 2, max: 2 }, truncate),
  command('inspect', 'show a file\'s mapping entries (4 KiB PTE and 2 MiB PMD entries)', 'inspect NAME [FIRST [LAST]] [--json]',
    'Lists the mapping entries of pages FIRST..LAST of NAME (default: every page before EOF), one line each:\n'
    + 'its first page, pages covered, entry ("PTE ZERO", "PTE MAPPED", "PMD ZERO" = the huge zero page, "PMD MAPPED"),\n'
    + 'pfn, flags (L locked, D dirty, T towrite), pins, mappers (sessions mapping it) and lock waiters.\n'
    + '  --json   one JSON object per entry',
    { json: { type: 'boolean' } }, { min: 1, max: 3 }, inspect),
  command('df', 'show volume usage', 'df [--json]', 'Shows size, used and free space and the file count.\n  --json   one JSON line', { json: { type: 'boolean' } }, { min: 0, max: 0 }, df),
];
