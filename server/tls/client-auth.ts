/**
 * `--tls-client-auth request` on a Node TLS server: a client certificate is asked for
 * (requestCert) but not required (rejectUnauthorized false, so OpenSSL does not fail a
 * handshake without one). Node then accepts every handshake and only records the
 * verdict: socket.authorized is false both for "no certificate" and for "a certificate
 * that does not verify against --tls-ca" (expired, foreign CA). The second must be
 * refused, which is what this listener does.
 */
import type tls from 'node:tls';

/** True when the peer sent a certificate (getPeerCertificate() is {} when it sent none). */
export function presentedCertificate(socket: tls.TLSSocket): boolean {
  const cert = socket.getPeerCertificate();
  return cert !== null && typeof cert === 'object' && Object.keys(cert).length > 0;
}

/**
 * On every new TLS connection of `server`: a client certificate was sent but did not
 * verify -> the socket is destroyed. Appended (not prepended) to 'secureConnection', so
 * it runs right after the server's own listener set the connection up, in the same tick:
 * no byte of the connection has been read as a request yet (reads are later I/O events),
 * and the protocol layer sees an ordinary close. Destroying before that listener would
 * hand it a socket without a handle. Returns the function that removes the listener.
 */
export function refuseUnverifiedPeers(server: tls.Server, onRefused?: (reason: string) => void): () => void {
  const listener = (socket: tls.TLSSocket) => {
    if (socket.authorized || !presentedCertificate(socket)) return;
    onRefused?.(String(socket.authorizationError ?? 'unverified client certificate'));
    socket.destroy();
  };
  server.on('secureConnection', listener);
  return () => server.off('secureConnection', listener);
}
