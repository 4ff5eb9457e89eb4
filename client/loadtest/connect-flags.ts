/**
 * The connection flags every client tool shares (daxd's client commands, daxd-load,
 * daxd-fsx): TLS (--tls-ca, --tls-cert, --tls-key) and the bearer token (--token, else
 * $DAXD_TOKEN). The PEM files are read here, once, before anything connects: a file that
 * cannot be read is a usage error naming its flag. The token is checked (checkToken) but
 * never echoed, and it is kept out of every report: callers pass the result to
 * DaxClient.connect only, never into options they print or write.
 */
import fs from 'node:fs';
import net from 'node:net';
import type { DaxClient, DaxClientOptions } from '../dax-client';
import { checkToken, type DaxTlsOptions } from '../credentials';
import { UsageError, type FlagSpec, type FlagValues } from './flags';

/** The environment variable read when --token is not given. */
export const TOKEN_ENV = 'DAXD_TOKEN';

export const CONNECT_FLAGS: readonly FlagSpec[] = [
  { name: 'tls-ca', value: 'FILE', help: 'talk TLS; the server\'s certificate must chain to the CA certificate(s) in this PEM file' },
  { name: 'tls-cert', value: 'FILE', help: 'client certificate (PEM) to present (mTLS), with --tls-key; talks TLS (system CAs unless --tls-ca)' },
  { name: 'tls-key', value: 'FILE', help: 'private key (PEM) of --tls-cert' },
  { name: 'token', value: 'TOKEN', default: `$${TOKEN_ENV}`, help: 'bearer token of a principal of the server\'s --auth file (prefer the environment variable: a command line is visible to other users)' },
];

/** The connection options of the tools: what DaxClient.connect takes of them. */
export type ConnectionOptions = Pick<DaxClientOptions, 'tls' | 'token'>;

function readPem(flag: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`--${flag}: cannot read ${JSON.stringify(file)}${code === undefined ? '' : ` (${code})`}`);
  }
}

/** The TLS and token options given by the flags (and $DAXD_TOKEN); {} when none is. */
export function connectionOptions(values: FlagValues, env: NodeJS.ProcessEnv = process.env): ConnectionOptions {
  const text = (name: string): string | undefined => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  const [ca, cert, key] = [text('tls-ca'), text('tls-cert'), text('tls-key')];
  if ((cert === undefined) !== (key === undefined)) throw new UsageError(cert === undefined ? '--tls-key needs --tls-cert' : '--tls-cert needs --tls-key');
  const options: ConnectionOptions = {};
  if (ca !== undefined || cert !== undefined) {
    const tls: DaxTlsOptions = {};
    if (ca !== undefined) tls.ca = readPem('tls-ca', ca);
    if (cert !== undefined && key !== undefined) {
      tls.cert = readPem('tls-cert', cert);
      tls.key = readPem('tls-key', key);
    }
    options.tls = tls;
  }
  const fromFlag = text('token');
  const token = fromFlag ?? (env[TOKEN_ENV] === '' ? undefined : env[TOKEN_ENV]);
  if (token !== undefined) {
    try {
      checkToken(token);
    } catch {
      throw new UsageError(`${fromFlag !== undefined ? '--token' : `$${TOKEN_ENV}`}: not a token (printable ASCII without spaces expected; not shown)`);
    }
    options.token = token;
  }
  return options;
}

/** True when any connection flag was given (the tools refuse them without --server). */
export function hasConnectionFlags(values: FlagValues): boolean {
  return CONNECT_FLAGS.some((f) => values[f.name] !== undefined);
}

/** Socket errors that mean nobody will answer at the address, however long a client waits. */
const CONNECT_ERRNOS_FATAL = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ETIMEDOUT']);

/** host and port of a `host:port` / `[v6]:port` address; null for other target forms. */
function hostPort(address: string): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  return m === null ? null : { host: m[1] ?? m[2], port: Number(m[3]) };
}

/**
 * One plain TCP connect to `address`, closed at once: null when it connects (or the address
 * is not host:port, or fails otherwise: gRPC then decides), else its errno when that is one
 * of CONNECT_ERRNOS_FATAL ('ETIMEDOUT' when no answer came within `deadlineMs`).
 */
function tcpProbe(address: string, deadlineMs: number): Promise<string | null> {
  const target = hostPort(address);
  if (target === null) return Promise.resolve(null);
  return new Promise((resolve) => {
    const socket = net.connect({ host: target.host, port: target.port });
    socket.setTimeout(deadlineMs, () => {
      socket.destroy();
      resolve('ETIMEDOUT');
    });
    socket.once('connect', () => {
      socket.destroy();
      resolve(null);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.destroy();
      resolve(err.code !== undefined && CONNECT_ERRNOS_FATAL.has(err.code) ? err.code : null);
    });
  });
}

/** The tools' "could not connect" failure: names the address and the transport tried. */
export class ConnectFailedError extends Error {}

/**
 * Waits until every client's channel is connected, within `deadlineMs` (each step). First one
 * plain TCP connect: refused (ECONNREFUSED: nothing listens there), a host that cannot be
 * resolved or reached, or no answer fails at once with that errno, rather than waiting
 * out gRPC's deadline, which reports only "Failed to connect before the deadline". The
 * probe comes before any gRPC connect on purpose: a channel closed before its first
 * connect attempt ran would start connecting anyway (grpc-js) and hold the process.
 * Either failure names the address and whether it was TLS.
 */
export async function awaitConnected(clients: readonly DaxClient[], address: string, connection: ConnectionOptions, deadlineMs: number): Promise<void> {
  const tried = `${address} (${connection.tls === undefined ? 'plaintext' : 'TLS'} gRPC)`;
  const errno = await tcpProbe(address, deadlineMs);
  if (errno === 'ECONNREFUSED') throw new ConnectFailedError(`cannot connect to ${tried}: ECONNREFUSED (nothing listens there)`);
  if (errno === 'ETIMEDOUT') throw new ConnectFailedError(`cannot connect to ${tried}: ETIMEDOUT (no TCP answer within ${deadlineMs / 1000} s)`);
  if (errno !== null) throw new ConnectFailedError(`cannot connect to ${tried}: ${errno}`);
  try {
    await Promise.all(clients.map((c) => c.ready(deadlineMs)));
  } catch (err) {
    throw new ConnectFailedError(`cannot connect to ${tried} within ${deadlineMs / 1000} s: ${err instanceof Error ? err.message : String(err)}`);
  }
}
