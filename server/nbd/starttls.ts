/**
 * NBD over TLS: the in-place upgrade NBD_OPT_STARTTLS asks for, and who may skip it.
 *
 * Modes (--nbd-tls, nbdkit's words):
 *   off:     STARTTLS is refused (NBD_REP_ERR_POLICY);
 *   on:      a client may upgrade (the spec's SELECTIVETLS, with no export TLS-only);
 *   require: before the upgrade every option but STARTTLS and ABORT is refused
 *            NBD_REP_ERR_TLS_REQD (the spec's FORCEDTLS).
 * Whatever the mode, a peer that is not loopback (127.0.0.1, ::1) is served only after
 * STARTTLS: plaintext NBD never leaves the machine.
 *
 * The upgrade (upgradeToTls): the caller has answered STARTTLS with NBD_REP_ACK on the
 * plain socket and checked that the client sent nothing after it (bytes sent ahead of the
 * ACK were sent in plaintext and must never count as coming over TLS). The TLS socket
 * takes over the TCP socket; the promise settles when the handshake succeeded (the TLS
 * socket) or failed (rejects; the socket is destroyed). The caller bounds the wait
 * (NBD_HANDSHAKE_MS_MAX) and destroys the socket when it runs out.
 */
import type net from 'node:net';
import tls from 'node:tls';

export type NbdTlsMode = 'off' | 'on' | 'require';
export const NBD_TLS_MODES: readonly NbdTlsMode[] = ['off', 'on', 'require'];

export interface NbdTlsOptions {
  mode: NbdTlsMode;
  /** Read at each STARTTLS: a certificate reload applies to the next upgrade. */
  secureContext: () => tls.SecureContext;
  /** Ask the client for a certificate. */
  requestCert: boolean;
  /** Fail the handshake when the client sends no certificate or one the context's CAs did not issue (default: requestCert). */
  rejectUnauthorized?: boolean;
}

/** Loopback as the bind policy means it: exactly 127.0.0.1 and ::1 (127.0.0.2 is another machine's address for this purpose). */
export function isLoopbackPeer(address: string | undefined): boolean {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
}

/** Why a TLS handshake failed, for the log and the metrics. */
export class TlsHandshakeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TlsHandshakeError';
  }
}

/** The server's own check of the client's chain (Node runs it only for sockets a tls.Server made). */
interface VerifyingHandle {
  verifyError(): (Error & { code?: string }) | null;
}

export interface TlsUpgrade {
  /** The TLS socket, over the TCP socket: listen on it from now on. */
  socket: tls.TLSSocket;
  /** Resolves once the handshake succeeded; rejects (TlsHandshakeError, socket destroyed) when it failed. */
  secured: Promise<void>;
}

export function upgradeToTls(raw: net.Socket, options: NbdTlsOptions): TlsUpgrade {
  const reject = options.rejectUnauthorized ?? options.requestCert;
  const socket = new tls.TLSSocket(raw, {
    isServer: true, secureContext: options.secureContext(), requestCert: options.requestCert, rejectUnauthorized: reject,
  });
  // Errors after the outcome (a late alert, a reset) are the connection's to log; never unhandled.
  socket.on('error', () => undefined);
  const secured = new Promise<void>((resolve, fail) => {
    const failed = (why: string) => {
      socket.off('secure', onSecure);
      socket.off('close', onClose);
      socket.off('error', onError);
      socket.destroy();
      fail(new TlsHandshakeError(why));
    };
    const onError = (err: Error) => failed(`TLS handshake failed: ${err.message.split('\n')[0]}`);
    const onClose = () => failed('the connection closed during the TLS handshake');
    const onSecure = () => {
      socket.off('error', onError);
      socket.off('close', onClose);
      // require: a certificate that verifies, or nothing. request: a certificate that was
      // sent must verify too (as gRPC and HTTP do under --tls-client-auth request): an
      // unverified one (another CA, expired, not for client auth) never names a principal.
      const presented = options.requestCert && Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
      if (options.requestCert && (reject || presented)) {
        const verifyError = (socket as unknown as { _handle: VerifyingHandle | null })._handle?.verifyError() ?? null;
        if (verifyError !== null) {
          failed(`the client certificate is not accepted: ${verifyError.code ?? verifyError.message}`);
          return;
        }
      }
      resolve();
    };
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.once('secure', onSecure);
  });
  return { socket, secured };
}
