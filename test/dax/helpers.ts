/**
 * Shared fixtures of the dax layer's in-process tests (test/dax/*.test.ts).
 *
 * - freshDax: a MemoryStorage volume, mkfs, mount, and a Dax with failpoints enabled.
 * - TestOwner: a MappingOwner that records Invalidate notices and can end like a
 *   server/session Session does (every attached release runs).
 * - TestClient: what the SDK's MappedFile will do, reduced to the rules the server relies
 *   on: cache PTE tokens per page, re-fault after PTE_STALE, take a write fault before a
 *   store through a read-only PTE. By default it ignores Invalidate notices, so every
 *   correctness check goes through the server's token fence alone (S7).
 * - until / drain: wait for an observable state (an entry's waiter count, a lock queue) by
 *   yielding event-loop turns; never a timed sleep.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { DaxError, type ReasonCode } from '../../server/errors';
import { Dax } from '../../server/dax/dax';
import type { ArmedFailpoint } from '../../server/dax/failpoints';
import type { FaultKind } from '../../server/dax/fault';
import type { InvalidateNotice, MappingOwner } from '../../server/dax/pte';
import { FileSystem } from '../../server/fs/filesystem';
import { mkfs } from '../../server/fs/mkfs';
import type { MountOptions } from '../../server/fs/types';
import { BLOCK_SIZE } from '../../server/limits';
import { MemoryStorage } from '../../server/media/memory-storage';
import type { BlockStorage } from '../../server/media/storage';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const PAGE = BLOCK_SIZE;

export interface DaxVolume {
  storage: MemoryStorage;
  fs: FileSystem;
  dax: Dax;
}

export async function freshDax(sizeBytes = 16 * MiB, opts: MountOptions = {}): Promise<DaxVolume> {
  const storage = new MemoryStorage(sizeBytes);
  await mkfs(storage);
  const fs = await FileSystem.mount(storage, opts);
  const dax = new Dax(fs, { failpoints: true });
  return { storage, fs, dax };
}

/** Clean unmount, then mount the medium again with a new Dax (a fresh allocator: its cursor is back at the zone start). */
export async function remountDax(v: DaxVolume, opts: MountOptions = {}): Promise<DaxVolume> {
  await v.fs.unmount();
  const storage = v.storage.reboot();
  const fs = await FileSystem.mount(storage, opts);
  return { storage, fs, dax: new Dax(fs, { failpoints: true }) };
}

/** Creates a file and sets its size (a sparse file: holes only). */
export async function sparseFile(v: DaxVolume, name: string, sizeBytes: number): Promise<number> {
  const { ino } = await v.fs.create(name, true);
  if (sizeBytes > 0) await v.fs.truncate(ino, sizeBytes);
  return ino;
}

/** Creates a file whose every page is WRITTEN with `fill(pgoff)` (or zeros). */
export async function writtenFile(v: DaxVolume, name: string, pages: number, fill?: (pg: number) => number): Promise<number> {
  const { ino } = await v.fs.create(name, true);
  const buf = Buffer.alloc(pages * PAGE);
  if (fill) for (let pg = 0; pg < pages; pg++) buf.fill(fill(pg), pg * PAGE, (pg + 1) * PAGE);
  await v.fs.write(ino, 0, buf, false);
  return ino;
}

/** A MappingOwner like server/session's Session, recording what the server pushes. */
export class TestOwner implements MappingOwner {
  readonly events: InvalidateNotice[] = [];
  private readonly resources = new Map<number, { readonly kind: string; release(reason: string): void | Promise<void> }>();
  private nextHandle = 1;
  private ended = false;

  constructor(readonly id: string) {}

  notify(event: InvalidateNotice): void {
    if (!this.ended) this.events.push(event);
  }

  attach(resource: { readonly kind: string; release(reason: string): void | Promise<void> }): number {
    if (this.ended) throw new DaxError('SESSION_EXPIRED', `session ${this.id} is ending`);
    const handle = this.nextHandle++;
    this.resources.set(handle, resource);
    return handle;
  }

  detach(handle: number): boolean {
    return this.resources.delete(handle);
  }

  get attached(): number {
    return this.resources.size;
  }

  /** Session close / lease expiry: release every attached resource, newest first. */
  async end(): Promise<void> {
    this.ended = true;
    const all = [...this.resources.values()].reverse();
    this.resources.clear();
    for (const r of all) await r.release('SESSION_EXPIRED');
  }
}

export interface CachedPte {
  token: string;
  writable: boolean;
  pfn: number;
}

/** A client of the dax layer (what MappedFile does, minus the network). */
export class TestClient {
  /** ino -> pgoff -> PTE. */
  readonly ptes = new Map<number, Map<number, CachedPte>>();
  staleRetries = 0;
  faults = 0;

  constructor(readonly dax: Dax, readonly owner: TestOwner, readonly dropOnNotice = false) {
    if (dropOnNotice) {
      const notify = owner.notify.bind(owner);
      owner.notify = (ev) => {
        notify(ev);
        const t = this.ptes.get(ev.ino);
        if (t) for (const pg of [...t.keys()]) if (pg >= ev.firstPgoff && pg <= ev.lastPgoff) t.delete(pg);
      };
    }
  }

  cached(ino: number, pgoff: number): CachedPte | undefined {
    return this.ptes.get(ino)?.get(pgoff);
  }

  forget(ino: number, pgoff: number): void {
    this.ptes.get(ino)?.delete(pgoff);
  }

  async fault(ino: number, pgoff: number, kind: Exclude<FaultKind, 'COW'>, sync = false): Promise<CachedPte> {
    this.faults++;
    const r = await this.dax.fault(this.owner, ino, pgoff, kind, sync);
    assert.ok(r.pte, `${kind} fault returned no PTE`);
    const pte = { token: r.pte.token, writable: r.pte.writable, pfn: r.pte.pfn };
    let t = this.ptes.get(ino);
    if (!t) this.ptes.set(ino, (t = new Map()));
    t.set(pgoff, pte);
    return pte;
  }

  /** Load inside one page; re-faults after PTE_STALE, as a client must. */
  async load(ino: number, offsetBytes: number, length: number): Promise<Buffer> {
    const pg = Math.floor(offsetBytes / PAGE);
    assert.ok(offsetBytes + length <= (pg + 1) * PAGE, 'load crosses a page');
    for (let attempt = 0; attempt < 64; attempt++) {
      const pte = this.cached(ino, pg) ?? (await this.fault(ino, pg, 'READ'));
      try {
        return this.dax.load(this.owner, pte.token, offsetBytes - pg * PAGE, length);
      } catch (err) {
        if (!isCode(err, 'PTE_STALE')) throw err;
        this.staleRetries++;
        this.forget(ino, pg);
      }
    }
    throw new Error(`load at ${offsetBytes} of inode ${ino}: PTE_STALE 64 times in a row`);
  }

  /** Store inside one page; write-faults when it has no writable PTE, re-faults after PTE_STALE. */
  async store(ino: number, offsetBytes: number, data: Uint8Array): Promise<void> {
    const pg = Math.floor(offsetBytes / PAGE);
    assert.ok(offsetBytes + data.length <= (pg + 1) * PAGE, 'store crosses a page');
    for (let attempt = 0; attempt < 64; attempt++) {
      let pte = this.cached(ino, pg);
      if (!pte || !pte.writable) pte = await this.fault(ino, pg, 'WRITE');
      try {
        this.dax.store(this.owner, pte.token, offsetBytes - pg * PAGE, data);
        return;
      } catch (err) {
        if (!isCode(err, 'PTE_STALE')) throw err;
        this.staleRetries++;
        this.forget(ino, pg);
      }
    }
    throw new Error(`store at ${offsetBytes} of inode ${ino}: PTE_STALE 64 times in a row`);
  }
}

export function isCode(err: unknown, code: ReasonCode): boolean {
  return err instanceof DaxError && err.code === code;
}

/** Asserts that fn (sync or async) fails with a DaxError of this code. */
export async function expectCode(fn: () => unknown, code: ReasonCode, what = ''): Promise<void> {
  let result: unknown;
  try {
    result = await fn();
  } catch (err) {
    assert.ok(err instanceof DaxError, `${what}: expected DaxError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, `${what}: expected ${code}, got ${err.message}`);
    return;
  }
  assert.fail(`${what}: expected ${code}, but it succeeded (${String(result)})`);
}

/** Tracks whether a promise settled, without awaiting it. */
export function track<T>(p: Promise<T>): { promise: Promise<T>; readonly done: boolean; readonly failed: unknown } {
  const state = { done: false, failed: undefined as unknown };
  const promise = p.then(
    (v) => { state.done = true; return v; },
    (err: unknown) => { state.done = true; state.failed = err; throw err; },
  );
  // The test awaits `promise` later; a rejection before that must not be "unhandled".
  promise.catch(() => undefined);
  return { promise, get done() { return state.done; }, get failed() { return state.failed; } };
}

/**
 * Resolves with the failpoint's context once it is reached; rejects if `racing` settles
 * first (the request finished, or failed, without passing the point: the test is wrong or
 * the point moved).
 */
export function reached(fp: ArmedFailpoint, racing: Promise<unknown>, name: string): Promise<unknown> {
  return Promise.race([
    fp.reached,
    racing.then(
      () => { throw new Error(`the request completed without reaching failpoint ${name}`); },
      (err: unknown) => { throw new Error(`the request failed before failpoint ${name}: ${String(err)}`); },
    ),
  ]);
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * Yields event-loop turns until cond() holds (an observable state, e.g. a waiter queued on
 * an entry). Not a timed sleep: it fails after maxTurns turns, which only a hang reaches.
 */
export async function until(cond: () => boolean, what: string, maxTurns = 2000): Promise<void> {
  for (let i = 0; i < maxTurns; i++) {
    if (cond()) return;
    await turn();
  }
  assert.fail(`never observed: ${what}`);
}

/** Lets everything runnable run (microtasks and a few storage flushes) before a negative check. */
export async function drain(turns = 50): Promise<void> {
  for (let i = 0; i < turns; i++) await turn();
}

/** Waiters queued on the entry lock at pgoff (Inspect). */
export function waitersAt(dax: Dax, ino: number, pgoff: number): number {
  return dax.inspect(ino, pgoff, pgoff)[0]?.waiters ?? 0;
}

export function page(buf: Uint8Array, pg: number): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + pg * PAGE, PAGE);
}

/** The bytes of block pfn on the medium (what survives power loss). */
export function durableBlock(storage: MemoryStorage, pfn: number): Buffer {
  return Buffer.from(storage.durableImage().subarray(pfn * PAGE, (pfn + 1) * PAGE));
}

type FsckFn = (storage: BlockStorage) => Promise<{ clean: boolean; findings: Array<{ code: string; message: string }> }>;
const FSCK_MODULE = path.resolve(__dirname, '../../server/fsck/fsck.js');
let fsckFn: FsckFn | null | undefined;

/**
 * fsck of the volume after fs.sync(), when dist/server/fsck/fsck.js is built (another
 * engineer owns it). Returns false (and says so on stderr once) when it is not.
 */
export async function assertFsckClean(v: DaxVolume, context: string): Promise<boolean> {
  if (fsckFn === undefined) {
    fsckFn = null;
    if (fs.existsSync(FSCK_MODULE)) {
      const mod = (await import(FSCK_MODULE)) as { fsck?: unknown };
      if (typeof mod.fsck === 'function') fsckFn = mod.fsck as FsckFn;
    }
    if (fsckFn === null) process.stderr.write(`    NOTE: ${FSCK_MODULE} not built: fsck checks SKIPPED\n`);
  }
  if (fsckFn === null) return false;
  await v.fs.sync();
  const report = await fsckFn(v.storage);
  assert.ok(report.clean, `fsck ${context}:\n${report.findings.map((f) => `  ${f.code}: ${f.message}`).join('\n')}`);
  return true;
}
