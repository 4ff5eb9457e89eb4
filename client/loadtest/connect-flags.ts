/**
 * The connection flags every client tool shares (daxd's client commands, daxd-load,
 * daxd-fsx): TLS (--tls-ca, --tls-cert, --tls-key) and the bearer token (--token, else
 * $DAXD_TOKEN). The PEM files are read here, once, before anything connects: a file that
 * cannot be read is a usage error naming its flag. The token is checked (checkToken) but
 * never echoed, and it is kept out of every report: callers pass the result to
 * DaxClient.connect only, never into options they print or write.
 */
import fs from 'node:fs';
import type { DaxClientOptions } from '../dax-client';
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
