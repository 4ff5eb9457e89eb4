/**
 * The public surface of the file layer (server/fs), as used by server/rpc and server/dax.
 * Sizes and offsets are bytes (safe integers, < 2^53); pgoff is offset / 4096.
 */

export interface FileInfo {
  ino: number;
  name: string;
  sizeBytes: number;
  /** Blocks allocated to the file's data (WRITTEN + UNWRITTEN), in 4 KiB blocks. */
  blocks: number;
  /** Bumped every time the inode slot is reused: (ino, generation) names one file forever. */
  generation: number;
  mtimeMs: number;
  ctimeMs: number;
}

export const FALLOCATE_MODES = ['ALLOCATE', 'KEEP_SIZE', 'PUNCH_HOLE', 'ZERO_RANGE', 'COLLAPSE_RANGE'] as const;
export type FallocateMode = (typeof FALLOCATE_MODES)[number];

export interface VolumeInfo {
  blockSize: number;
  blocksTotal: number;
  /** Data-zone blocks not allocated (includes blocks whose free is committed). */
  blocksFree: number;
  /** Blocks freed by transactions not committed yet: free after the next commit. */
  blocksPendingFree: number;
  /** Data-zone blocks holding file data or block maps. */
  blocksUsed: number;
  files: number;
  maxFiles: number;
  maxFileSizeBytes: number;
  uuid: string;
  formatVersion: number;
  journalBlocks: number;
  sizeBytes: number;
}

export interface ListPage {
  files: FileInfo[];
  /** Empty when there are no more. Opaque to clients. */
  nextPageToken: string;
}

export interface WriteResult {
  written: number;
  sizeBytes: number;
}

/** One page of a file's block map, as iomap reports it. */
export type PageMapping =
  | { state: 'HOLE' }
  | { state: 'UNWRITTEN'; pfn: number }
  | { state: 'WRITTEN'; pfn: number };

/**
 * Hooks the file layer calls so the layer above (server/dax) can keep S3 and S4 without
 * the file layer knowing about mappings or pins. All are called with the inode lock held
 * exclusively.
 */
export interface LayoutHooks {
  /**
   * S4: called before blocks of [firstPgoff, lastPgoff] are unmapped from the file
   * (truncate down, punch, zero range, collapse). Resolves once no page in range is
   * mapped or pinned; returns a release function the file layer calls after the change.
   * May reject (EBUSY, ETIMEDOUT, ECANCELED): then the file is left unchanged.
   */
  breakLayout(ino: number, firstPgoff: number, lastPgoff: number, reason: LayoutChange, opts: LayoutBreakOptions): Promise<() => void>;
  /** S3: called after write(2) allocated blocks for [firstPgoff, lastPgoff] (IOMAP_F_NEW). */
  allocated(ino: number, firstPgoff: number, lastPgoff: number): Promise<void>;
  /**
   * Called once unlink removed the name (inode lock released), before the file layer
   * frees an inode nobody uses: an address space left with only dirty entries lets go of
   * the inode here, as nobody can map or pin the file again.
   */
  unlinked?(ino: number): void;
}

export type LayoutChange = 'TRUNCATE' | 'PUNCH_HOLE' | 'ZERO_RANGE' | 'COLLAPSE_RANGE';

/** What a layout change does while a page in its range is pinned (S4; wire: LayoutBreak). */
export type LayoutBreakPolicy = 'WAIT' | 'FAIL' | 'RECALL';

export interface LayoutBreakOptions {
  policy: LayoutBreakPolicy;
  /** Aborts the wait for pins (deadline: reason ETIMEDOUT; cancelled call: ECANCELED). */
  signal?: AbortSignal;
  /** The RPC's request id, for the slow-operation log line of a wait (server/slow-ops.ts). */
  requestId?: string;
}

export const DEFAULT_LAYOUT_BREAK: LayoutBreakOptions = { policy: 'WAIT' };

export interface MountOptions {
  /** Tests: fill freed blocks with this byte pattern so reads of stale data are caught. */
  canaryByte?: number;
  hooks?: LayoutHooks;
  /**
   * Tests: replaces the timer that commits pending frees FREE_COMMIT_DELAY_MS after the
   * first one (default: setTimeout, unref'd). Returns a cancel function.
   */
  scheduleFreeCommit?: (commit: () => void, delayMs: number) => () => void;
}

/** What server/rpc may call. Every method throws DaxError for expected failures. */
export interface FileSystemApi {
  create(name: string, exclusive: boolean): Promise<FileInfo>;
  lookup(name: string): FileInfo;
  stat(ino: number): FileInfo;
  list(prefix: string, pageToken: string, pageSize: number): ListPage;
  unlink(name: string): Promise<void>;
  /** True once the file's name is gone (unlinked while mapped or pinned: an orphan). */
  isUnlinked(ino: number): boolean;
  read(ino: number, offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  write(ino: number, offsetBytes: number, data: Uint8Array, sync: boolean): Promise<WriteResult>;
  fsync(ino: number, datasync: boolean): Promise<void>;
  truncate(ino: number, sizeBytes: number, opts?: LayoutBreakOptions): Promise<void>;
  fallocate(ino: number, mode: FallocateMode, offsetBytes: number, lengthBytes: number, opts?: LayoutBreakOptions): Promise<void>;
  statVolume(): VolumeInfo;
  /** Commit the journal and flush all dirty data. */
  sync(): Promise<void>;
  /** sync, mark the superblock clean, unmap. */
  unmount(): Promise<void>;
}
