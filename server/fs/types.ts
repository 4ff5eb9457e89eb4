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

/**
 * The fallocate modes: the one list. Each key is also the mode's wire name (proto
 * FallocateRequest.Mode; server/rpc/files-service.ts fails to compile if the two lists
 * differ), and FileSystem's handler table (server/fs/filesystem.ts) is a Record over
 * these keys, so a mode without a handler does not compile either.
 * - pageAligned: offset and length must be multiples of BLOCK_SIZE (EINVAL at the edge,
 *   server/rpc/validate.ts fallocateRequest).
 * - layoutChange: the mode frees, converts or moves existing pages, so it breaks the
 *   layout first (S4) and is a reason PTEs are invalidated (LayoutChange below).
 */
export const FALLOCATE_MODE_RULES = {
  ALLOCATE: { pageAligned: false, layoutChange: false },
  KEEP_SIZE: { pageAligned: false, layoutChange: false },
  PUNCH_HOLE: { pageAligned: false, layoutChange: true },
  ZERO_RANGE: { pageAligned: false, layoutChange: true },
  COLLAPSE_RANGE: { pageAligned: true, layoutChange: true },
} as const satisfies Record<string, { readonly pageAligned: boolean; readonly layoutChange: boolean }>;
export type FallocateMode = keyof typeof FALLOCATE_MODE_RULES;
/** The keys of FALLOCATE_MODE_RULES, in wire order. */
export const FALLOCATE_MODES = Object.keys(FALLOCATE_MODE_RULES) as readonly FallocateMode[];
/** The fallocate modes that break the layout (S4). */
type LayoutChangingMode = { [M in FallocateMode]: (typeof FALLOCATE_MODE_RULES)[M]['layoutChange'] extends true ? M : never }[FallocateMode];

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

/** The layout changes (S4): truncate and the fallocate modes that break the layout. Each is also an invalidate reason. */
/** MOVED: a cluster drain moves the whole file to another node (server/cluster/drain.ts). */
export type LayoutChange = 'TRUNCATE' | LayoutChangingMode | 'MOVED';

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
  /**
   * `alloc`: makes the Buffer the bytes are copied into (given the byte count, clamped to
   * EOF), e.g. wire/bulk-codec.ts withHeadroom so the gRPC reply is encoded around it
   * without a second copy. Default: Buffer.allocUnsafe.
   */
  read(ino: number, offsetBytes: number, lengthBytes: number, alloc?: (bytes: number) => Buffer): Promise<Buffer>;
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
