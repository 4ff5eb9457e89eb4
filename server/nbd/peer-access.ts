/**
 * What one NBD connection may do: whether it must upgrade to TLS first (starttls.ts: mode
 * require, or a peer that is not loopback), and who it acts for.
 *
 * The principal: with auth off every connection acts as OPEN_ACCESS. With auth on it is
 * null until TLS is up and the client certificate names a principal (Authenticator: issued
 * by a trusted CA, in its validity period, CN or SAN matching); a connection without one
 * sees no export and opens none (exports.ts answers as for missing files). A principal
 * that may not write (role ro) gets its exports read-only.
 */
import type { PeerCertificate } from 'node:tls';
import type { Authenticator } from '../auth/authenticator';
import { OPEN_ACCESS, type Principal } from '../auth/principal';
import { isLoopbackPeer, type NbdTlsOptions } from './starttls';

export class PeerAccess {
  private current: Principal | null;
  private tlsOn = false;

  constructor(
    /** The peer's address without port: the loopback test and the authenticator's rate limit. */
    private readonly remoteAddress: string,
    private readonly tls: NbdTlsOptions | undefined,
    private readonly auth: Authenticator | null,
  ) {
    this.current = auth === null ? OPEN_ACCESS : null;
  }

  /** Who the connection acts for (null: nobody, it sees nothing). */
  get principal(): Principal | null {
    return this.current;
  }

  get tlsOffered(): boolean {
    return this.tls !== undefined && this.tls.mode !== 'off';
  }

  get readOnly(): boolean {
    return this.current !== null && !this.current.can('write');
  }

  /** Before TLS: why this connection may not go on in plaintext (null: it may). */
  plaintextRefused(): string | null {
    if (this.tlsOn) return null;
    const mode = this.tls?.mode ?? 'off';
    if (mode === 'require') return 'this daxd requires TLS for NBD (--nbd-tls require): send NBD_OPT_STARTTLS first (nbds:// URIs do)';
    if (isLoopbackPeer(this.remoteAddress)) return null;
    return mode === 'off'
      ? 'without TLS daxd serves NBD only to loopback clients: start daxd with --tls-cert/--tls-key to offer NBD_OPT_STARTTLS'
      : 'without TLS daxd serves NBD only to loopback clients: send NBD_OPT_STARTTLS first (nbds:// URIs do)';
  }

  /** TLS is up: with auth on, the principal the client certificate names. Returns why there is none (null: there is one). */
  secured(certificate: PeerCertificate): string | null {
    this.tlsOn = true;
    if (this.auth === null) return null;
    try {
      this.current = this.auth.authenticate({ certificate, peer: this.remoteAddress });
      return null;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }
}
