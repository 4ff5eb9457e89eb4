/**
 * `daxd cluster status|ls|drain`: a cluster of daxd nodes (docs/CLUSTER.md) through the
 * SDK's DaxCluster, from any node of --seeds (default $DAXD_SERVER, else 127.0.0.1:7070),
 * with the connection flags of the other client commands.
 *   status [--json]   nodes, live or down, address, capacity, free, files
 *   ls [PREFIX]       every file of the live nodes, in name order, with its node
 *   drain NODE        not built yet: the servers answer UNIMPLEMENTED / ENOTSUP (exit 1)
 */
import { DaxCluster, type ClusterMember } from '../client';
import { connectionOptions, TOKEN_ENV } from '../client/loadtest/connect-flags';
import { DEFAULT_GRPC_ADDRESS, EXIT_OK, formatBytes, stringOption, UsageError, type Parsed } from './args';
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
      await cluster.drain(arg);
    }
    return EXIT_OK;
  } finally {
    cluster.close();
  }
}

export const clusterCommand: Command = {
  name: 'cluster',
  summary: 'a cluster\'s nodes and files (status, ls; drain is not built yet)',
  help: `usage: daxd cluster status [--json] | ls [PREFIX] | drain NODE   [--seeds HOST:PORT[,...]] [connection flags]

  status      the nodes: live or down, gRPC address, capacity, free space, files placed on each
  ls [PREFIX] every file of the live nodes in name order, as NODE<TAB>NAME
  drain NODE  move every file off NODE: not built yet (the servers answer UNIMPLEMENTED)
  --json      status as one JSON line
  --seeds HOST:PORT[,...]  nodes to ask (default $DAXD_SERVER, else ${DEFAULT_GRPC_ADDRESS}); any live one will do
  --tls-ca FILE, --tls-cert FILE, --tls-key FILE, --token TOKEN (default $${TOKEN_ENV}): as for the other client commands`,
  options: {
    seeds: { type: 'string' }, json: { type: 'boolean' },
    'tls-ca': { type: 'string' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' }, token: { type: 'string' },
  },
  positionals: { min: 1, max: 2 },
  run,
};
