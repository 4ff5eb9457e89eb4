/**
 * fsck for tests that must run before server/fsck exists: loads dist/server/fsck/fsck.js
 * when it has been built, and otherwise says so once, visibly, so a green run without fsck
 * is never mistaken for a run that checked the invariants fsck checks.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { BlockStorage } from '../../server/media/storage';

export interface FsckFinding {
  code: string;
  message: string;
}

export interface FsckResult {
  clean: boolean;
  findings: FsckFinding[];
}

export type FsckFn = (storage: BlockStorage) => Promise<FsckResult>;

/** The compiled fsck module, next to this file's compiled copy (dist/test/support -> dist/server/fsck). */
export const FSCK_MODULE_PATH = path.resolve(__dirname, '../../server/fsck/fsck.js');

let loaded: FsckFn | null | undefined;
let noted = false;

/** fsck(storage), or null (after a one-time note on stderr) when it is not built. */
export async function loadFsck(): Promise<FsckFn | null> {
  if (loaded !== undefined) return loaded;
  if (!fs.existsSync(FSCK_MODULE_PATH)) {
    loaded = null;
    if (!noted) {
      noted = true;
      process.stderr.write(`    NOTE: ${FSCK_MODULE_PATH} is not built: the fsck-clean assertions are SKIPPED\n`);
    }
    return loaded;
  }
  const mod = (await import(FSCK_MODULE_PATH)) as { fsck?: unknown };
  if (typeof mod.fsck !== 'function') throw new Error(`${FSCK_MODULE_PATH} exports no fsck function`);
  loaded = mod.fsck as FsckFn;
  return loaded;
}

/** Throws with every finding when fsck (if built) reports the volume unclean. */
export async function assertFsckClean(storage: BlockStorage, context: string): Promise<void> {
  const fsck = await loadFsck();
  if (fsck === null) return;
  const result = await fsck(storage);
  if (!result.clean) {
    const lines = result.findings.map((f) => `  ${f.code}: ${f.message}`).join('\n');
    throw new Error(`fsck found ${result.findings.length} problem(s) ${context}:\n${lines}`);
  }
}
