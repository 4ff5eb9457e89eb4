/**
 * An in-process dax volume for tests (no network): freshDax (a MemoryStorage volume, mkfs,
 * mount, and a Dax with failpoints enabled), files on it, what the medium holds, and the
 * DaxError assertions of the dax tests. The clients of such a volume are in ./test-owner.
 */
import assert from 'node:assert/strict';
import { DaxError, type ReasonCode } from '../../server/errors';
import { Dax } from '../../server/dax/dax';
import { FileSystem } from '../../server/fs/filesystem';
import { mkfs } from '../../server/fs/mkfs';
import type { MountOptions } from '../../server/fs/types';
import { MemoryStorage } from '../../server/media/memory-storage';
import { assertFsckClean as assertStorageFsckClean, loadFsck } from './fsck';
import { MiB, PAGE } from './units';

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

/**
 * fsck of the volume after fs.sync(), when dist/server/fsck/fsck.js is built (see
 * ./fsck). Returns false when it is not.
 */
export async function assertFsckClean(v: DaxVolume, context: string): Promise<boolean> {
  if ((await loadFsck()) === null) return false;
  await v.fs.sync();
  await assertStorageFsckClean(v.storage, context);
  return true;
}
