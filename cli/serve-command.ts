/**
 * `daxd serve`: create the volume when missing, mount it, serve it over gRPC until
 * SIGTERM or SIGINT (graceful: in-flight calls finish, the volume is synced and unlocked);
 * a second signal exits at once (the journal makes that safe). SIGHUP re-reads the TLS
 * certificates (Daxd.reloadTls) without dropping the volume.
 */
import path from 'node:path';
import { format } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { listenAddress } from './listen-address';
import { SHUTDOWN_FORCE_MS, SHUTDOWN_GRACE_MS } from '../server/rpc/limits';
import { NBD_LAYOUT_BREAK_TIMEOUT_MS } from '../server/nbd/limits';
import { NBD_TLS_MODES, type NbdTlsMode } from '../server/nbd/starttls';
import { Daxd } from '../server/server';
import { AuthFileError, loadAuthFile } from '../server/auth/auth-file';
import { Authenticator } from '../server/auth/authenticator';
import { CLIENT_AUTH_MODES, TlsConfigError, tlsConfigFromFlags, type TlsConfig } from '../server/tls/config';
import {
  DEFAULT_GRPC_ADDRESS, DEFAULT_HTTP_ADDRESS, DEFAULT_NBD_ADDRESS, DEFAULT_VOLUME_BYTES, DEFAULT_VOLUME_PATH, EXIT_OK, parseCount, parseSize, stringOption, UsageError, type Parsed,
} from './args';
import type { Command } from './command';
import { ClusterConfigError, clusterConfigFromFlags, type ClusterConfig } from '../server/cluster/config';
import { NODE_TTL_S_DEFAULT } from '../server/cluster/limits';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Exit status after a second signal: 128 + SIGINT, as shells report it. */
const EXIT_FORCED = 130;

/** The --tls-* flags as a config (null: plaintext); a bad combination is a usage error. */
function tlsFlags(parsed: Parsed): TlsConfig | null {
  try {
    return tlsConfigFromFlags({
      cert: stringOption(parsed.values, 'tls-cert'), key: stringOption(parsed.values, 'tls-key'),
      ca: stringOption(parsed.values, 'tls-ca'), clientAuth: stringOption(parsed.values, 'tls-client-auth'),
    });
  } catch (err) {
    if (err instanceof TlsConfigError) throw new UsageError(err.message);
    throw err;
  }
}

/** The cluster flags as a config (undefined without --etcd); a bad one is a usage error. */
function clusterFlags(parsed: Parsed): ClusterConfig | undefined {
  const etcd = stringOption(parsed.values, 'etcd');
  const others = ['node-name', 'etcd-prefix', 'node-ttl-s', 'advertise'].filter((f) => stringOption(parsed.values, f) !== undefined);
  if (etcd === undefined) {
    if (others.length > 0) throw new UsageError(`--${others[0]} needs --etcd URL[,URL...]`);
    return undefined;
  }
  try {
    return clusterConfigFromFlags({
      etcd, nodeName: stringOption(parsed.values, 'node-name'), prefix: stringOption(parsed.values, 'etcd-prefix'),
      ttlS: stringOption(parsed.values, 'node-ttl-s'), advertise: stringOption(parsed.values, 'advertise'),
    });
  } catch (err) {
    if (err instanceof ClusterConfigError) throw new UsageError(err.message);
    throw err;
  }
}

async function serve(parsed: Parsed): Promise<number> {
  const volumeOption = stringOption(parsed.values, 'volume');
  const sizeOption = stringOption(parsed.values, 'size');
  const httpAddress = listenAddress(stringOption(parsed.values, 'http') ?? DEFAULT_HTTP_ADDRESS, '--http');
  const grpcAddress = listenAddress(stringOption(parsed.values, 'grpc') ?? DEFAULT_GRPC_ADDRESS, '--grpc');
  const graceOption = stringOption(parsed.values, 'shutdown-grace-ms');
  const level = stringOption(parsed.values, 'log-level') ?? 'info';
  const nbdFlag = stringOption(parsed.values, 'nbd') ?? DEFAULT_NBD_ADDRESS;
  const nbdOption = nbdFlag === 'off' ? nbdFlag : listenAddress(nbdFlag, '--nbd');
  const nbdLayoutBreak = stringOption(parsed.values, 'nbd-layout-break') ?? 'WAIT';
  if (nbdLayoutBreak !== 'WAIT' && nbdLayoutBreak !== 'FAIL' && nbdLayoutBreak !== 'RECALL') {
    throw new UsageError(`--nbd-layout-break: ${JSON.stringify(nbdLayoutBreak)} is not one of WAIT, FAIL, RECALL`);
  }
  const nbdTimeoutOption = stringOption(parsed.values, 'nbd-layout-break-timeout-ms');
  const tls = tlsFlags(parsed);
  const cluster = clusterFlags(parsed);
  const nbdTls = nbdTlsMode(parsed);
  if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level: ${JSON.stringify(level)} is not one of ${LOG_LEVELS.join(', ')}`);
  const authFile = stringOption(parsed.values, 'auth');
  const auth = authFile === undefined ? undefined : authenticatorOf(authFile);
  const metricsAuth = stringOption(parsed.values, 'metrics-auth') ?? 'none';
  if (metricsAuth !== 'none' && metricsAuth !== 'token') throw new UsageError(`--metrics-auth: ${JSON.stringify(metricsAuth)} is not one of none, token`);
  if (metricsAuth === 'token' && auth === undefined) throw new UsageError('--metrics-auth token needs --auth FILE: the principals whose tokens /metrics accepts');
  const log = pino({ name: 'daxd', level });
  // Handlers first: a signal that arrives while the volume mounts (or right after the
  // "daxd serving" line) must stop the server gracefully, not kill it.
  let signals = 0;
  let stopNow: (signal: NodeJS.Signals) => void = () => undefined;
  const stopRequested = new Promise<NodeJS.Signals>((resolve) => (stopNow = resolve));
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      log.warn({ signal }, 'second signal: exiting now (the journal replays at the next mount)');
      process.exit(EXIT_FORCED);
    }
    log.info({ signal }, 'signal: stopping gracefully (send it again to force)');
    stopNow(signal);
  };
  // SIGHUP: reload the certificates. Installed before the mount too: its default action
  // would kill the process.
  let serving: Daxd | null = null;
  const onHangup = () => {
    if (serving === null) log.warn('SIGHUP before the server serves: nothing reloaded');
    else serving.reloadTls();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onHangup);
  // grpc-js writes its own errors to stderr ("E No address added out of total 1 resolved"
  // before our "cannot listen on" line): into our log at debug instead. What matters of
  // them reaches the user as our own errors.
  grpc.setLogger({ error: (...args: unknown[]) => log.debug({ grpcjs: format(...args) }, 'grpc-js') });
  try {
    const daxd = await Daxd.start({
      volumePath: path.resolve(volumeOption ?? DEFAULT_VOLUME_PATH),
      sizeBytes: sizeOption === undefined ? DEFAULT_VOLUME_BYTES : parseSize(sizeOption, '--size'),
      grpcAddress,
      httpAddress,
      log,
      shutdownGraceMs: graceOption === undefined ? undefined : parseCount(graceOption, '--shutdown-grace-ms'),
      nbdAddress: nbdOption === 'off' ? undefined : nbdOption,
      nbdDefaultExport: stringOption(parsed.values, 'nbd-default-export'),
      nbdLayoutBreak,
      nbdLimits: nbdTimeoutOption === undefined ? undefined : { layoutBreakTimeoutMs: parseCount(nbdTimeoutOption, '--nbd-layout-break-timeout-ms') },
      auth,
      tls: tls ?? undefined,
      insecureAllowRemote: parsed.values['insecure-allow-remote'] === true,
      nbdTls,
      metricsAuth,
      cluster,
    });
    serving = daxd;
    await stopRequested;
    await daxd.stop();
    // The volume is clean and unlocked. Something still referenced (a socket a peer
    // keeps half-open, a timer of a library) must not keep the process alive: exit anyway
    // SHUTDOWN_FORCE_MS later. unref: an event loop that drains exits first, normally.
    setTimeout(() => {
      log.warn({ forceMs: SHUTDOWN_FORCE_MS }, 'event loop still busy after the stop: exiting');
      process.exit(EXIT_OK);
    }, SHUTDOWN_FORCE_MS).unref();
    return EXIT_OK;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.off('SIGHUP', onHangup);
  }
}

/**
 * --nbd-tls off|on|require (nbdkit's --tls): default on with --tls-cert (STARTTLS offered,
 * loopback may stay plaintext), off without; on/require need the --tls-cert material.
 */
function nbdTlsMode(parsed: Parsed): NbdTlsMode {
  const value = stringOption(parsed.values, 'nbd-tls');
  const hasCert = stringOption(parsed.values, 'tls-cert') !== undefined;
  if (value === undefined) return hasCert ? 'on' : 'off';
  if (!(NBD_TLS_MODES as readonly string[]).includes(value)) throw new UsageError(`--nbd-tls: ${JSON.stringify(value)} is not one of ${NBD_TLS_MODES.join(', ')}`);
  if (value !== 'off' && !hasCert) throw new UsageError(`--nbd-tls ${value} needs --tls-cert and --tls-key (the certificate NBD_OPT_STARTTLS presents)`);
  return value as NbdTlsMode;
}

/** The --auth file's principals; a file that cannot be used is a usage error naming it. */
function authenticatorOf(file: string): Authenticator {
  try {
    // Client certificates are checked against the --tls-ca certificates (none without TLS).
    return new Authenticator(loadAuthFile(file), () => []);
  } catch (err) {
    if (err instanceof AuthFileError) throw new UsageError(err.message);
    throw err;
  }
}

export const serveCommand: Command = {
  name: 'serve',
  summary: 'serve a volume over gRPC and NBD (creating it when missing)',
  help: `usage: daxd serve [--volume PATH] [--size N] [--grpc HOST:PORT] [--http HOST:PORT] [--nbd HOST:PORT|off]
                  [--tls-cert FILE --tls-key FILE [--tls-ca FILE] [--tls-client-auth none|request|require]] [--insecure-allow-remote]
                  [--etcd URL[,URL...] --node-name NAME [--etcd-prefix /daxd] [--node-ttl-s N] [--advertise HOST:PORT]]

Mounts the volume (replaying its journal) and serves it until SIGTERM/SIGINT.
Prints one JSON log line naming the bound addresses ("msg":"daxd serving").
SIGHUP re-reads the TLS files: new connections get the new certificates, open ones and the
volume are untouched; a bad file keeps the old certificates (logged at warn).

  --volume PATH      volume file (default ${DEFAULT_VOLUME_PATH}, created when missing)
  --size N           size of a volume created here (default 1GiB; e.g. 64M, 1G)
  --grpc HOST:PORT   gRPC listen address (default ${DEFAULT_GRPC_ADDRESS}; port 0 picks one)
  --http HOST:PORT   /metrics, /healthz, /readyz, /api/v1/*, dashboard at / (default ${DEFAULT_HTTP_ADDRESS}; port 0 picks one)
  --nbd HOST:PORT    NBD export of every file, export name = file name (default ${DEFAULT_NBD_ADDRESS}; port 0 picks one; off disables)
  --nbd-default-export NAME   the file the empty NBD export name means (default: none, the empty name is refused)
  --nbd-layout-break WAIT|FAIL|RECALL   what NBD TRIM/WRITE_ZEROES do over a page pinned for DMA (default WAIT)
  --nbd-layout-break-timeout-ms N       longest WAIT for such a pin before the request fails with EIO (default ${NBD_LAYOUT_BREAK_TIMEOUT_MS})
  --nbd-tls off|on|require   NBD_OPT_STARTTLS with the --tls-cert certificate: on offers it, require refuses NBD without it
                     (default on with --tls-cert, else off); without TLS, NBD serves only loopback clients
  --auth FILE        principals (JSON or YAML): who may call, their roles, prefixes and quotas (default: auth off; docs/SECURITY.md)
  --metrics-auth none|token   /metrics open (none, default), or for any principal's bearer token (token; needs --auth).
                     With --auth, /api/v1/* and the dashboard's data always need an admin token; /healthz, /readyz stay open
  --log-level LEVEL  ${LOG_LEVELS.join(' | ')} (default info; debug logs every call with its request id)
  --shutdown-grace-ms N  how long a graceful stop waits for in-flight calls (default ${SHUTDOWN_GRACE_MS})
  --tls-cert FILE    PEM server certificate (chain): gRPC and HTTP are served over TLS
  --tls-key FILE     PEM private key of --tls-cert (unencrypted)
  --tls-ca FILE      PEM CA bundle client certificates are verified against
  --tls-client-auth MODE  ${CLIENT_AUTH_MODES.join(' | ')}: none asks no client certificate; request asks
                     for one and refuses one that does not verify against --tls-ca; require
                     refuses a handshake without a valid one (default: require with --tls-ca, else none)
  --insecure-allow-remote  allow a bind beyond loopback without TLS and --auth (warned at every start)
  --etcd URL[,URL...]  join a cluster coordinated by etcd (http://HOST:PORT; docs/CLUSTER.md). Without it, daxd runs alone
  --node-name NAME   this node's name in the cluster (required with --etcd; [A-Za-z0-9._-], at most 63)
  --etcd-prefix P    key prefix of the cluster in etcd (default /daxd)
  --node-ttl-s N     lease of the node's registration, seconds (default ${NODE_TTL_S_DEFAULT}); the node fences itself
                     (refuses mutating calls) after 2/3 of it without a renewal
  --advertise HOST:PORT  the gRPC address other nodes and clients are sent to (default: the bound --grpc address)

Secure by default: loopback is exactly 127.0.0.1, ::1 and localhost. Any other address
(0.0.0.0, ::, a LAN address, and also the rest of 127.0.0.0/8, which is commonly used to
expose services to containers or other network namespaces) is remote: binding --grpc,
--http or --nbd to it needs --tls-cert/--tls-key and --auth FILE, or --insecure-allow-remote.`,
  options: {
    volume: { type: 'string' },
    size: { type: 'string' },
    grpc: { type: 'string' },
    http: { type: 'string' },
    nbd: { type: 'string' },
    'nbd-default-export': { type: 'string' },
    'nbd-layout-break': { type: 'string' },
    'nbd-layout-break-timeout-ms': { type: 'string' },
    'nbd-tls': { type: 'string' },
    'log-level': { type: 'string' },
    auth: { type: 'string' },
    'metrics-auth': { type: 'string' },
    'shutdown-grace-ms': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'tls-ca': { type: 'string' },
    'tls-client-auth': { type: 'string' },
    'insecure-allow-remote': { type: 'boolean' },
    etcd: { type: 'string' },
    'node-name': { type: 'string' },
    'etcd-prefix': { type: 'string' },
    'node-ttl-s': { type: 'string' },
    advertise: { type: 'string' },
  },
  positionals: { min: 0, max: 0 },
  run: serve,
};
