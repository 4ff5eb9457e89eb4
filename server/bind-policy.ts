/**
 * Secure by default: which listen addresses daxd may bind without TLS and authentication.
 *
 * Loopback, for this policy, is exactly 127.0.0.1, ::1 and localhost. Any other address is
 * "remote", including the rest of 127.0.0.0/8 (such addresses are commonly used to expose
 * a service to containers or other network namespaces), 0.0.0.0 and :: (every interface),
 * and names other than localhost (they may resolve anywhere). A Unix socket
 * (grpc `unix:PATH`) is local.
 *
 * A remote bind needs TLS on that listener (--tls-cert/--tls-key; for NBD, --nbd-tls on or
 * require: either way a client from beyond loopback must STARTTLS first) AND authentication (--auth FILE), or the explicit --insecure-allow-remote,
 * which is logged as a warning at every start.
 * The check runs before the volume is opened: a refused start touches nothing.
 */

export type Listener = 'grpc' | 'http' | 'nbd';

/** The flag of each listener, for messages. */
const FLAG: Record<Listener, string> = { grpc: '--grpc', http: '--http', nbd: '--nbd' };

export const LOOPBACK_HOSTS: readonly string[] = ['127.0.0.1', '::1', 'localhost'];

/** The host part of a listen address: "h:p", "[v6]:p", "v6" alone, "unix:PATH" -> null (local). */
export function hostOf(address: string): string | null {
  if (address.startsWith('unix:') || address.startsWith('unix-abstract:')) return null;
  const bracketed = /^\[([^\]]*)\](?::\d*)?$/.exec(address);
  if (bracketed) return bracketed[1];
  const colons = address.split(':').length - 1;
  if (colons === 1) return address.slice(0, address.indexOf(':'));
  return address; // no port, or a bare IPv6 address
}

/** True for 127.0.0.1, ::1 and localhost only (see the top of this file). */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOSTS.includes(host.toLowerCase());
}

/** True when a listener on `address` is reachable from beyond this host's loopback. */
export function isRemoteAddress(address: string): boolean {
  const host = hostOf(address);
  return host !== null && !isLoopbackHost(host);
}

/**
 * The HTTP and NBD listeners take HOST:PORT or [V6]:PORT only and refuse anything else
 * with their own precise error ("expected HOST:PORT"): such an address binds nothing, so
 * the policy leaves it to them. gRPC also binds a bare host (grpc-js then picks a default
 * port), so every gRPC address is judged.
 */
function bindsSomething(listener: Listener, address: string): boolean {
  return listener === 'grpc' || /^(?:\[[^\]]+\]|[^:[\]]+):\d+$/.test(address);
}

export interface BindPolicyInput {
  /** The listeners that will be bound (absent ones are not checked). */
  binds: Partial<Record<Listener, string>>;
  /** Which listeners serve TLS (NBD only when its STARTTLS is required). */
  tls: Record<Listener, boolean>;
  authEnabled: boolean;
  insecureAllowRemote: boolean;
}

export interface BindPolicyVerdict {
  /** The remote binds ("--grpc 0.0.0.0:7070"), [] when all are loopback. */
  remote: string[];
  /** True when remote binds are served without TLS and auth (--insecure-allow-remote): warn. */
  insecure: boolean;
}

/** A remote bind without TLS and auth, and no --insecure-allow-remote: the server must not start. */
export class BindPolicyError extends Error {
  constructor(readonly remote: string[], readonly missing: string[]) {
    super(`refusing to serve ${remote.join(', ')} beyond loopback (127.0.0.1, ::1, localhost) without ${missing.join(' and ')}: `
      + 'add --tls-cert FILE --tls-key FILE and --auth FILE, or bind to 127.0.0.1, or pass --insecure-allow-remote to accept the risk');
    this.name = 'BindPolicyError';
  }
}

/** Throws BindPolicyError when the binds are not allowed; else says whether to warn. */
export function checkBindPolicy(input: BindPolicyInput): BindPolicyVerdict {
  const listeners = (Object.keys(FLAG) as Listener[])
    .filter((l) => input.binds[l] !== undefined && bindsSomething(l, input.binds[l] as string) && isRemoteAddress(input.binds[l] as string));
  const remote = listeners.map((l) => `${FLAG[l]} ${input.binds[l]}`);
  const plaintext = listeners.some((l) => !input.tls[l]);
  if (remote.length === 0 || (!plaintext && input.authEnabled)) return { remote, insecure: false };
  if (input.insecureAllowRemote) return { remote, insecure: true };
  const missing = [...(plaintext ? ['TLS'] : []), ...(input.authEnabled ? [] : ['authentication'])];
  throw new BindPolicyError(remote, missing);
}
