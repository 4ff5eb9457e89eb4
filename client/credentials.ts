/**
 * How a DaxClient proves who it is and checks whom it talks to: TLS channel credentials
 * (the server's CA, an optional client certificate for mTLS, an optional name to check the
 * server's certificate against) and a bearer token sent as `authorization: Bearer TOKEN`
 * metadata on every call and stream.
 *
 * The token rides in a client interceptor, not in call credentials: grpc-js refuses call
 * credentials on an insecure channel, and a loopback server with --auth but without TLS
 * must still be reachable. The token lives only in the interceptor's closure: no property
 * of the client, no error message, log line or toString() carries it (an invalid token is
 * reported by its length, never by its text).
 */
import * as grpc from '@grpc/grpc-js';

/** A PEM file's contents, as read (Buffer) or as text. */
export type Pem = Buffer | string;

export interface DaxTlsOptions {
  /** The CA(s) the server's certificate must chain to; the system's roots when absent. */
  ca?: Pem;
  /** A client certificate (mTLS), with its private key: both or neither. */
  cert?: Pem;
  key?: Pem;
  /** The name the server's certificate must carry, when it is not the host of the address. */
  servername?: string;
}

/** What a token may be: printable ASCII without spaces, as `Bearer TOKEN` allows. */
const TOKEN_CHARS = /^[\x21-\x7e]+$/;

/** Throws a TypeError if `token` cannot be sent; the message never quotes the token. */
export function checkToken(token: string): void {
  if (typeof token !== 'string' || !TOKEN_CHARS.test(token)) {
    const length = typeof token === 'string' ? `${token.length} characters` : typeof token;
    throw new TypeError(`token must be a non-empty string of printable ASCII without spaces (got ${length}; the token itself is not shown)`);
  }
}

function buffer(pem: Pem | undefined): Buffer | null {
  if (pem === undefined) return null;
  return typeof pem === 'string' ? Buffer.from(pem, 'utf8') : pem;
}

/** Plaintext without `tls`; TLS (mTLS with cert + key) with it. */
export function channelCredentials(tls: DaxTlsOptions | undefined): grpc.ChannelCredentials {
  if (tls === undefined) return grpc.credentials.createInsecure();
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new TypeError('tls.cert and tls.key go together: a client certificate needs its private key');
  }
  return grpc.credentials.createSsl(buffer(tls.ca), buffer(tls.key), buffer(tls.cert));
}

/** Channel options for `tls.servername`: check the certificate and send :authority for that name. */
export function tlsChannelOptions(tls: DaxTlsOptions | undefined): grpc.ChannelOptions {
  if (tls?.servername === undefined) return {};
  return { 'grpc.ssl_target_name_override': tls.servername, 'grpc.default_authority': tls.servername };
}

/** An interceptor adding `authorization: Bearer TOKEN` to the metadata of every call and stream. */
export function bearerInterceptor(token: string): grpc.Interceptor {
  checkToken(token);
  const value = `Bearer ${token}`;
  return (options, nextCall) => new grpc.InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('authorization', value);
      next(metadata, listener);
    },
  });
}

/**
 * A token goes in plaintext only to loopback (127.0.0.1, ::1, localhost: the addresses
 * daxd serves without TLS by default); anywhere else it needs TLS, or the caller's explicit
 * allowPlaintextToken. TypeError otherwise (the token is not in the message).
 */
export function assertLoopbackTarget(address: string): void {
  const target = address.replace(/^(dns|ipv4|ipv6):(\/\/\/)?/, '');
  if (target.startsWith('unix:')) return;
  const host = target.startsWith('[') ? target.slice(1, target.indexOf(']')) : target.replace(/:\d+$/, '');
  if (host === '127.0.0.1' || host === '::1' || host === 'localhost') return;
  throw new TypeError(`refusing to send a bearer token in plaintext to ${address}: connect with tls (the server's --tls-cert), or over loopback`);
}
