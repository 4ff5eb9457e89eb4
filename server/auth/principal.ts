/**
 * A principal: who a call acts for, what its role lets it do, which names it may touch,
 * and its quotas. Principals come from the --auth file (auth-file.ts); with auth off every
 * call acts for OPEN_ACCESS, an admin with no prefix and no quotas (the loopback default).
 *
 * Roles:
 *   admin: everything, including the admin API and dashboard;
 *   rw:    files, mappings and pins;
 *   ro:    reads, READ faults, loads and read-only pins.
 */

export type Role = 'admin' | 'rw' | 'ro';
export const ROLES: readonly Role[] = ['admin', 'rw', 'ro'];

/** What a call needs: read = look at data or names; write = change data, names or layout; admin = the admin API. */
export type Action = 'read' | 'write' | 'admin';

/** Per-principal quotas; an absent one is unlimited. */
export interface Quotas {
  readonly sessions?: number;
  readonly pins?: number;
  readonly pinnedBlocks?: number;
  readonly allocatedBytes?: number;
  /** Files under its prefix (names; an unlinked file still held counts no more). */
  readonly files?: number;
}

/** How a principal proves who it is: a token's SHA-256 and/or a client certificate's CN or SAN entry. */
export interface Credentials {
  /** SHA-256 of the bearer token, 32 bytes (the token itself is never stored). */
  readonly tokenSha256?: Buffer;
  /** The client certificate's subject CN. */
  readonly certCn?: string;
  /** One subjectAltName entry of the client certificate, as Node prints it: `DNS:host`, `IP Address:1.2.3.4`, `URI:spiffe://...`, `email:...`. */
  readonly certSan?: string;
}

export class Principal {
  constructor(
    readonly name: string,
    readonly role: Role,
    /** Names it may see and touch start with this ('' = every name). */
    readonly prefix: string,
    readonly quotas: Quotas,
    readonly credentials: Credentials,
  ) {}

  can(action: Action): boolean {
    switch (action) {
      case 'read': return true;
      case 'write': return this.role !== 'ro';
      case 'admin': return this.role === 'admin';
    }
  }

  /** May it see and touch the file called `name`? */
  mayName(name: string): boolean {
    return name.startsWith(this.prefix);
  }

  /** True when some quota is set (usage has to be counted for it). */
  get hasQuotas(): boolean {
    const q = this.quotas;
    return q.sessions !== undefined || q.pins !== undefined || q.pinnedBlocks !== undefined || q.allocatedBytes !== undefined || q.files !== undefined;
  }
}

/** Auth off: every call acts for this principal (loopback, zero config). */
export const OPEN_ACCESS = new Principal('(auth off)', 'admin', '', {}, {});
