/**
 * Limits of the TLS listeners (README "Limits").
 *
 * TLS_HANDSHAKE_TIMEOUT_MS: the longest a connection may take from accept to a finished
 * TLS handshake; then it is closed. Node's default is 120 s: that long, a peer that sends
 * a partial ClientHello (or nothing) holds a socket for free. A real handshake takes a
 * few round trips.
 */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
