/**
 * The admin API's replies, built from the live server state (admin-schemas.ts gives their
 * shape). Pure reads, synchronous, each O(rows returned) or O(files mapped): no await, so
 * every reply is one consistent snapshot.
 */
import type { Pin } from '../dax/pin-table';
import { pageTokenOf } from '../rpc/files-service';
import { namePrefix } from '../rpc/validate';
import { ADMIN_FILES_PAGE_DEFAULT, ADMIN_FILES_PAGE_MAX, ADMIN_ID_PREFIX_CHARS, ADMIN_ROWS_DEFAULT, ADMIN_ROWS_MAX } from './limits';
import type { HttpDeps } from './deps';

/** Session and pin ids are capabilities (S7): the API shows a prefix, enough to tell them apart. */
export function idPrefix(id: string): string {
  return id.slice(0, ADMIN_ID_PREFIX_CHARS);
}

export function rowsLimit(limit: number | undefined): number {
  return Math.min(limit ?? ADMIN_ROWS_DEFAULT, ADMIN_ROWS_MAX);
}

export function volumeView(d: HttpDeps) {
  const v = d.fs.statVolume();
  const { replay, wasClean, orphansFreed, mountMs } = d.facts.mount;
  const now = Date.now();
  return {
    uuid: v.uuid,
    volumePath: d.facts.volumePath,
    formatVersion: v.formatVersion,
    sizeBytes: v.sizeBytes,
    blockSize: v.blockSize,
    blocks: { total: v.blocksTotal, free: v.blocksFree, used: v.blocksUsed, unwritten: d.fs.unwrittenBlocks() },
    files: v.files,
    maxFiles: v.maxFiles,
    journal: { blocks: v.journalBlocks, ...d.fs.journal.stats },
    mount: { wasClean, journal: replay.state, orphansFreed, mountMs },
    server: {
      version: d.facts.version, pid: process.pid, grpcAddress: d.facts.grpcAddress, httpAddress: d.facts.httpAddress,
      startedAtMs: d.facts.startedAtMs, uptimeMs: now - d.facts.startedAtMs,
    },
  };
}

export function filesView(d: HttpDeps, query: { prefix?: string; page_token?: string; page_size?: number }) {
  const pageSize = Math.min(query.page_size || ADMIN_FILES_PAGE_DEFAULT, ADMIN_FILES_PAGE_MAX);
  // Validated as Files.List validates them (EINVAL -> 400).
  const page = d.fs.list(namePrefix(query.prefix ?? ''), pageTokenOf(query.page_token ?? ''), pageSize);
  return {
    files: page.files.map((f) => {
      const as = d.dax.ctx.spaces.get(f.ino);
      return {
        ino: f.ino, name: f.name, sizeBytes: f.sizeBytes, blocks: f.blocks, generation: f.generation, mtimeMs: f.mtimeMs, ctimeMs: f.ctimeMs,
        mappedPages: as?.entries.size ?? 0, pinnedPages: as?.pinned.size ?? 0, mappers: as?.mappings.size ?? 0,
      };
    }),
    nextPageToken: page.nextPageToken,
  };
}

export function sessionsView(d: HttpDeps) {
  const sessions = d.sessions.list();
  return {
    total: sessions.length,
    sessions: sessions.map((s) => ({
      id: idPrefix(s.id), clientName: s.clientName, state: s.state, leaseMs: s.leaseMs, openedAtMs: s.openedAtMs,
      expiresAtMs: s.expiresAtMs, mappings: s.resourceCountOf('mapping'), pins: s.resourceCountOf('pin'),
    })),
  };
}

export function pinsView(d: HttpDeps, limit: number | undefined) {
  const { byId, stats } = d.dax.ctx.pins;
  const names = new Map(d.sessions.list().map((s) => [s.id, s.clientName]));
  const rows: Pin[] = [];
  const max = rowsLimit(limit);
  // byId is in insertion order: the oldest pins first.
  for (const p of byId.values()) {
    if (rows.length === max) break;
    rows.push(p);
  }
  const now = Date.now();
  return {
    total: byId.size,
    pinnedBlocks: stats.pinnedBlocks,
    revocations: stats.revocations,
    recalls: stats.recalls,
    pins: rows.map((p) => ({
      id: idPrefix(p.id), sessionId: idPrefix(p.owner.id), clientName: names.get(p.owner.id) ?? '', ino: p.as.ino,
      firstPgoff: p.firstPgoff, npages: p.pfns.length, pinnedBlocks: p.entries.filter((e) => e !== null).length,
      writable: p.writable, state: p.state, createdAtMs: p.createdAtMs, ageMs: now - p.createdAtMs, leaseMs: p.leaseMs,
      dmaInFlight: p.inflight,
    })),
  };
}

interface LockRow {
  ino: number;
  pgoff: number;
  state: 'EMPTY' | 'ZERO' | 'MAPPED';
  heldMs: number;
  waiters: number;
  longestWaitMs: number;
}

/** Held entry locks, the longest-held first, each with its queue. O(locks held). */
export function locksView(d: HttpDeps, limit: number | undefined) {
  const now = performance.now();
  const rows: LockRow[] = [];
  let waiters = 0;
  for (const as of d.dax.ctx.spaces.values()) {
    for (const [e, sinceMs] of as.held) {
      const queue = as.waitQueues.get(e.pgoff) ?? [];
      waiters += queue.length;
      rows.push({
        ino: as.ino, pgoff: e.pgoff, state: e.state, heldMs: round(now - sinceMs), waiters: queue.length,
        longestWaitMs: queue.length === 0 ? 0 : round(now - queue[0].sinceMs),
      });
    }
  }
  rows.sort((a, b) => b.heldMs - a.heldMs);
  return { held: rows.length, waiters, locks: rows.slice(0, rowsLimit(limit)) };
}

/** Open NBD connections, the oldest first; O(connections) (at most NBD_CONNECTIONS_MAX). */
export function nbdView(d: HttpDeps, limit: number | undefined) {
  const rows = d.nbd?.list() ?? [];
  rows.sort((a, b) => a.openedAtMs - b.openedAtMs || a.id - b.id);
  const now = Date.now();
  return {
    address: d.nbd?.address ?? null,
    total: rows.length,
    connections: rows.slice(0, rowsLimit(limit)).map((c) => ({ ...c, ageMs: Math.max(0, now - c.openedAtMs) })),
  };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
