/**
 * Shared fixtures of the file-system unit tests (filesystem-*.test.ts): fresh, remounted
 * and power-cycled MemoryStorage volumes, and small helpers over them.
 */
import assert from 'node:assert/strict';
import { BLOCK_SIZE } from '../../server/limits';
import { DaxError } from '../../server/errors';
import { MemoryStorage } from '../../server/media/memory-storage';
import { mkfs } from '../../server/fs/mkfs';
import { FileSystem } from '../../server/fs/filesystem';
import type { LayoutHooks, MountOptions, PageMapping } from '../../server/fs/types';
import { MiB, PAGE } from '../support/units';
export const MAX_PGOFF = Number.MAX_SAFE_INTEGER;

export interface Volume {
  storage: MemoryStorage;
  fs: FileSystem;
}

export async function freshVolume(opts: MountOptions = {}, sizeBytes = 16 * MiB): Promise<Volume> {
  const storage = new MemoryStorage(sizeBytes);
  await mkfs(storage);
  return { storage, fs: await FileSystem.mount(storage, opts) };
}

/** Clean unmount and mount again (a fresh allocator: its cursor is back at the zone start). */
export async function remount(v: Volume, opts: MountOptions = {}): Promise<Volume> {
  await v.fs.unmount();
  const storage = v.storage.reboot();
  return { storage, fs: await FileSystem.mount(storage, opts) };
}

/** Power loss now, nothing unflushed survives; then mount the medium. */
export async function powerCycle(v: Volume, opts: MountOptions = {}): Promise<Volume> {
  v.storage.crash(() => 0.5, 0);
  const storage = v.storage.reboot();
  return { storage, fs: await FileSystem.mount(storage, opts) };
}

/**
 * A volume whose first data blocks (where a fresh mount allocates first) hold 0xCC from a
 * deleted file: anything that exposes them would be caught. Returns those blocks.
 */
export async function staleVolume(pages: number): Promise<Volume & { stale: Set<number> }> {
  let v = await freshVolume();
  const f = await v.fs.create('stale', true);
  await v.fs.write(f.ino, 0, Buffer.alloc(pages * PAGE, 0xcc), false);
  const stale = new Set<number>();
  for (let pg = 0; pg < pages; pg++) stale.add(pfnOf(v.fs.iomap(f.ino, pg)));
  await v.fs.unlink('stale');
  await v.fs.sync();
  v = await remount(v);
  for (const pfn of stale) assert.ok(blockOf(v.storage, pfn).every((b) => b === 0xcc), 'precondition: stale bytes on media');
  return { ...v, stale };
}

export function pfnOf(m: PageMapping): number {
  assert.ok(m.state !== 'HOLE', 'expected a mapped page');
  return m.pfn;
}

export function blockOf(storage: MemoryStorage, pfn: number): Uint8Array {
  return storage.view(pfn * BLOCK_SIZE, BLOCK_SIZE);
}

export function isCode(code: string): (err: unknown) => boolean {
  return (err) => err instanceof DaxError && err.code === code;
}

export function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff || 1;
  return b;
}

/** Everything observable about a file and the volume's free space (not times). */
export async function snapshot(fs: FileSystem, ino: number, pages = 16): Promise<object> {
  const st = fs.stat(ino);
  return {
    sizeBytes: st.sizeBytes, blocks: st.blocks, name: st.name, generation: st.generation,
    data: (await fs.read(ino, 0, st.sizeBytes)).toString('hex'),
    map: Array.from({ length: pages }, (_, pg) => fs.iomap(ino, pg)),
    free: fs.statVolume().blocksFree,
  };
}

type HookCall = [kind: 'break' | 'released' | 'allocated', ino: number, first: number, last: number];

/** Layout hooks that record every call, and can refuse a layout break. */
export class RecordingHooks implements LayoutHooks {
  readonly calls: HookCall[] = [];
  refuseWith: Error | undefined;
  /** Runs inside breakLayout, before the file layer changes anything. */
  onBreak: (() => Promise<void>) | undefined;

  async breakLayout(ino: number, firstPgoff: number, lastPgoff: number): Promise<() => void> {
    this.calls.push(['break', ino, firstPgoff, lastPgoff]);
    await this.onBreak?.();
    if (this.refuseWith) throw this.refuseWith;
    return () => { this.calls.push(['released', ino, firstPgoff, lastPgoff]); };
  }

  async allocated(ino: number, firstPgoff: number, lastPgoff: number): Promise<void> {
    this.calls.push(['allocated', ino, firstPgoff, lastPgoff]);
  }

  take(): HookCall[] {
    return this.calls.splice(0);
  }
}

