/**
 * PTEs handed to sessions. Each session's mapping of a file keeps its PTEs in its own
 * page table (page-table.ts: keyed by page, 24 bytes a PTE, no object or string kept per
 * PTE). A token is opaque and unguessable: 128 random bits from the CSPRNG (drawn per PTE),
 * followed by the id of the session mapping and the page, which route it to its table in
 * O(1). The server checks the token on every Load and Store: that check is the fence (S7),
 * so correctness never depends on a client having received an Invalidate event. Revoking
 * a PTE removes it from its table, so its token is stale at once; a new PTE on the same
 * page gets new random bits. Another session's token, a token altered in any bit, and one
 * never issued all resolve to nothing alike. The SessionMapping and Entry records are
 * declared in address-space.ts, the owner types in owner.ts.
 *
 * PMD PTEs: a PTE on a whole PMD entry (order 9) sits in the same table under
 * vpn = PMD_VPN + base * 2 + writable, with base the entry's aligned pgoff; a 4 KiB PTE
 * on one page of a MAPPED PMD entry under the page's own vpn. Both count in the entry's
 * pteCount (and writablePteCount), so revoking the entry revokes both.
 */
import assert from 'node:assert';
import { randomFillSync } from 'node:crypto';
import { PMD_ORDER, PMD_PAGES } from '../limits';
import type { AddressSpace, Entry, Pte, SessionMapping } from './address-space';
import type { InvalidateReason, MappingOwner } from './owner';
import { VPN_MAX } from './page-table';

/** 16 key bytes, the mapping id (4), the vpn (6), a zero byte: 27 bytes, 36 base64url characters. */
const TOKEN_BYTES = 27;
const TOKEN_CHARS = 36;
const POOL_KEYS = 4096;
const TWO_32 = 2 ** 32;
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** base64url character code -> its 6 bits, -1 for anything else (no padding, no '+' or '/'). */
const SEXTET = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) SEXTET[B64URL.charCodeAt(i)] = i;
/** vpns from here on are PMD PTEs (page vpns stay below: pgoff < 2^28 on a 1 TiB volume). */
const PMD_VPN = 2 ** 47;

/** The first and last page a vpn's PTE covers. */
function pagesOf(vpn: number): [number, number] {
  if (vpn < PMD_VPN) {
    const pgoff = Math.floor(vpn / 2);
    return [pgoff, pgoff];
  }
  const base = Math.floor((vpn - PMD_VPN) / 2);
  return [base, base + PMD_PAGES - 1];
}

/** Aggregates revocations per (session, file) so each gets one Invalidate per operation. */
export class InvalidationNotices {
  private readonly byMapping = new Map<SessionMapping, { first: number; last: number }>();

  constructor(readonly reason: InvalidateReason) {}

  add(mapping: SessionMapping, first: number, last: number = first): void {
    const r = this.byMapping.get(mapping);
    if (!r) this.byMapping.set(mapping, { first, last });
    else {
      r.first = Math.min(r.first, first);
      r.last = Math.max(r.last, last);
    }
  }

  get count(): number {
    return this.byMapping.size;
  }

  /**
   * One Invalidate per (session, file). `actor`, the session whose own request revoked
   * the PTEs (its write fault, its msync), is not told: it knows, and a client that
   * relies on the token fence must not have its event stream filled by its own work.
   */
  send(actor?: MappingOwner): void {
    for (const [m, r] of this.byMapping) {
      if (actor !== undefined && m.owner.id === actor.id) continue;
      m.owner.notify({ kind: 'invalidate', ino: m.as.ino, firstPgoff: r.first, lastPgoff: r.last, reason: this.reason });
    }
    this.byMapping.clear();
  }
}

/** What a valid token of the asking session names. */
export interface ResolvedPte {
  readonly mapping: SessionMapping;
  /** The entry covering the PTE's page (a PMD entry for a PMD PTE or a page inside one). */
  readonly entry: Entry;
  readonly writable: boolean;
  /** The PTE's first page: its page, or the PMD's base. */
  readonly pgoff: number;
  /** 0: one page; 9: the whole PMD entry. */
  readonly order: 0 | typeof PMD_ORDER;
}

export class PteTable {
  /** Live session mappings by id: a token's route to its page table. */
  private readonly mappingsById = new Map<number, SessionMapping>();
  private nextMappingId = 1;
  private readonly pool = new Uint32Array(4 * POOL_KEYS);
  private poolNext = POOL_KEYS;
  /** Token bytes being encoded or decoded (32 bytes: word-aligned for the key words). */
  private readonly scratch = Buffer.from(new ArrayBuffer(32));
  private readonly words = new Uint32Array(this.scratch.buffer, 0, 8);
  /** PTEs in every page table. */
  private count = 0;

  get size(): number {
    return this.count;
  }

  /**
   * A new session mapping of `as`, with an id no live mapping has. Ids count up and wrap
   * past 2^32 - 1 to 1, skipping live ones, so a long-running server never runs out. A
   * reused id does not revive a dropped mapping's tokens: a token must also match its
   * PTE's 128 random bits, and the new mapping's PTEs draw new ones.
   */
  newMapping(owner: MappingOwner, as: AddressSpace, make: (id: number) => SessionMapping): SessionMapping {
    // Terminates: fewer than 2^32 - 1 mappings are live (each holds memory).
    let id = this.nextMappingId;
    for (let tries = 0; this.mappingsById.has(id); tries++) {
      assert(tries < this.mappingsById.size, 'every session mapping id is live');
      id = id === TWO_32 - 1 ? 1 : id + 1;
    }
    this.nextMappingId = id === TWO_32 - 1 ? 1 : id + 1;
    const m = make(id);
    assert(m.owner === owner && m.as === as, 'session mapping made for another owner or file');
    this.mappingsById.set(m.id, m);
    return m;
  }

  /**
   * Installs a 4 KiB PTE on page `pgoff` of a locked entry (S1: every state change under
   * the entry lock): its own page, or a page of a MAPPED PMD entry.
   */
  install(mapping: SessionMapping, entry: Entry, writable: boolean, pgoff: number = entry.pgoff): Pte {
    assert(pgoff >= entry.pgoff && pgoff <= entry.lastPgoff, `PTE on pgoff ${pgoff} outside its entry at ${entry.pgoff}`);
    assert(entry.order === 0 || entry.state === 'MAPPED', 'a 4 KiB PTE inside a PMD zero entry (downgrade it first)');
    const token = this.installVpn(mapping, entry, pgoff * 2 + (writable ? 1 : 0), writable);
    const pfn = entry.state === 'MAPPED' ? entry.pfn + (pgoff - entry.pgoff) : 0;
    return { token, ino: mapping.as.ino, pgoff, pfn, writable, order: 0 };
  }

  /** Installs a PTE on a whole locked PMD entry: its token addresses PMD_BYTES. */
  installPmd(mapping: SessionMapping, entry: Entry, writable: boolean): Pte {
    assert(entry.order === PMD_ORDER, `PMD PTE on an order-${entry.order} entry`);
    const token = this.installVpn(mapping, entry, PMD_VPN + entry.pgoff * 2 + (writable ? 1 : 0), writable);
    return { token, ino: mapping.as.ino, pgoff: entry.pgoff, pfn: entry.pfn, writable, order: PMD_ORDER };
  }

  private installVpn(mapping: SessionMapping, entry: Entry, vpn: number, writable: boolean): string {
    assert(entry.locked, 'PTE install needs the entry lock');
    assert(entry.state !== 'EMPTY', 'PTE install on an EMPTY entry');
    assert(!writable || entry.state === 'MAPPED', 'writable PTE on the zero page');
    assert(this.mappingsById.get(mapping.id) === mapping, 'PTE install into a dropped mapping');
    assert(vpn <= VPN_MAX, `vpn ${vpn} beyond what a token can name`);
    // A session faulting a page it already maps with the same permission gets that PTE
    // back (as a CPU re-fault finds the PTE present): a session holds at most a read-only
    // and a writable PTE per page, so PTEs are bounded by pages mapped, not by faults.
    const slot = mapping.table.find(vpn);
    if (slot >= 0) mapping.table.keyOf(slot, this.words, 0);
    else {
      if (this.poolNext === POOL_KEYS) {
        randomFillSync(this.pool);
        this.poolNext = 0;
      }
      const at = this.poolNext++ * 4;
      const w = this.words;
      const pool = this.pool;
      w[0] = pool[at];
      w[1] = pool[at + 1];
      w[2] = pool[at + 2];
      w[3] = pool[at + 3];
      mapping.table.insert(vpn, this.words, 0);
      entry.pteCount++;
      if (writable) entry.writablePteCount++;
      this.count++;
    }
    return this.encode(mapping.id, vpn);
  }

  /** The key in words[0..4) with the route: the token. */
  private encode(mappingId: number, vpn: number): string {
    const w = this.words;
    w[4] = mappingId;
    w[5] = vpn >>> 0;
    w[6] = Math.floor(vpn / TWO_32); // < 2^16: bytes 24-25; byte 26 stays 0
    return this.scratch.toString('base64url', 0, TOKEN_BYTES);
  }

  /**
   * The PTE a token names, if it is one this session holds now; null for anything else:
   * malformed, never issued, revoked, or another session's (S7: alike, so its holder
   * learns nothing). Constant work: decode, one map lookup, one table probe.
   */
  resolve(owner: MappingOwner, token: string): ResolvedPte | null {
    if (token.length !== TOKEN_CHARS) return null;
    const b = this.scratch;
    for (let c = 0, o = 0; c < TOKEN_CHARS; c += 4, o += 3) {
      const s0 = sextet(token, c);
      const s1 = sextet(token, c + 1);
      const s2 = sextet(token, c + 2);
      const s3 = sextet(token, c + 3);
      if ((s0 | s1 | s2 | s3) < 0) return null;
      const n = (s0 << 18) | (s1 << 12) | (s2 << 6) | s3;
      b[o] = n >>> 16;
      b[o + 1] = (n >>> 8) & 0xff;
      b[o + 2] = n & 0xff;
    }
    const w = this.words;
    if (b[26] !== 0) return null;
    const mapping = this.mappingsById.get(w[4]);
    if (mapping === undefined || mapping.owner.id !== owner.id) return null;
    const vpn = (w[6] & 0xffff) * TWO_32 + w[5];
    if (!mapping.table.matches(vpn, w[0], w[1], w[2], w[3])) return null;
    const entry = this.entryOf(mapping.as, vpn);
    return { mapping, entry, writable: vpn % 2 === 1, pgoff: pagesOf(vpn)[0], order: vpn < PMD_VPN ? 0 : PMD_ORDER };
  }

  /** The entry a live PTE's vpn points at. */
  private entryOf(as: AddressSpace, vpn: number): Entry {
    const [pgoff] = pagesOf(vpn);
    const entry = as.lookup(pgoff);
    // A PTE is revoked before its entry is removed (removeEntry asserts pteCount === 0).
    assert(entry !== undefined && entry.state !== 'EMPTY' && entry.pteCount > 0, `a live PTE on pgoff ${pgoff} without its entry`);
    assert(vpn < PMD_VPN || entry.order === PMD_ORDER, `a PMD PTE on pgoff ${pgoff} over an order-${entry.order} entry`);
    return entry;
  }

  /** Makes one PTE's token stale; false when the table did not hold it. */
  private revokeVpn(m: SessionMapping, vpn: number, notices: InvalidationNotices | null): boolean {
    if (m.table.find(vpn) < 0) return false;
    const e = this.entryOf(m.as, vpn);
    m.table.remove(vpn);
    const [first, last] = pagesOf(vpn);
    e.pteCount--;
    if (vpn % 2 === 1) {
      assert(e.writablePteCount > 0, `writable PTE on pgoff ${first} missing from its entry's count`);
      e.writablePteCount--;
    }
    this.count--;
    notices?.add(m, first, last);
    return true;
  }

  /**
   * Revokes every PTE on an entry (the caller holds its lock or the mmap lock exclusive):
   * the read-only and writable PTE of each session mapping the file, O(mappers); for a PMD
   * entry also the 4 KiB PTEs on its pages, O(min(PTEs of the mapping, PMD_PAGES)) each.
   */
  revokeEntry(as: AddressSpace, entry: Entry, notices: InvalidationNotices | null): number {
    const n = entry.pteCount;
    if (n === 0) return 0;
    // The entry's own lock, or (layout break) the mmap lock exclusive over its file.
    assert(entry.locked || as.mmapLock.heldExclusive, `PTE revoke on entry at pgoff ${entry.pgoff}: neither its lock nor the mmap lock is held`);
    for (const m of as.mappings.values()) {
      this.revokeOn(m, entry, false, notices);
      if (entry.pteCount === 0) break;
    }
    assert(entry.pteCount === 0, `${entry.pteCount} PTEs on pgoff ${entry.pgoff} outside every session mapping of the file`);
    return n;
  }

  /**
   * S5: writeback write-protects an entry: writable PTEs become stale (the client must
   * take a write fault, which re-dirties under the entry lock). Read-only PTEs stay.
   */
  downgradeEntry(as: AddressSpace, entry: Entry, notices: InvalidationNotices): number {
    assert(entry.locked, 'downgrade needs the entry lock');
    let n = 0;
    // An entry dirtied by write(2) or DMA, not through a mapping, has no writable PTE: no scan.
    if (entry.writablePteCount === 0) return 0;
    for (const m of as.mappings.values()) {
      n += this.revokeOn(m, entry, true, notices);
      if (entry.writablePteCount === 0) break;
    }
    assert(entry.writablePteCount === 0, `${entry.writablePteCount} writable PTEs on pgoff ${entry.pgoff} outside every session mapping of the file`);
    return n;
  }

  /** One mapping's PTEs on an entry (only the writable ones when asked); how many went. */
  private revokeOn(m: SessionMapping, entry: Entry, writableOnly: boolean, notices: InvalidationNotices | null): number {
    let n = 0;
    const vpns: number[] = [];
    if (entry.order === 0) vpns.push(entry.pgoff * 2);
    else {
      vpns.push(PMD_VPN + entry.pgoff * 2);
      // The 4 KiB PTEs on its pages: walk the smaller of the mapping's table and the range.
      if (m.table.size < PMD_PAGES * 2) {
        for (const v of m.table.vpnList()) if (v < PMD_VPN && v % 2 === 0 && v >= entry.pgoff * 2 && v <= entry.lastPgoff * 2 + 1) vpns.push(v);
        for (const v of m.table.vpnList()) if (v < PMD_VPN && v % 2 === 1 && v >= entry.pgoff * 2 && v <= entry.lastPgoff * 2 + 1) vpns.push(v - 1);
      } else {
        for (let pg = entry.pgoff; pg <= entry.lastPgoff; pg++) vpns.push(pg * 2);
      }
    }
    for (const v of vpns) {
      if (!writableOnly && this.revokeVpn(m, v, notices)) n++;
      if (this.revokeVpn(m, v + 1, notices)) n++;
    }
    return n;
  }

  /** Revokes the mapping's PTEs on pages [first, last] (munmap); all of them when dropping it. */
  revokeRange(m: SessionMapping, first: number, last: number): number {
    let n = 0;
    for (const vpn of m.table.vpnList()) {
      // A PMD PTE goes when any of its pages is unmapped (its token addresses them all).
      const [lo, hi] = pagesOf(vpn);
      if (lo <= last && hi >= first && this.revokeVpn(m, vpn, null)) n++;
    }
    return n;
  }

  /** Session end or full unmap: every PTE of the mapping goes, and its id with it. */
  dropMapping(m: SessionMapping): number {
    const n = this.revokeRange(m, 0, Number.MAX_SAFE_INTEGER);
    assert(m.table.size === 0, 'a dropped mapping kept PTEs');
    this.mappingsById.delete(m.id);
    return n;
  }

  /** The PTEs on an entry, per session: for the tests' reverse-map checks. */
  ptesOn(as: AddressSpace, entry: Entry): { mapping: SessionMapping; writable: boolean; pgoff: number; order: 0 | typeof PMD_ORDER }[] {
    const out: { mapping: SessionMapping; writable: boolean; pgoff: number; order: 0 | typeof PMD_ORDER }[] = [];
    if (entry.pteCount === 0) return out;
    for (const m of as.mappings.values()) {
      if (entry.order === 0) {
        if (m.table.find(entry.pgoff * 2) >= 0) out.push({ mapping: m, writable: false, pgoff: entry.pgoff, order: 0 });
        if (m.table.find(entry.pgoff * 2 + 1) >= 0) out.push({ mapping: m, writable: true, pgoff: entry.pgoff, order: 0 });
        continue;
      }
      for (const vpn of m.table.vpnList()) {
        const [lo, hi] = pagesOf(vpn);
        if (lo < entry.pgoff || hi > entry.lastPgoff) continue;
        out.push({ mapping: m, writable: vpn % 2 === 1, pgoff: lo, order: vpn < PMD_VPN ? 0 : PMD_ORDER });
      }
    }
    return out;
  }

  /**
   * How page `pgoff` is mapped by one session's table: 'rw' (a writable PTE on it, or on
   * the PMD covering it), 'ro' (read-only ones only), or null. generic/462's check.
   */
  accessOf(m: SessionMapping, pgoff: number): 'rw' | 'ro' | null {
    const base = pgoff - (pgoff % PMD_PAGES);
    const t = m.table;
    if (t.find(pgoff * 2 + 1) >= 0 || t.find(PMD_VPN + base * 2 + 1) >= 0) return 'rw';
    if (t.find(pgoff * 2) >= 0 || t.find(PMD_VPN + base * 2) >= 0) return 'ro';
    return null;
  }
}

function sextet(token: string, i: number): number {
  const c = token.charCodeAt(i);
  return c < 128 ? SEXTET[c] : -1;
}
