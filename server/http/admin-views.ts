/**
 * The admin API's replies, built from the live server state (admin-schemas.ts gives their
 * shape). Pure reads, synchronous, each O(rows returned) or O(files mapped): no await, so
 * every reply is one consistent snapshot.
 */
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
    mount: { wasClean, journal: wasClean ? 'clean' : replay.state, orphansFreed, mountMs }, // clean: nothing to recover (see server.ts)
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
      const as = d.dax.spaceStats(f.ino);
      return {
        ino: f.ino, name: f.name, sizeBytes: f.sizeBytes, blocks: f.blocks, generation: f.generation, mtimeMs: f.mtimeMs, ctimeMs: f.ctimeMs,
        mappedPages: as?.entries ?? 0, pinnedPages: as?.pinnedPages ?? 0, mappers: as?.mappers ?? 0,
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
  const snap = d.dax.pinsSnapshot(rowsLimit(limit));
  const names = new Map(d.sessions.list().map((s) => [s.id, s.clientName]));
  const now = Date.now();
  return {
    total: snap.total,
    pinnedBlocks: snap.pinnedBlocks,
    revocations: snap.revocations,
    recalls: snap.recalls,
    pins: snap.pins.map((p) => ({
      id: idPrefix(p.id), sessionId: idPrefix(p.ownerId), clientName: names.get(p.ownerId) ?? '', ino: p.ino,
      firstPgoff: p.firstPgoff, npages: p.npages, pinnedBlocks: p.pinnedBlocks,
      writable: p.writable, state: p.state, createdAtMs: p.createdAtMs, ageMs: now - p.createdAtMs, leaseMs: p.leaseMs,
      dmaInFlight: p.dmaInFlight,
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
  const held = d.dax.heldLocks(performance.now());
  let waiters = 0;
  const rows: LockRow[] = held.map((l) => {
    waiters += l.waiters;
    return { ino: l.ino, pgoff: l.pgoff, state: l.state, heldMs: round(l.heldMs), waiters: l.waiters, longestWaitMs: round(l.longestWaitMs) };
  });
  rows.sort((a, b) => b.heldMs - a.heldMs);
  return { held: rows.length, waiters, locks: rows.slice(0, rowsLimit(limit)) };
}

/** The cluster as this node sees it; `enabled: false` for a lone server. O(nodes). */
export function clusterView(d: HttpDeps) {
  const status = d.cluster?.() ?? null;
  return status === null ? { enabled: false, self: null, fenced: false, nodes: [] } : { enabled: true, ...status };
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
