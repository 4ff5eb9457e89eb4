/**
 * Who is calling: a bearer token or a client certificate, mapped to a principal of the
 * --auth file. With auth off there is no Authenticator and every call acts for
 * OPEN_ACCESS.
 *
 * Tokens: the presented token is hashed (SHA-256) first, and only the hash is looked up
 * (a Map by hex digest, then crypto.timingSafeEqual against the stored hash). Whatever
 * timing the lookup shows depends on SHA-256(token), never on the token's characters, so
 * it cannot be used to guess a token byte by byte; and the cost per call stays O(1) with
 * PRINCIPALS_MAX principals (comparing against every stored hash would cost O(principals)
 * per call, a denial of service of its own). The token itself is never stored or logged.
 *
 * Certificates: the TLS layer verifies the chain under `--tls-client-auth require`; under
 * `request` a client may present a certificate the handshake did not reject, so it is
 * checked here as well (issued by one of the trusted CAs, inside its validity period)
 * before its CN or a SAN entry names a principal.
 *
 * A token wins over a certificate when both are present. Wrong credentials count as
 * failures per peer address (failure-limiter.ts; missing ones do not: they guess nothing);
 * a limited address is refused before its credentials are looked at.
 */
import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { AuthRateLimitedError, UnauthenticatedError } from '../errors';
import { FailureLimiter, peerAddress, type FailureLimits } from './failure-limiter';
import { TOKEN_BYTES_MAX, TOKEN_BYTES_MIN } from './limits';
import type { Principal } from './principal';

export interface PresentedCredentials {
  /** The `authorization` header or metadata value, as sent ("Bearer TOKEN"). */
  authorization?: string;
  /** The client certificate of a TLS connection, if it sent one. */
  certificate?: PeerCertificate | null;
  /** The peer, for rate limiting (grpc-js getPeer() or a socket's remoteAddress). */
  peer: string;
}

const BEARER = /^Bearer ([\x21-\x7e]+)$/;
const NO_CREDENTIALS = 'no credentials: send `authorization: Bearer TOKEN` or a client certificate';

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

export class Authenticator {
  private readonly limiter: FailureLimiter;
  /** Principals by the hex SHA-256 of their token. */
  private readonly byToken: ReadonlyMap<string, Principal>;

  constructor(
    readonly principals: readonly Principal[],
    /** The CAs client certificates must chain to (the --tls-ca file's certificates); read at each check so a reload applies. */
    private trustedCas: () => readonly X509Certificate[] = () => [],
    limits: Partial<FailureLimits> = {},
    now: () => number = Date.now,
  ) {
    this.limiter = new FailureLimiter(limits, now);
    this.byToken = new Map(principals.flatMap((p) => (p.credentials.tokenSha256 ? [[p.credentials.tokenSha256.toString('hex'), p]] : [])));
  }

  /** The principal these credentials prove; EAUTH or AUTH_RATE_LIMITED otherwise. */
  authenticate(presented: PresentedCredentials): Principal {
    const peer = peerAddress(presented.peer);
    const waitMs = this.limiter.retryAfterMs(peer);
    if (waitMs > 0) throw new AuthRateLimitedError(waitMs);
    const found = this.lookup(presented);
    if (found === NO_CREDENTIALS) throw new UnauthenticatedError(found);
    if (typeof found === 'string') {
      // Only credentials that were presented and are wrong count: a caller that sent none
      // guessed nothing (and an NBD probe without a certificate must not lock its address
      // out of gRPC and HTTP).
      this.limiter.failed(peer);
      throw new UnauthenticatedError(found);
    }
    return found;
  }

  /** Where the trusted CAs come from: the server's TLS material, once it is loaded (server.ts). */
  trust(cas: () => readonly X509Certificate[]): void {
    this.trustedCas = cas;
  }

  /** The principal by name (NBD and HTTP show names; tests). */
  principal(name: string): Principal | undefined {
    return this.principals.find((p) => p.name === name);
  }

  private lookup(presented: PresentedCredentials): Principal | string {
    if (presented.authorization !== undefined) return this.byBearer(presented.authorization);
    const cert = presented.certificate;
    if (cert && cert.raw) return this.byCertificate(cert);
    return NO_CREDENTIALS;
  }

  private byBearer(header: string): Principal | string {
    if (header.length > TOKEN_BYTES_MAX + 7) return `authorization is longer than TOKEN_BYTES_MAX (${TOKEN_BYTES_MAX})`;
    const m = BEARER.exec(header);
    if (m === null) return 'authorization is not `Bearer TOKEN`';
    if (m[1].length < TOKEN_BYTES_MIN) return 'the token is not valid';
    const hash = sha256(m[1]);
    const principal = this.byToken.get(hash.toString('hex'));
    const stored = principal?.credentials.tokenSha256;
    return stored !== undefined && timingSafeEqual(stored, hash) ? principal! : 'the token is not valid';
  }

  private byCertificate(cert: PeerCertificate): Principal | string {
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(cert.raw);
    } catch {
      return 'the client certificate cannot be parsed';
    }
    const nowMs = Date.now();
    if (Date.parse(x509.validFrom) > nowMs || Date.parse(x509.validTo) < nowMs) return 'the client certificate is outside its validity period';
    if (!this.trustedCas().some((ca) => x509.checkIssued(ca) && x509.verify(ca.publicKey))) return 'the client certificate is not issued by a trusted CA';
    const cn = cert.subject?.CN;
    const sans = (cert.subjectaltname ?? '').split(', ').filter((s) => s !== '');
    const principal = this.principals.find((p) =>
      (p.credentials.certCn !== undefined && p.credentials.certCn === cn) || (p.credentials.certSan !== undefined && sans.includes(p.credentials.certSan)));
    return principal ?? 'the client certificate names no principal';
  }
}

/** Every certificate of a PEM bundle (X509Certificate itself reads only the first). */
export function pemCertificates(pem: Buffer | undefined): X509Certificate[] {
  if (pem === undefined) return [];
  const blocks = pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block) => new X509Certificate(block));
}
