/**
 * The file layer: a flat namespace of files with block maps on one volume.
 *
 * Locking: the inode lock (RwLock per inode) is taken here, exclusive for write,
 * truncate, fallocate and unlink (lock order 1 of ARCHITECTURE.md). Read is synchronous
 * and takes no lock. Layout hooks (S3, S4) are called with the inode lock held; the
 * layer above takes its mmap and entry locks inside them.
 *
 * Awaits inside a critical section (other requests run there): the layout hooks, journal
 * commits between steps of a long change (file-layout.ts), and flushes for fsync/sync.
 */
import assert from 'node:assert';
import { BLOCK_SIZE, FILE_MAX_BYTES, IO_MAX_BYTES } from '../limits';
import { ExistsError, FileTooBigError, InvalidArgumentError, LimitError, NotFoundError } from '../errors';
import type { BlockStorage } from '../media/storage';
import type { Layout } from '../media/layout';
import { readSuperblock, Superblock, writeSuperblock } from '../media/superblock';
import { Journal } from '../journal/journal';
import { replayJournal, ReplayResult } from '../journal/replay';
import { coalesceRuns } from '../journal/transaction';
import { Allocator } from '../alloc/allocator';
import { BlockMap, toPageMapping } from './block-map';
import { DataContext, readData, writeData } from './file-data';
import { allocateUnwritten, convertToUnwritten, removeBlocks, shiftDown, zeroInPage, zeroPartialPages } from './file-layout';
import { Inode, INODE_LINKED, INODE_ORPHAN } from './inode';
import { InodeTable } from './inode-table';
import { Namespace, validateName } from './namespace';
import { RwLock } from './rw-lock';
import type {
  FallocateMode, FileInfo, FileSystemApi, LayoutHooks, ListPage, MountOptions, PageMapping, VolumeInfo, WriteResult,
} from './types';

const NO_HOOKS: LayoutHooks = {
  breakLayout: async () => () => undefined,
  allocated: async () => undefined,
};

export interface MountReport {
  replay: ReplayResult;
  badSuperblockCopies: string[];
  wasClean: boolean;
  orphansFreed: number;
  files: number;
  mountMs: number;
}

export class FileSystem implements FileSystemApi {
  private readonly ctx: DataContext;
  private readonly locks = new Map<number, RwLock>();
  private hooks: LayoutHooks;
  private mounted = true;

  private constructor(
    readonly storage: BlockStorage,
    private readonly sb: Superblock,
    readonly layout: Layout,
    readonly journal: Journal,
    readonly alloc: Allocator,
    private readonly inodes: InodeTable,
    readonly map: BlockMap,
    private readonly ns: Namespace,
    readonly mountReport: MountReport,
    opts: MountOptions,
  ) {
    this.ctx = { storage, journal, alloc, map };
    this.hooks = opts.hooks ?? NO_HOOKS;
  }

  /** Replays the journal, marks the volume in use, loads inodes, frees orphans. */
  static async mount(storage: BlockStorage, opts: MountOptions = {}): Promise<FileSystem> {
    const t0 = performance.now();
    const { sb, badCopies } = readSuperblock(storage);
    const layout = sb.layout;
    const replay = await replayJournal(storage, layout);
    const wasClean = sb.clean;
    sb.clean = false;
    await writeSuperblock(storage, sb);
    const journal = new Journal(storage, layout, replay.nextSeq);
    const alloc = new Allocator(storage, layout, journal);
    alloc.canaryByte = opts.canaryByte;
    journal.onCommitted = (tx) => alloc.onCommitted(tx);
    const inodes = new InodeTable(journal, layout);
    const all = inodes.load();
    const ns = new Namespace();
    ns.loadAll(all.filter((i) => i.state === INODE_LINKED).map((i) => [i.name, i.ino] as [string, number]));
    const report: MountReport = { replay, badSuperblockCopies: badCopies, wasClean, orphansFreed: 0, files: ns.size, mountMs: 0 };
    const fs = new FileSystem(storage, sb, layout, journal, alloc, inodes, new BlockMap(journal, alloc), ns, report, opts);
    // Orphans were unlinked while in use; nobody uses them after a restart.
    for (const inode of all.filter((i) => i.state === INODE_ORPHAN)) {
      await fs.destroy(inode);
      report.orphansFreed++;
    }
    await journal.commit();
    report.mountMs = performance.now() - t0;
    return fs;
  }

  setHooks(hooks: LayoutHooks): void {
    this.hooks = hooks;
  }

  // ---- namespace ---------------------------------------------------------------

  async create(name: string, exclusive: boolean): Promise<FileInfo> {
    this.assertMounted();
    validateName(name);
    const existing = this.ns.get(name);
    if (existing !== undefined) {
      if (exclusive) throw new ExistsError(`file ${JSON.stringify(name)} exists (inode ${existing})`);
      return this.info(this.inode(existing));
    }
    const inode = this.inodes.allocate(name, Date.now());
    this.ns.add(name, inode.ino);
    return this.info(inode);
  }

  lookup(name: string): FileInfo {
    validateName(name);
    const ino = this.ns.get(name);
    if (ino === undefined) throw new NotFoundError(`no file named ${JSON.stringify(name)}`);
    return this.info(this.inode(ino));
  }

  stat(ino: number): FileInfo {
    return this.info(this.inode(ino));
  }

  list(prefix: string, pageToken: string, pageSize: number): ListPage {
    assert(Number.isSafeInteger(pageSize) && pageSize > 0);
    const after = pageToken === '' ? '' : Buffer.from(pageToken, 'base64url').toString('utf8');
    const { names, more } = this.ns.page(prefix, after, pageSize);
    const files = names.map((n) => this.info(this.inode(this.ns.get(n)!)));
    return { files, nextPageToken: more ? Buffer.from(names[names.length - 1], 'utf8').toString('base64url') : '' };
  }

  /** Removes the name; the inode and its blocks go when the last user releases it. */
  async unlink(name: string): Promise<void> {
    validateName(name);
    const ino = this.ns.get(name);
    if (ino === undefined) throw new NotFoundError(`no file named ${JSON.stringify(name)}`);
    const unlock = await this.lockOf(ino).lockExclusive();
    try {
      const inode = this.inode(ino);
      if (inode.name !== name || this.ns.get(name) !== ino) throw new NotFoundError(`no file named ${JSON.stringify(name)}`);
      this.ns.remove(name);
      inode.name = '';
      inode.state = INODE_ORPHAN;
      inode.ctimeMs = Date.now();
      this.inodes.persist(inode);
    } finally {
      unlock();
    }
    const inode = this.inodes.byIno.get(ino);
    if (inode && inode.users === 0) await this.destroy(inode);
  }

  /** A user (mapping, pin) keeps an unlinked inode alive until release(). */
  acquire(ino: number): Inode {
    const inode = this.inode(ino);
    inode.users++;
    return inode;
  }

  async release(ino: number): Promise<void> {
    const inode = this.inode(ino);
    assert(inode.users > 0, `release of inode ${ino} without users`);
    inode.users--;
    if (inode.users === 0 && inode.state === INODE_ORPHAN) await this.destroy(inode);
  }

  private async destroy(inode: Inode): Promise<void> {
    const unlock = await this.lockOf(inode.ino).lockExclusive();
    try {
      if (this.inodes.byIno.get(inode.ino) !== inode) return;
      await removeBlocks(this.ctx, inode, 0, Number.MAX_SAFE_INTEGER, () => this.inodes.persist(inode));
      this.inodes.free(inode);
    } finally {
      unlock();
      this.locks.delete(inode.ino);
    }
  }

  // ---- data --------------------------------------------------------------------

  async read(ino: number, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.checkRange(offsetBytes, lengthBytes);
    if (lengthBytes > IO_MAX_BYTES) throw new LimitError('read length', lengthBytes, IO_MAX_BYTES);
    const inode = this.inode(ino);
    const n = Math.max(0, Math.min(lengthBytes, inode.sizeBytes - offsetBytes));
    return readData(this.ctx, inode, offsetBytes, n);
  }

  async write(ino: number, offsetBytes: number, data: Uint8Array, sync: boolean): Promise<WriteResult> {
    this.checkRange(offsetBytes, data.length);
    if (data.length > IO_MAX_BYTES) throw new LimitError('write length', data.length, IO_MAX_BYTES);
    if (offsetBytes + data.length > FILE_MAX_BYTES) throw new FileTooBigError(offsetBytes + data.length, FILE_MAX_BYTES);
    this.inode(ino);
    const unlock = await this.lockOf(ino).lockExclusive();
    let overwritten: number[] = [];
    let sizeBytes: number;
    try {
      const inode = this.inode(ino);
      if (data.length > 0) {
        const outcome = writeData(this.ctx, inode, offsetBytes, data);
        overwritten = outcome.overwritten;
        if (!sync) for (const pfn of overwritten) inode.dirtyPfns.add(pfn);
        inode.sizeBytes = Math.max(inode.sizeBytes, offsetBytes + data.length);
        inode.mtimeMs = Date.now();
        this.inodes.persist(inode);
        // S3: invalidate hole/zero pages only where this write allocated, after allocating.
        for (const [first, last] of outcome.newRanges) await this.hooks.allocated(ino, first, last);
      }
      sizeBytes = inode.sizeBytes;
    } finally {
      unlock();
    }
    if (sync) {
      // O_DSYNC: the overwritten blocks, the new blocks (ordered data) and the metadata.
      await this.flushPfns(overwritten);
      await this.journal.commit();
    }
    return { written: data.length, sizeBytes };
  }

  async fsync(ino: number, _datasync: boolean): Promise<void> {
    const inode = this.inode(ino);
    const pfns = [...inode.dirtyPfns];
    inode.dirtyPfns.clear();
    try {
      await this.flushPfns(pfns);
    } catch (err) {
      for (const pfn of pfns) inode.dirtyPfns.add(pfn);
      throw err;
    }
    await this.journal.commit();
  }

  async sync(): Promise<void> {
    await Promise.all([...this.inodes.byIno.keys()].map((ino) => this.fsync(ino, false)));
    await this.journal.commit();
  }

  /** One page of the block map (for the dax layer and tests). */
  iomap(ino: number, pgoff: number): PageMapping {
    return toPageMapping(this.map.get(this.inode(ino), pgoff));
  }

  // ---- size and layout ---------------------------------------------------------

  async truncate(ino: number, sizeBytes: number): Promise<void> {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new InvalidArgumentError(`size ${sizeBytes} is not a non-negative integer`);
    if (sizeBytes > FILE_MAX_BYTES) throw new FileTooBigError(sizeBytes, FILE_MAX_BYTES);
    await this.withLayoutLock(ino, async (inode) => {
      const persist = () => this.inodes.persist(inode);
      const firstGone = Math.ceil(sizeBytes / BLOCK_SIZE);
      if (sizeBytes < inode.sizeBytes || inode.blocks > 0) {
        // Truncate also drops preallocated blocks past the old EOF, as Linux does.
        const release = await this.hooks.breakLayout(ino, Math.floor(sizeBytes / BLOCK_SIZE), Number.MAX_SAFE_INTEGER);
        try {
          // Bytes past EOF in the last page are zero (so a later extension reads zeros).
          if (sizeBytes % BLOCK_SIZE !== 0) zeroInPage(this.ctx, inode, firstGone - 1, sizeBytes, firstGone * BLOCK_SIZE);
          inode.sizeBytes = sizeBytes;
          this.touch(inode);
          await removeBlocks(this.ctx, inode, firstGone, Number.MAX_SAFE_INTEGER, persist);
        } finally {
          release();
        }
      }
      inode.sizeBytes = sizeBytes;
      this.touch(inode);
    });
  }

  async fallocate(ino: number, mode: FallocateMode, offsetBytes: number, lengthBytes: number): Promise<void> {
    this.checkRange(offsetBytes, lengthBytes);
    if (lengthBytes === 0) throw new InvalidArgumentError('fallocate length must be > 0');
    const end = offsetBytes + lengthBytes;
    if (end > FILE_MAX_BYTES) throw new FileTooBigError(end, FILE_MAX_BYTES);
    if (mode === 'COLLAPSE_RANGE' && (offsetBytes % BLOCK_SIZE !== 0 || lengthBytes % BLOCK_SIZE !== 0)) {
      throw new InvalidArgumentError(`COLLAPSE_RANGE needs offset and length aligned to ${BLOCK_SIZE} (offset ${offsetBytes}, length ${lengthBytes})`);
    }
    await this.withLayoutLock(ino, async (inode) => {
      const persist = () => this.inodes.persist(inode);
      const first = Math.floor(offsetBytes / BLOCK_SIZE);
      const last = Math.floor((end - 1) / BLOCK_SIZE);
      switch (mode) {
        case 'ALLOCATE':
        case 'KEEP_SIZE':
          await allocateUnwritten(this.ctx, inode, first, last, persist);
          if (mode === 'ALLOCATE') inode.sizeBytes = Math.max(inode.sizeBytes, end);
          break;
        case 'PUNCH_HOLE':
        case 'ZERO_RANGE': {
          const release = await this.hooks.breakLayout(ino, first, last);
          try {
            const whole = zeroPartialPages(this.ctx, inode, offsetBytes, end);
            if (whole.first <= whole.last) {
              if (mode === 'PUNCH_HOLE') await removeBlocks(this.ctx, inode, whole.first, whole.last, persist);
              else {
                await convertToUnwritten(this.ctx, inode, whole.first, whole.last, persist);
                await allocateUnwritten(this.ctx, inode, whole.first, whole.last, persist);
              }
            }
          } finally {
            release();
          }
          break;
        }
        case 'COLLAPSE_RANGE': {
          if (end >= inode.sizeBytes) {
            throw new InvalidArgumentError(`COLLAPSE_RANGE must end before EOF (end ${end} vs. size ${inode.sizeBytes})`);
          }
          const release = await this.hooks.breakLayout(ino, first, Number.MAX_SAFE_INTEGER);
          try {
            await removeBlocks(this.ctx, inode, first, last, persist);
            await shiftDown(this.ctx, inode, last + 1, last + 1 - first, persist);
            inode.sizeBytes -= lengthBytes;
          } finally {
            release();
          }
          break;
        }
        default:
          throw new InvalidArgumentError(`unknown fallocate mode ${String(mode)}`);
      }
      this.touch(inode);
    });
  }

  private async withLayoutLock(ino: number, fn: (inode: Inode) => Promise<void>): Promise<void> {
    this.inode(ino);
    const unlock = await this.lockOf(ino).lockExclusive();
    try {
      await fn(this.inode(ino));
    } finally {
      unlock();
    }
  }

  // ---- volume ------------------------------------------------------------------

  statVolume(): VolumeInfo {
    const free = this.alloc.freeBlocks;
    return {
      blockSize: BLOCK_SIZE, blocksTotal: this.layout.data.count, blocksFree: free, blocksUsed: this.layout.data.count - free,
      files: this.ns.size, maxFiles: this.layout.maxFiles, maxFileSizeBytes: FILE_MAX_BYTES,
      uuid: Buffer.from(this.sb.uuid).toString('hex'), formatVersion: this.sb.version,
      journalBlocks: this.layout.journal.count, sizeBytes: this.layout.volumeBlocks * BLOCK_SIZE,
    };
  }

  /** Final sync, clean flag, unmap. The FileSystem is unusable afterwards. */
  async unmount(): Promise<void> {
    if (!this.mounted) return;
    await this.sync();
    this.mounted = false;
    this.sb.clean = true;
    await writeSuperblock(this.storage, this.sb);
    this.storage.close();
  }

  // ---- helpers -----------------------------------------------------------------

  private inode(ino: number): Inode {
    this.assertMounted();
    const inode = Number.isSafeInteger(ino) ? this.inodes.byIno.get(ino) : undefined;
    if (!inode) throw new NotFoundError(`no inode ${ino}`);
    return inode;
  }

  private info(inode: Inode): FileInfo {
    return {
      ino: inode.ino, name: inode.name, sizeBytes: inode.sizeBytes, blocks: inode.blocks,
      generation: inode.generation, mtimeMs: inode.mtimeMs, ctimeMs: inode.ctimeMs,
    };
  }

  private touch(inode: Inode): void {
    inode.mtimeMs = inode.ctimeMs = Date.now();
    this.inodes.persist(inode);
  }

  private lockOf(ino: number): RwLock {
    let lock = this.locks.get(ino);
    if (!lock) this.locks.set(ino, (lock = new RwLock()));
    return lock;
  }

  private checkRange(offsetBytes: number, lengthBytes: number): void {
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0) throw new InvalidArgumentError(`offset ${offsetBytes} is not a non-negative safe integer`);
    if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0) throw new InvalidArgumentError(`length ${lengthBytes} is not a non-negative safe integer`);
    if (offsetBytes > FILE_MAX_BYTES) throw new FileTooBigError(offsetBytes, FILE_MAX_BYTES);
  }

  private async flushPfns(pfns: number[]): Promise<void> {
    const runs = coalesceRuns(pfns.map((pfn) => ({ pfn, count: 1 })));
    await Promise.all(runs.map((r) => this.storage.flush(r.pfn * BLOCK_SIZE, r.count * BLOCK_SIZE)));
  }

  private assertMounted(): void {
    if (!this.mounted) throw new InvalidArgumentError('file system is unmounted');
  }
}
