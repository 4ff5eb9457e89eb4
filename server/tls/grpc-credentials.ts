/**
 * gRPC server credentials from a TlsMaterial that follow its reloads.
 *
 * Mechanism: grpc-js's certificate-provider credentials
 * (experimental.createCertificateProviderServerCredentials, grpc-js >= 1.10). The
 * material is wrapped as a CertificateProvider; grpc-js subscribes to it when a listener
 * binds and, on each update, calls the Node http2 server's setSecureContext(): new
 * connections get the new certificate, open ones keep theirs, nothing restarts.
 *
 * Why not ServerCredentials.createSsl: its one boolean (checkClientCertificate) gives
 * `none` or `require` only. The provider credentials take requestCert = "a CA provider is
 * given" and rejectUnauthorized = requireClientCertificate separately, which also gives
 * `request` (asked, not required) with no ServerCredentials subclass. The half of
 * `request` that Node leaves open (an unverifiable certificate is accepted) is closed by
 * refuseUnverifiedPeers on the bound http2 servers (rpc-server.ts).
 *
 * Note: grpc-js names the parameters of createCertificateProviderServerCredentials
 * (caCertificateProvider, identityCertificateProvider, ...) but passes them on to a
 * constructor taking (identity, ca, ...): the first argument is the identity provider
 * (required), the second the CA provider (null = no client certificate asked). The types
 * agree with that order (only the second may be null).
 */
import type http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { TLS_HANDSHAKE_TIMEOUT_MS } from './limits';
import type { TlsMaterial } from './material';

type CertificateProvider = grpc.experimental.CertificateProvider;
type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;

/**
 * The material as a grpc-js CertificateProvider. A new listener gets the current
 * certificates on the next tick (as grpc-js's FileWatcherCertificateProvider does: the
 * credentials subscribe before they register their own watcher, so a synchronous update
 * would be lost), before any connection can arrive; later ones at every reload.
 */
class MaterialProvider implements CertificateProvider {
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly material: TlsMaterial) {}

  private caUpdate() {
    const { ca } = this.material.current.options;
    return ca === undefined ? null : { caCertificate: ca };
  }

  private identityUpdate() {
    const { cert, key } = this.material.current.options;
    return { certificate: cert, privateKey: key };
  }

  /** Subscribed to the material while grpc-js listens to us. */
  private track(): void {
    const listening = this.caListeners.size + this.identityListeners.size > 0;
    if (listening && this.unsubscribe === null) {
      this.unsubscribe = this.material.onReload(() => {
        // Identity first, then CA, in one synchronous run: no connection is accepted
        // between the two (one JS turn), so none sees a half-updated pair.
        for (const l of this.identityListeners) l(this.identityUpdate());
        const ca = this.caUpdate();
        for (const l of this.caListeners) l(ca);
      });
    } else if (!listening && this.unsubscribe !== null) {
      this.unsubscribe();
      this.unsubscribe = null;
    }
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    this.track();
    process.nextTick(() => this.caListeners.has(listener) && listener(this.caUpdate()));
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
    this.track();
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    this.track();
    process.nextTick(() => this.identityListeners.has(listener) && listener(this.identityUpdate()));
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
    this.track();
  }
}

/**
 * Server credentials for `material` in its client-auth mode, following its reloads; a
 * handshake longer than handshakeTimeoutMs is abandoned (tests pass a short one).
 */
export function grpcServerCredentials(material: TlsMaterial, handshakeTimeoutMs = TLS_HANDSHAKE_TIMEOUT_MS): grpc.ServerCredentials {
  const provider = new MaterialProvider(material);
  const mode = material.clientAuth;
  const credentials = grpc.experimental.createCertificateProviderServerCredentials(provider, mode === 'none' ? null : provider, mode === 'require');
  // grpc-js spreads these options into http2.createSecureServer(); they have no setter,
  // so the handshake bound is added to the object it will read.
  const constructorOptions = credentials._getConstructorOptions();
  if (constructorOptions !== null) Object.assign(constructorOptions, { handshakeTimeout: handshakeTimeoutMs });
  return credentials;
}

/**
 * Before bindAsync: runs `onServer` on every HTTP/2 server of `server` (grpc-js offers no
 * hook per TLS connection). It reads a private field of grpc.Server, as flow-control.ts
 * does: grpc-js records each server in `http2Servers` from its listen callback, which Node
 * runs (next tick after listen) before the server can accept a connection, so no
 * connection escapes the hook. Returns the check for after the bind: true when every
 * recorded server got the hook, false if the field moved (the caller then fails closed).
 */
export function onEachHttp2Server(server: grpc.Server, onServer: (server: http2.Http2SecureServer) => void): () => boolean {
  const servers = (server as unknown as { http2Servers?: Map<http2.Http2SecureServer, unknown> }).http2Servers;
  if (!(servers instanceof Map)) return () => false;
  const hooked = new WeakSet<http2.Http2SecureServer>();
  const set = servers.set.bind(servers);
  servers.set = (key: http2.Http2SecureServer, value: unknown) => {
    if (!hooked.has(key)) {
      hooked.add(key);
      onServer(key);
    }
    return set(key, value);
  };
  return () => servers.size > 0 && [...servers.keys()].every((key) => hooked.has(key));
}
