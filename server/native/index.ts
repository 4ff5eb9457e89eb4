/**
 * The native addon (server/native/daxd_native.cc, built by `npm install` into
 * build/Release/daxd_native.node), typed. One function per system call and no policy:
 * MmapStorage (server/media/mmap-storage.ts) is the class built on it.
 *
 * A failing call throws a SyscallError, shaped like Node's fs errors: message
 * "ENOENT: no such file or directory, open '/x'", `code`, `errno` (the positive C errno),
 * `syscall`, and `path` when the call has one. Misused arguments throw TypeError/RangeError.
 * Sizes and offsets are non-negative safe integers, in bytes.
 */
import fs from 'node:fs';
import path from 'node:path';

export type OpenFlags = 'rw' | 'create';
export type Advice = 'willneed' | 'dontneed' | 'random' | 'sequential';

export interface SyscallError extends Error {
  /** errno name, e.g. 'ENOENT'; flock() reports a held lock as 'EWOULDBLOCK'. */
  code: string;
  /** The C errno (positive, unlike Node's libuv numbers). */
  errno: number;
  syscall: string;
  path?: string;
}

export function isSyscallError(err: unknown): err is SyscallError {
  return err instanceof Error && typeof (err as Partial<SyscallError>).syscall === 'string'
    && typeof (err as Partial<SyscallError>).code === 'string';
}

export interface DaxdNative {
  /**
   * int open(const char *pathname, int flags, mode_t mode): O_RDWR|O_CLOEXEC. 'create' adds
   * O_CREAT|O_EXCL (an existing file is EEXIST, never resized) and then
   * int ftruncate(int fd, off_t length) to sizeBytes: sparse, nothing written.
   */
  open(path: string, flags: 'rw'): number;
  open(path: string, flags: 'create', sizeBytes: number): number;
  /** int close(int fd). Releases the flock if this was the last descriptor of the file. */
  close(fd: number): void;
  /** int fstat(int fd, struct stat *statbuf): st_size. */
  fstatSize(fd: number): number;
  /** int flock(int fd, int operation): LOCK_EX|LOCK_NB; held elsewhere throws code 'EWOULDBLOCK'. */
  flock(fd: number): void;
  /**
   * void *mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset): an external
   * ArrayBuffer over the pages (no copy). offsetBytes must be page-aligned. Node 20 limits
   * external buffers to 2^32 bytes (ERR_BUFFER_TOO_LARGE beyond).
   */
  mmap(fd: number, offsetBytes: number, lengthBytes: number): ArrayBuffer;
  /**
   * int munmap(void *addr, size_t length) of the whole mapping, after detaching the buffer
   * (byteLength becomes 0). If msyncs are in flight, the pages are unmapped when they return.
   */
  munmap(mapping: ArrayBuffer): void;
  /** int msync(void *addr, size_t length, MS_SYNC) on the libuv thread pool; start rounded down to a page. */
  msync(mapping: ArrayBuffer, offsetBytes: number, lengthBytes: number): Promise<void>;
  /** The same, blocking the event loop. */
  msyncSync(mapping: ArrayBuffer, offsetBytes: number, lengthBytes: number): void;
  /** int madvise(void *addr, size_t length, int advice); start rounded down to a page. */
  madvise(mapping: ArrayBuffer, offsetBytes: number, lengthBytes: number, advice: Advice): void;
}

const ADDON_RELATIVE_PATH = path.join('build', 'Release', 'daxd_native.node');
/** Bounds the walk up from this file (dist/server/native/ is 3 levels below the root). */
const ROOT_SEARCH_DEPTH_MAX = 8;

/** The repository (package) root: the nearest directory above this file holding package.json. */
function packageRoot(): string {
  let dir = __dirname;
  for (let depth = 0; depth < ROOT_SEARCH_DEPTH_MAX; depth++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new Error(`daxd: no package.json above ${__dirname}; cannot find ${ADDON_RELATIVE_PATH}`);
}

function load(): DaxdNative {
  const file = path.join(packageRoot(), ADDON_RELATIVE_PATH);
  if (!fs.existsSync(file)) {
    throw new Error(`daxd: native addon ${file} is missing; run \`npm install\` (or \`npx node-gyp rebuild\`) to build it`);
  }
  const addon = { exports: {} as DaxdNative };
  process.dlopen(addon, file);
  return addon.exports;
}

export const native: DaxdNative = load();
