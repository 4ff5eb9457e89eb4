/**
 * `daxd cluster status|ls|drain`: a cluster of daxd nodes (docs/CLUSTER.md) through the
 * SDK's DaxCluster, from any node of --seeds (default $DAXD_SERVER, else 127.0.0.1:7070),
 * with the connection flags of the other client commands.
 *   status [--json]   nodes, live or down, address, capacity, free, files
 *   ls [PREFIX]       every file of the live nodes, in name order, with its node
 *   drain NODE [--layout-break wait|recall|fail] [--json]
 *                     moves every file off NODE; a progress bar on stderr (a terminal:
 *                     one line redrawn; else a line per file), --json: each progress
 *                     message as a JSON line on stdout. Exit 1 when a file was left.
 */
import { DaxCluster, type ClusterMember, type DrainProgress } from '../client';
import { connectionOptions, TOKEN_ENV } from '../client/loadtest/connect-flags';
import { DEFAULT_GRPC_ADDRESS, EXIT_FAILURE, EXIT_OK, formatBytes, stringOption, UsageError, type Parsed } from './args';
import type { Command } from './command';

const SUBCOMMANDS = ['status', 'ls', 'drain'] as const;

function connect(parsed: Parsed): DaxCluster {
  const connection = connectionOptions(parsed.values);
  const seeds = (stringOption(parsed.values, 'seeds') ?? process.env.DAXD_SERVER ?? DEFAULT_GRPC_ADDRESS).split(',').filter((s) => s !== '');
  if (seeds.length === 0) throw new UsageError('--seeds: name at least one HOST:PORT');
  try {
    return DaxCluster.connect({ seeds, ...connection });
  } catch (err) {
    if (err instanceof TypeError) throw new UsageError(err.message);
    throw err;
  }
}

function statusLines(members: ClusterMember[]): string[] {
  const rows = members.map((m) => [m.name, m.live ? 'live' : 'down', m.grpc || '-', m.live ? formatBytes(m.capacity) : '-', m.live ? formatBytes(m.free) : '-', String(m.files)]);
  const header = ['NODE', 'STATE', 'GRPC', 'CAPACITY', 'FREE', 'FILES'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [header, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
}

const LAYOUT_BREAKS = { wait: 'WAIT', recall: 'RECALL', fail: 'FAIL' } as const;
const BAR_CELLS = 24;

/** Both byte counts in the unit of the larger: "95 MiB / 100 MiB". */
function bytesPair(done: number, total: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let unit = 0;
  while (total >= 1024 ** (unit + 1) && unit < units.length - 1) unit++;
  const f = (n: number) => (unit === 0 ? String(n) : (n / 1024 ** unit).toFixed(total / 1024 ** unit < 10 ? 1 : 0));
  return `${f(done)} ${units[unit]} / ${f(total)} ${units[unit]}`;
}

/** "[#####-----] 12/40 files · 95 MiB / 100 MiB → n2 name" */
export function drainLine(p: DrainProgress): string {
  const fraction = p.bytesTotal > 0 ? p.bytesCopied / p.bytesTotal : p.filesTotal > 0 ? p.filesMoved / p.filesTotal : 1;
  const cells = Math.max(0, Math.min(BAR_CELLS, Math.round(fraction * BAR_CELLS)));
  const failed = p.filesFailed > 0 ? ` (${p.filesFailed} failed)` : '';
  const current = p.current === '' ? '' : ` → ${p.currentTarget} ${p.current.slice(0, 60)}`;
  return `[${'#'.repeat(cells)}${'-'.repeat(BAR_CELLS - cells)}] ${p.filesMoved}/${p.filesTotal} files${failed} · ${bytesPair(p.bytesCopied, p.bytesTotal)}${current}`;
}

async function drain(cluster: DaxCluster, node: string, parsed: Parsed): Promise<number> {
  const policyFlag = stringOption(parsed.values, 'layout-break') ?? 'wait';
  if (!Object.hasOwn(LAYOUT_BREAKS, policyFlag)) throw new UsageError(`--layout-break: ${JSON.stringify(policyFlag)} is not one of wait, recall, fail`);
  const json = parsed.values.json === true;
  const tty = process.stderr.isTTY === true;
  let lastFile = '';
  const last = await cluster.drain(node, {
    layoutBreak: LAYOUT_BREAKS[policyFlag as keyof typeof LAYOUT_BREAKS],
    onProgress: (p) => {
      if (json) process.stdout.write(`${JSON.stringify(p)}\n`);
      if (tty) process.stderr.write(`\r\x1b[K${drainLine(p)}`);
      else if (!json && p.current !== lastFile) process.stderr.write(`${drainLine(p)}\n`);
      lastFile = p.current;
    },
  });
  if (tty) process.stderr.write('\n');
  if (!json) process.stdout.write(`drained ${node}: ${last.filesMoved} moved, ${last.filesFailed} left · ${formatBytes(last.bytesCopied)}\n`);
  return last.filesFailed > 0 ? EXIT_FAILURE : EXIT_OK;
}

async function run(parsed: Parsed): Promise<number> {
  const [sub, arg] = parsed.positionals;
  if (!(SUBCOMMANDS as readonly string[]).includes(sub)) throw new UsageError(`${JSON.stringify(sub)} is not one of ${SUBCOMMANDS.join(', ')}`);
  if (sub === 'drain' && arg === undefined) throw new UsageError('drain needs NODE');
  if (sub === 'status' && arg !== undefined) throw new UsageError('status takes no argument');
  const cluster = connect(parsed);
  try {
    if (sub === 'status') {
      const members = await cluster.members();
      process.stdout.write(parsed.values.json === true ? `${JSON.stringify({ nodes: members })}\n` : `${statusLines(members).join('\n')}\n`);
    } else if (sub === 'ls') {
      for await (const f of cluster.listAll(arg ?? '')) process.stdout.write(`${f.node}\t${f.name}\n`);
    } else {
      return await drain(cluster, arg, parsed);
    }
    return EXIT_OK;
  } finally {
    cluster.close();
  }
}

export const clusterCommand: Command = {
  name: 'cluster',
  summary: 'a cluster\'s nodes and files (status, ls), and draining a node (drain)',
  help: `usage: daxd cluster status [--json] | ls [PREFIX] | drain NODE [--layout-break wait|recall|fail] [--json]   [--seeds HOST:PORT[,...]] [connection flags]

  status      the nodes: live or down, gRPC address, capacity, free space, files placed on each
  ls [PREFIX] every file of the live nodes in name order, as NODE<TAB>NAME
  drain NODE  move every file off NODE to the other live nodes, one at a time, with a progress bar
              (files n/N and bytes) on stderr; exit 1 if a file could not be moved (it stays on NODE)
  --layout-break wait|recall|fail  drain: a file pinned for DMA waits for the unpin (default), recalls
              the pins (PinRecall, revoked after the grace), or is left in place (counted failed)
  --json      status as one JSON line; drain: each progress message as a JSON line on stdout
  --seeds HOST:PORT[,...]  nodes to ask (default $DAXD_SERVER, else ${DEFAULT_GRPC_ADDRESS}); any live one will do
  --tls-ca FILE, --tls-cert FILE, --tls-key FILE, --token TOKEN (default $${TOKEN_ENV}): as for the other client commands`,
  options: {
    seeds: { type: 'string' }, json: { type: 'boolean' }, 'layout-break': { type: 'string' },
    'tls-ca': { type: 'string' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' }, token: { type: 'string' },
  },
  positionals: { min: 1, max: 2 },
  run,
};
