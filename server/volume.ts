/**
 * Opening a volume file for serving: create it (sparse, then mkfs) when it is missing,
 * take its lock, mount it (replaying the journal). Used by `daxd serve` and `daxd mkfs`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { FileSystem, type MountReport } from './fs/filesystem';
import { mkfs } from './fs/mkfs';
import { MmapStorage } from './media/mmap-storage';

export interface OpenedVolume {
  fs: FileSystem;
  created: boolean;
  report: MountReport;
}

/**
 * Create the volume file at volumePath with sizeBytes (parent directories too) and format
 * it. The file must not exist. On failure the half-made file is removed.
 */
export async function createVolume(volumePath: string, sizeBytes: number): Promise<void> {
  fs.mkdirSync(path.dirname(path.resolve(volumePath)), { recursive: true });
  const storage = MmapStorage.open(volumePath, { create: { sizeBytes } });
  try {
    await mkfs(storage, { sizeBytes });
  } catch (err) {
    storage.close();
    fs.rmSync(volumePath, { force: true });
    throw err;
  }
  storage.close();
}

/** Reformat an existing volume file (daxd mkfs --force). */
export async function reformatVolume(volumePath: string): Promise<void> {
  const storage = MmapStorage.open(volumePath);
  try {
    await mkfs(storage, {});
  } finally {
    storage.close();
  }
}

/**
 * Open and mount the volume, creating it first when missing. Throws BusyError (EBUSY) when
 * another process serves it. The lock is held until fs.unmount().
 */
export async function openVolume(volumePath: string, sizeBytes: number): Promise<OpenedVolume> {
  let created = false;
  if (!fs.existsSync(volumePath)) {
    await createVolume(volumePath, sizeBytes);
    created = true;
  }
  const storage = MmapStorage.open(volumePath);
  try {
    const fileSystem = await FileSystem.mount(storage);
    return { fs: fileSystem, created, report: fileSystem.mountReport };
  } catch (err) {
    storage.close();
    throw err;
  }
}
