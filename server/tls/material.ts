/**
 * The TLS material of daxd (server certificate, key, client CA), loaded from the PEM files
 * of --tls-cert/--tls-key/--tls-ca and reloadable (SIGHUP). gRPC, HTTP and NBD all take
 * their certificates from one TlsMaterial, so a reload reaches every listener at once.
 *
 * Invariants:
 *   - `snapshot` is always a complete, checked set (the key matches the certificate, every
 *     file parses, tls.createSecureContext accepts them): reload() builds and checks the
 *     new set first and swaps it in with one assignment; a failed reload changes nothing.
 *   - Listeners run after the swap, synchronously, in subscription order; they are given
 *     options tls.createSecureContext already accepted, so setSecureContext cannot fail
 *     on them. A new connection gets the new certificate; an open one keeps its own.
 *   - Key material is never logged nor put into an error message: errors name the flag
 *     and the file only.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';
import { TlsConfigError, type ClientAuth, type TlsConfig } from './config';
import { TLS_HANDSHAKE_TIMEOUT_MS } from './limits';

/** What tls.createSecureContext / setSecureContext take. */
export interface TlsContextOptions {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

export interface TlsSnapshot {
  readonly options: TlsContextOptions;
  readonly context: tls.SecureContext;
  /** The server certificate's subject and end of validity (for logs; no key material). */
  readonly subject: string;
  readonly notAfter: string;
}

export type TlsReloadResult = { ok: true; subject: string; notAfter: string } | { ok: false; error: TlsConfigError };

export type TlsReloadListener = (snapshot: TlsSnapshot) => void;

const CERT_PEM = '-----BEGIN CERTIFICATE-----';
const KEY_PEM = /-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----/;

function readFile(flag: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : `cannot read it (${code ?? String(err)})`;
    throw new TlsConfigError(flag, why, file);
  }
}

function parseCert(flag: string, file: string, pem: Buffer): X509Certificate {
  if (!pem.includes(CERT_PEM)) throw new TlsConfigError(flag, `not a PEM certificate (no "${CERT_PEM}" line)`, file);
  try {
    return new X509Certificate(pem);
  } catch {
    throw new TlsConfigError(flag, 'not a valid PEM certificate', file);
  }
}

function parseKey(flag: string, file: string, pem: Buffer): KeyObject {
  const text = pem.toString('latin1');
  if (!KEY_PEM.test(text)) throw new TlsConfigError(flag, 'not a PEM private key (no "-----BEGIN ... PRIVATE KEY-----" line)', file);
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type: 4,ENCRYPTED/m.test(text)) throw new TlsConfigError(flag, 'an encrypted private key is not supported (decrypt it: openssl pkey -in KEY -out KEY.plain)', file);
  try {
    return createPrivateKey(pem);
  } catch {
    throw new TlsConfigError(flag, 'not a valid PEM private key', file);
  }
}

/** Reads and checks the files of `config`; throws TlsConfigError naming the flag and file. */
export function loadSnapshot(config: TlsConfig): TlsSnapshot {
  const certPem = readFile('--tls-cert', config.certFile);
  const keyPem = readFile('--tls-key', config.keyFile);
  const caPem = config.caFile === undefined ? undefined : readFile('--tls-ca', config.caFile);
  const leaf = parseCert('--tls-cert', config.certFile, certPem);
  const key = parseKey('--tls-key', config.keyFile, keyPem);
  if (key.type !== 'private' || !leaf.checkPrivateKey(key)) {
    throw new TlsConfigError('--tls-key', `does not match the certificate of --tls-cert ${config.certFile}`, config.keyFile);
  }
  if (caPem !== undefined && config.caFile !== undefined) parseCert('--tls-ca', config.caFile, caPem);
  const options: TlsContextOptions = caPem === undefined ? { cert: certPem, key: keyPem } : { cert: certPem, key: keyPem, ca: caPem };
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext(options);
  } catch (err) {
    // OpenSSL's reason only (e.g. "ee key too small"); it never contains the key.
    const reason = err instanceof Error ? err.message.replace(/^error:[0-9A-F]+:/, '') : String(err);
    throw new TlsConfigError('--tls-cert', `TLS refused the certificate/key pair (${reason})`, config.certFile);
  }
  return { options, context, subject: leaf.subject.replace(/\n/g, ', '), notAfter: new Date(leaf.validTo).toISOString() };
}

export class TlsMaterial {
  private snapshot: TlsSnapshot;
  private readonly listeners = new Set<TlsReloadListener>();

  private constructor(readonly config: TlsConfig, first: TlsSnapshot) {
    this.snapshot = first;
  }

  /** Loads and checks the files; throws TlsConfigError (the server must not start). */
  static load(config: TlsConfig): TlsMaterial {
    return new TlsMaterial(config, loadSnapshot(config));
  }

  get clientAuth(): ClientAuth {
    return this.config.clientAuth;
  }

  /** The current set (replaced as a whole by a successful reload). */
  get current(): TlsSnapshot {
    return this.snapshot;
  }

  /** The current secure context (e.g. for NBD STARTTLS: new tls.TLSSocket(s, { secureContext })). */
  get secureContext(): tls.SecureContext {
    return this.snapshot.context;
  }

  /**
   * Options of a TLS server for the current material and the client-auth mode:
   * requestCert asks for a client certificate (request, require); rejectUnauthorized
   * makes a missing or unverifiable one fail the handshake (require). `request` also
   * needs refuseUnverifiedPeers (client-auth.ts) on the server: Node accepts an
   * unverifiable certificate when rejectUnauthorized is false.
   */
  serverOptions(handshakeTimeoutMs = TLS_HANDSHAKE_TIMEOUT_MS): tls.TlsOptions {
    const mode = this.config.clientAuth;
    return { ...this.snapshot.options, requestCert: mode !== 'none', rejectUnauthorized: mode === 'require', handshakeTimeout: handshakeTimeoutMs };
  }

  /**
   * Re-reads the files. On success the new set replaces the old one and the listeners
   * run; on failure (a missing or bad file) the old set stays and the error says which
   * flag and file. Synchronous: no connection is accepted halfway through a swap.
   */
  reload(): TlsReloadResult {
    let next: TlsSnapshot;
    try {
      next = loadSnapshot(this.config);
    } catch (err) {
      if (err instanceof TlsConfigError) return { ok: false, error: err };
      throw err;
    }
    this.snapshot = next;
    for (const listener of [...this.listeners]) listener(next);
    return { ok: true, subject: next.subject, notAfter: next.notAfter };
  }

  /** Calls `listener` after every successful reload; returns the unsubscribe function. */
  onReload(listener: TlsReloadListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
