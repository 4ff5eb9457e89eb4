/**
 * `daxd-container` (bin/daxd-container.js): the entry point of the container image and of
 * the Kubernetes probes (deploy/). Two jobs:
 *
 * - `serve [FLAGS...]`: `daxd serve` with its flags taken from the environment. Every
 *   flag of `daxd serve` has one variable, DAXD_ + the flag in upper case with `-` as `_`
 *   (--tls-cert: DAXD_TLS_CERT, --insecure-allow-remote: DAXD_INSECURE_ALLOW_REMOTE).
 *   The list is derived from the serve command's own options, so a new flag gets its
 *   variable without a change here. An empty variable counts as unset (compose's
 *   `VAR=`); a boolean flag takes 1/true/yes or 0/false/no. FLAGS given on the command
 *   line come after the environment's, so they win (parseArgs keeps the last value).
 *   A DAXD_ variable that names no flag is refused (a typo such as DAXD_TLS_CRT would
 *   otherwise be ignored silently), except the client commands' own variables.
 * - `probe http|grpc|grpc-ready`: one health check of the daxd in this container, over
 *   loopback, exit 0 when healthy, 1 when not (the reason on stderr), 2 on a usage error.
 *   The ports and TLS come from the same variables as `serve`. `http` wants 200 from
 *   GET /healthz (liveness: the process answers, the volume is not looked at). `grpc`
 *   calls grpc.health.v1.Health/Check: any gRPC answer means the process is alive (a
 *   draining or fenced node answers NOT_SERVING and must not be restarted for it);
 *   `grpc-ready` wants SERVING (readiness). Kubernetes' native gRPC probe cannot do TLS,
 *   and daxd serves TLS off loopback, hence this exec probe.
 *   The probe connects to its own container over loopback and sends no credentials, so
 *   it does not verify the server's certificate (whose names are the ones clients dial,
 *   not 127.0.0.1).
 */
import http from 'node:http';
import https from 'node:https';
import * as grpc from '@grpc/grpc-js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from './args';
import { main } from './main';
import { serveCommand } from './serve-command';

export const ENV_PREFIX = 'DAXD_';

/** Variables of the client commands (`daxd ls` ...), which may share the environment. */
const CLIENT_VARIABLES: readonly string[] = ['DAXD_SERVER', 'DAXD_TOKEN'];

/** How long one probe waits for its answer, connection included. */
export const PROBE_TIMEOUT_MS = 3_000;

/** The variable of a serve flag: tls-cert -> DAXD_TLS_CERT. */
export function envVariableOf(flag: string): string {
  return ENV_PREFIX + flag.toUpperCase().replace(/-/g, '_');
}

/** Every variable `daxd-container serve` reads, with its flag, in the serve command's order. */
export function serveVariables(): Array<{ variable: string; flag: string; boolean: boolean }> {
  return Object.entries(serveCommand.options).map(([flag, option]) => ({ variable: envVariableOf(flag), flag, boolean: option.type === 'boolean' }));
}

const TRUE_WORDS = ['1', 'true', 'yes'];
const FALSE_WORDS = ['0', 'false', 'no'];

/** The `daxd serve` flags the environment sets (a refused variable is a UsageError). */
export function serveArgsFromEnv(env: NodeJS.ProcessEnv): string[] {
  const variables = serveVariables();
  const known = new Set([...variables.map((v) => v.variable), ...CLIENT_VARIABLES]);
  const unknown = Object.keys(env).filter((name) => name.startsWith(ENV_PREFIX) && !known.has(name)).sort();
  if (unknown.length > 0) {
    throw new UsageError(`${unknown.join(', ')}: not a daxd serve variable (known: ${variables.map((v) => v.variable).join(', ')})`);
  }
  const args: string[] = [];
  for (const { variable, flag, boolean } of variables) {
    const value = env[variable];
    if (value === undefined || value === '') continue;
    if (!boolean) {
      args.push(`--${flag}`, value);
      continue;
    }
    const word = value.trim().toLowerCase();
    if (TRUE_WORDS.includes(word)) args.push(`--${flag}`);
    else if (!FALSE_WORDS.includes(word)) throw new UsageError(`${variable}=${JSON.stringify(value)}: not one of ${[...TRUE_WORDS, ...FALSE_WORDS].join(', ')}`);
  }
  return args;
}

/**
 * Where a probe dials the listener bound at `address` (HOST:PORT as given to serve): the
 * wildcard addresses become the loopback address of their family.
 */
export function probeTarget(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(address);
  if (m === null) throw new UsageError(`${JSON.stringify(address)}: not HOST:PORT`);
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  if (port === 0) throw new UsageError(`${JSON.stringify(address)}: port 0 cannot be probed (give the port)`);
  if (host === '0.0.0.0') return { host: '127.0.0.1', port };
  if (host === '::') return { host: '::1', port };
  return { host, port };
}

/** The listener's address: its variable, else the image's default for it. */
function listenerOf(env: NodeJS.ProcessEnv, flag: 'grpc' | 'http', fallback: string): string {
  const value = env[envVariableOf(flag)];
  return value === undefined || value === '' ? fallback : value;
}

const tlsOn = (env: NodeJS.ProcessEnv): boolean => (env[envVariableOf('tls-cert')] ?? '') !== '';

/** GET /healthz: resolves with the reason it is unhealthy, or null when it answered 200. */
function probeHttp(env: NodeJS.ProcessEnv): Promise<string | null> {
  const { host, port } = probeTarget(listenerOf(env, 'http', '127.0.0.1:7071'));
  const secure = tlsOn(env);
  // servername '': no SNI (the host is an IP address, which SNI may not carry).
  const options = { host, port, path: '/healthz', timeout: PROBE_TIMEOUT_MS, rejectUnauthorized: false, servername: '' };
  return new Promise((resolve) => {
    const request = (secure ? https : http).get(options, (response) => {
      response.resume();
      resolve(response.statusCode === 200 ? null : `GET /healthz answered ${response.statusCode}`);
    });
    request.on('timeout', () => request.destroy(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`)));
    request.on('error', (err) => resolve(`GET ${secure ? 'https' : 'http'}://${host}:${port}/healthz: ${err.message}`));
  });
}

/** grpc.health.v1 ServingStatus values (health.proto). */
const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

/**
 * HealthCheckResponse { ServingStatus status = 1; }: the only field, a varint. Hand-decoded
 * (a probe needs no .proto); an absent field is its zero value, UNKNOWN.
 */
function decodeStatus(bytes: Buffer): string {
  if (bytes.length === 0) return SERVING_STATUS[0];
  if (bytes[0] !== 0x08 || bytes.length < 2) return `undecodable (${bytes.toString('hex')})`;
  return SERVING_STATUS[bytes[1]] ?? `status ${bytes[1]}`;
}

/**
 * grpc.health.v1.Health/Check for the whole server (service ""): resolves with the reason
 * it is unhealthy, or null. `ready`: only SERVING passes; else any answer does.
 */
function probeGrpc(env: NodeJS.ProcessEnv, ready: boolean): Promise<string | null> {
  const { host, port } = probeTarget(listenerOf(env, 'grpc', '127.0.0.1:7070'));
  const target = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const tls = tlsOn(env);
  const credentials = tls ? grpc.credentials.createSsl(null, null, null, { rejectUnauthorized: false }) : grpc.credentials.createInsecure();
  // SNI may not carry an IP address (Node warns): send a host name; nothing is verified anyway.
  const client = new grpc.Client(target, credentials, tls ? { 'grpc.ssl_target_name_override': 'localhost' } : {});
  // HealthCheckRequest { string service = 1; } with service "": the empty message.
  const request = Buffer.alloc(0);
  return new Promise<string | null>((resolve) => {
    client.makeUnaryRequest('/grpc.health.v1.Health/Check', (b: Buffer) => b, (b: Buffer) => b, request, new grpc.Metadata(), { deadline: Date.now() + PROBE_TIMEOUT_MS }, (err, response) => {
      if (err) {
        // No connection, or no answer in time: the process is not serving. Any other
        // status (UNAUTHENTICATED, UNIMPLEMENTED, ...) was sent by a live server.
        const down = err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED;
        resolve(down || ready ? `Health/Check at ${target}: ${grpc.status[err.code]} ${err.details}` : null);
        return;
      }
      const status = decodeStatus(response ?? Buffer.alloc(0));
      resolve(!ready || status === 'SERVING' ? null : `Health/Check at ${target}: ${status}`);
    });
  }).finally(() => client.close());
}

const USAGE = `usage: daxd-container [serve] [FLAGS...]      daxd serve, its flags from DAXD_* variables (FLAGS win)
       daxd-container probe http|grpc|grpc-ready  one health check of this container's daxd (exit 0: healthy)
       daxd-container args                      print the daxd serve command the environment makes`;

export async function containerMain(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === 'serve' || command.startsWith('--')) {
      const flags = command === 'serve' ? rest : argv;
      return await main(['serve', ...serveArgsFromEnv(env), ...flags]);
    }
    if (command === 'args') {
      process.stdout.write(`${JSON.stringify(['daxd', 'serve', ...serveArgsFromEnv(env), ...rest])}\n`);
      return EXIT_OK;
    }
    if (command === 'probe' && rest.length === 1 && ['http', 'grpc', 'grpc-ready'].includes(rest[0])) {
      const reason = rest[0] === 'http' ? await probeHttp(env) : await probeGrpc(env, rest[0] === 'grpc-ready');
      if (reason === null) return EXIT_OK;
      process.stderr.write(`daxd-container probe ${rest[0]}: ${reason}\n`);
      return EXIT_FAILURE;
    }
    if (command === '--help' || command === '-h' || command === 'help') {
      process.stdout.write(`${USAGE}\n`);
      return EXIT_OK;
    }
    throw new UsageError(`unknown command ${JSON.stringify(argv.join(' '))}`);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`daxd-container: ${err.message}\n\n${USAGE}\n`);
    return EXIT_USAGE;
  }
}
