/**
 * The TLS configuration of `daxd serve`, from its flags:
 *
 *   --tls-cert FILE --tls-key FILE [--tls-ca FILE] [--tls-client-auth none|request|require]
 *
 * Only the combination of flags is checked here (no file is read): material.ts reads and
 * checks the files. Every error names the flag (and the file when there is one) so the
 * server refuses to start with a message the operator can act on.
 */

/** How a TLS listener treats client certificates. */
export type ClientAuth = 'none' | 'request' | 'require';

export const CLIENT_AUTH_MODES: readonly ClientAuth[] = ['none', 'request', 'require'];

export interface TlsConfig {
  /** PEM certificate chain of the server (leaf first). */
  certFile: string;
  /** PEM private key of that certificate (unencrypted). */
  keyFile: string;
  /** PEM CA bundle that client certificates are verified against. */
  caFile?: string;
  /**
   * none: no client certificate is asked for;
   * request: one is asked for; when sent it must verify against caFile, else the
   *   connection is refused; a client may send none;
   * require: the handshake fails without a certificate that verifies against caFile.
   */
  clientAuth: ClientAuth;
}

/** A TLS flag or file that keeps the server from starting (a usage error of `daxd serve`). */
export class TlsConfigError extends Error {
  constructor(
    /** The flag at fault, e.g. '--tls-key'. */
    readonly flag: string,
    message: string,
    /** The file at fault, when there is one. */
    readonly file?: string,
  ) {
    super(`${flag}${file === undefined ? '' : ` ${file}`}: ${message}`);
    this.name = 'TlsConfigError';
  }
}

export interface TlsFlags {
  cert?: string;
  key?: string;
  ca?: string;
  clientAuth?: string;
}

/**
 * The config the flags describe, or null when no TLS flag is given (plaintext).
 * Without --tls-client-auth, a --tls-ca means `require` (a CA is given to check clients)
 * and its absence means `none`.
 */
export function tlsConfigFromFlags(flags: TlsFlags): TlsConfig | null {
  const { cert, key, ca, clientAuth } = flags;
  if (cert === undefined && key === undefined && ca === undefined && clientAuth === undefined) return null;
  if (clientAuth !== undefined && !(CLIENT_AUTH_MODES as readonly string[]).includes(clientAuth)) {
    throw new TlsConfigError('--tls-client-auth', `${JSON.stringify(clientAuth)} is not one of ${CLIENT_AUTH_MODES.join(', ')}`);
  }
  if (cert === undefined || key === undefined) {
    const given = cert !== undefined ? '--tls-cert' : key !== undefined ? '--tls-key' : ca !== undefined ? '--tls-ca' : '--tls-client-auth';
    const missing = cert === undefined && key === undefined ? '--tls-cert FILE and --tls-key FILE' : cert === undefined ? '--tls-cert FILE' : '--tls-key FILE';
    throw new TlsConfigError(given, `needs ${missing} (the server certificate and its private key)`);
  }
  const mode = (clientAuth ?? (ca === undefined ? 'none' : 'require')) as ClientAuth;
  if (mode !== 'none' && ca === undefined) {
    throw new TlsConfigError('--tls-client-auth', `${mode} needs --tls-ca FILE (the CA that client certificates are verified against)`);
  }
  return { certFile: cert, keyFile: key, caFile: ca, clientAuth: mode };
}
