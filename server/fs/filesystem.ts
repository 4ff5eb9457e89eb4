/**
 * The file layer: a flat namespace of files with block maps on one volume.
 *
 * Locking: the inode lock (RwLock per inode) is taken here, exclusive for write,
 * truncate, fallocate and unlink (lock order 1 of docs/ARCHITECTURE.md). Read is synchronous
 * and takes no lock. Layout hooks (S3, S4) are called with the inode lock held; the
 * layer above takes its mmap and entry locks inside them.
 *
 * Awaits inside a critical section (other requests run there): the layout hooks, journal
 * commits between steps of a long change (file-layout.ts), and flushes for fsync/sync.
 */
import assert from 'node:assert';
import { DEFAULT_LAYOUT_BREAK, FALLOCATE_MODE_RULES } from './types';
import { BLOCK_SIZE, FILE_BYTES_MAX, FREE_COMMIT_DELAY_MS, IO_BYTES_MAX } from '../limits';
import { ExistsError, FileTooBigError, InvalidArgumentError, LimitError, NotFoundError } from '../errors';
import type { BlockStorage } from '../media/storage';
import type { Layout } from '../media/layout';
import { readSuperblock, Superblock, writeSuperblock } from '../media/superblock';
import { Journal } from '../journal/journal';
import { replayJournal, ReplayResult } from '../journal/replay';
import { coalesceRuns } from '../journal/transaction';
import { Allocator } from '../alloc/allocator';
import { BlockMap, entryPfn, entryState, makeEntry, STATE_UNWRITTEN, STATE_WRITTEN, toPageMapping } from './block-map';
import { blockView, DataContext, readData, readDataInto, reserve, writeData } from './file-data';
import { removeBlocks, zeroPastEof } from './file-layout';
import { FALLOCATE_HANDLERS, type FallocateEnv, type FallocateRange } from './fallocate-modes';
import { truncateFile } from './truncate';
import { allocatePmd, pmdExtent, type PmdAllocation, type PmdExtent } from './pmd-extent';
import { Inode, INODE_LINKED, INODE_ORPHAN } from './inode';
import { InodeTable } from './inode-table';
import { Namespace, validateName } from './namespace';
import { quoted } from '../excerpt';
import { RwLock } from './rw-lock';
import { UnwrittenCount } from './unwritten-count';
import type {
  FallocateMode, LayoutBreakOptions, FileInfo, FileSystemApi, LayoutHooks, ListPage, MountOptions, PageMapping, VolumeInfo, WriteResult,
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
  private readonly unwritten = new UnwrittenCount();
  private readonly scheduleFreeCommit: (commit: () => void, delayMs: number) => () => void;
  /** Cancels the armed pending-free commit (armFreeCommit), if one is armed. */
  private cancelFreeCommit: (() => void) | undefined;

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
    map.onUnwritten = (ino, delta) => this.unwritten.delta(ino, delta);
    this.scheduleFreeCommit = opts.scheduleFreeCommit ?? ((commit, delayMs) => {
      const t = setTimeout(commit, delayMs);
      t.unref();
      return () => clearTimeout(t);
    });
    journal.onFreed = () => this.armFreeCommit();
  }

  /**
   * Freed blocks are reusable, and StatVolume counts them free, only once their transaction
   * commits. A change that frees blocks and nothing after it may leave the transaction
   * running: commit it within FREE_COMMIT_DELAY_MS of the first pending free. One timer at
   * a time; a commit that happened meanwhile leaves it nothing to do.
   */
  private armFreeCommit(): void {
    if (this.cancelFreeCommit || !this.mounted) return;
    this.cancelFreeCommit = this.scheduleFreeCommit(() => {
      this.cancelFreeCommit = undefined;
      if (!this.mounted || this.alloc.pendingFreeBlocks === 0) return;
      // A failed commit aborts the journal; the next call reports EIO. Nobody awaits this one.
      this.journal.commit().catch(() => undefined);
    }, FREE_COMMIT_DELAY_MS);
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
    // Mount read the whole block bitmap and every used inode slot once (~80 MiB at 1 TiB
    // with 100k files); later calls touch a few of those pages. Let them leave the RSS.
    storage.dropResident?.(0, layout.data.start * BLOCK_SIZE);
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
      if (exclusive) throw new ExistsError(`file ${quoted(name)} exists (inode ${existing})`);
      const found = this.info(this.inode(existing));
      // Durable on return (proto): the create that made it may still be committing.
      await this.journal.commit();
      return found;
    }
    const inode = this.inodes.allocate(name, Date.now());
    this.ns.add(name, inode.ino);
    const created = this.info(inode);
    // Durable on return (proto: Create commits the journal).
    await this.journal.commit();
    return created;
  }

  lookup(name: string): FileInfo {
    validateName(name);
    const ino = this.ns.get(name);
    if (ino === undefined) throw new NotFoundError(`no file named ${quoted(name)}`);
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
    if (ino === undefined) throw new NotFoundError(`no file named ${quoted(name)}`);
    await this.removeName(name, ino, async (remove) => {
      remove();
      return true;
    });
  }

  /**
   * A cluster drain's switch (server/cluster/drain.ts): holds the inode lock exclusive (no
   * write, truncate, fallocate or unlink) and breaks the layout of the whole file (reason
   * MOVED, S4: PTEs revoked, pins waited for or recalled per `opts`, no new fault or pin),
   * then runs `switched`. When it answers true the name is removed as by unlink, under
   * both locks still, so no change reaches the file between the switch and the removal.
   * Lock order: inode lock, then mmap lock (as truncate).
   */
  async moveOut(name: string, ino: number, opts: LayoutBreakOptions, switched: () => Promise<boolean>): Promise<boolean> {
    return this.removeName(name, ino, async (remove) => {
      const release = await this.hooks.breakLayout(ino, 0, Number.MAX_SAFE_INTEGER, 'MOVED', opts);
      try {
        if (!(await switched())) return false;
        remove();
        return true;
      } finally {
        release();
      }
    });
  }

  /** Under the inode lock (exclusive), `under` may remove the name (orphaning the inode); then the inode goes if unused. */
  private async removeName(name: string, ino: number, under: (remove: () => void) => Promise<boolean>): Promise<boolean> {
    await this.journal.makeRoom();
    const unlock = await this.lockOf(ino).lockExclusive();
    try {
      const inode = this.inode(ino);
      if (inode.name !== name || this.ns.get(name) !== ino) throw new NotFoundError(`no file named ${quoted(name)}`);
      const removed = await under(() => {
        this.ns.remove(name);
        inode.name = '';
        inode.state = INODE_ORPHAN;
        inode.ctimeMs = Date.now();
        this.inodes.persist(inode);
      });
      if (!removed) return false;
    } finally {
      unlock();
    }
    this.hooks.unlinked?.(ino);
    const inode = this.inodes.byIno.get(ino);
    if (inode && inode.users === 0) await this.destroy(inode);
    return true;
  }

  /** How many times the inode changed since mount (in memory): equal counts, no write(2), truncate, fallocate or allocation in between. */
  changeCount(ino: number): number {
    return this.inodes.changes.get(this.inode(ino)) ?? 0;
  }

  /**
   * True once unlink removed the file's name (an orphan kept by its users until release).
   * The layer above asks here rather than guess from the name: the inode's state is what
   * unlink changes and what mount frees orphans by.
   */
  isUnlinked(ino: number): boolean {
    return this.inode(ino).state === INODE_ORPHAN;
  }

  /** A user (mapping, pin) keeps an unlinked inode alive until release(). */
  acquire(ino: number): Inode {
    const inode = this.inode(ino);
    // An unlinked inode nobody uses is being (or about to be) destroyed: a new mapping or
    // pin must not resurrect it, or it would map blocks that destroy() is freeing (S4).
    if (inode.state === INODE_ORPHAN && inode.users === 0) throw new NotFoundError(`inode ${ino} was unlinked`);
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
    const lock = this.lockOf(inode.ino);
    const unlock = await lock.lockExclusive();
    try {
      // Someone may have acquired it while we waited for the lock (a new mapping or pin).
      if (this.inodes.byIno.get(inode.ino) !== inode || inode.users > 0 || inode.state !== INODE_ORPHAN) return;
      await removeBlocks(this.ctx, inode, 0, Number.MAX_SAFE_INTEGER, () => {
        lock.assertHeldExclusive(unlock);
        this.inodes.persist(inode);
      });
      this.inodes.free(inode);
      await this.journal.makeRoom();
    } finally {
      unlock();
      const lock = this.locks.get(inode.ino);
      // Waiters keep the lock object alive; they find the inode gone (ENOENT).
      if (lock && !lock.held && lock.waiters === 0) this.locks.delete(inode.ino);
    }
  }

  // ---- data --------------------------------------------------------------------

  async read(ino: number, offsetBytes: number, lengthBytes: number, alloc?: (bytes: number) => Buffer): Promise<Buffer> {
    const n = this.readableBytes(ino, offsetBytes, lengthBytes);
    if (alloc === undefined) return readData(this.ctx, this.inode(ino), offsetBytes, n);
    const out = alloc(n);
    readDataInto(this.ctx, this.inode(ino), offsetBytes, n, out, 0);
    return out;
  }

  /**
   * read() into target[targetOffset ..] instead of a new Buffer (the NBD server copies
   * straight into its reply): the same checks and copy, synchronous. Returns the bytes
   * read (fewer than asked at EOF); the rest of the target range is left as it was.
   */
  readInto(ino: number, offsetBytes: number, lengthBytes: number, target: Uint8Array, targetOffset: number): number {
    const n = this.readableBytes(ino, offsetBytes, lengthBytes);
    readDataInto(this.ctx, this.inode(ino), offsetBytes, n, target, targetOffset);
    return n;
  }

  /** A read's checks; the bytes it returns (clamped to EOF). */
  private readableBytes(ino: number, offsetBytes: number, lengthBytes: number): number {
    this.checkRange(offsetBytes, lengthBytes);
    if (lengthBytes > IO_BYTES_MAX) throw new LimitError('read length', lengthBytes, IO_BYTES_MAX);
    const inode = this.inode(ino);
    return Math.max(0, Math.min(lengthBytes, inode.sizeBytes - offsetBytes));
  }

  async write(ino: number, offsetBytes: number, data: Uint8Array, sync: boolean): Promise<WriteResult> {
    this.checkRange(offsetBytes, data.length);
    if (data.length > IO_BYTES_MAX) throw new LimitError('write length', data.length, IO_BYTES_MAX);
    if (offsetBytes + data.length > FILE_BYTES_MAX) throw new FileTooBigError(offsetBytes + data.length, FILE_BYTES_MAX);
    this.inode(ino);
    const lock = this.lockOf(ino);
    const unlock = await lock.lockExclusive();
    let overwritten: number[] = [];
    let sizeBytes: number;
    try {
      const inode = this.inode(ino);
      if (data.length > 0) {
        await this.commitIfShort(Math.ceil(data.length / BLOCK_SIZE));
        // S6: a write adds a few images (inode, bitmap, map blocks) and nothing else commits
        // between writes: keep the running transaction bounded. Checked in the same
        // synchronous stretch as writeData, so concurrent writes cannot all pass at once.
        while (this.journal.runningImages >= this.journal.softLimitImages) await this.journal.commit();
        lock.assertHeldExclusive(unlock); // file-data.ts: write(2) runs under the inode lock, exclusive
        zeroPastEof(this.ctx, inode, offsetBytes + data.length);
        const outcome = writeData(this.ctx, inode, offsetBytes, data);
        overwritten = outcome.overwritten;
        if (!sync) for (const pfn of overwritten) inode.dirtyPfns.add(pfn);
        inode.sizeBytes = Math.max(inode.sizeBytes, offsetBytes + data.length);
        assert(inode.blocks >= 0 && inode.sizeBytes <= FILE_BYTES_MAX, `write left inode ${ino} with ${inode.blocks} blocks, size ${inode.sizeBytes}`);
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

  /**
   * Flushes the blocks overwritten since the last fsync, then commits. Flushes of one
   * inode run one after another: a second fsync waits for the first one's flush (and
   * fails with it), so it never returns while earlier data is still on its way (S5, S6).
   */
  async fsync(ino: number, _datasync: boolean): Promise<void> {
    await this.flushDirty(ino);
    await this.journal.commit();
  }

  /**
   * fsync's flush without its commit: the blocks overwritten or stored to since the last
   * flush (inode.dirtyPfns: write(2) overwrites, and mapped stores whose entries a layout
   * break removed while the blocks survive, S5), one flush of an inode after another.
   * Msync calls it before its commit: those stores are the file's now, in no dax entry.
   */
  async flushDirty(ino: number): Promise<void> {
    const inode = this.inode(ino);
    const pfns = [...inode.dirtyPfns];
    inode.dirtyPfns.clear();
    const prev = inode.flushTail ?? Promise.resolve();
    const mine = prev.catch(() => undefined).then(() => this.flushPfns(pfns));
    inode.flushTail = mine.catch(() => undefined);
    try {
      await mine;
    } catch (err) {
      for (const pfn of pfns) inode.dirtyPfns.add(pfn);
      throw err;
    }
    await prev;
  }

  async sync(): Promise<void> {
    await Promise.all([...this.inodes.byIno.keys()].map((ino) => this.fsync(ino, false)));
    await this.journal.commit();
  }

  /**
   * Write fault (server/dax): makes pgoff WRITTEN without the inode lock (faults never take
   * it; the caller holds the mmap lock shared and the entry lock, which exclude truncate
   * and other faults on this page: the file layer cannot see those locks, so its callers,
   * writeFault and faultForPin, assert their holds right before calling). S2: a hole gets a zeroed block, an unwritten block is
   * zeroed; either joins the ordered data of the running transaction, so the zeroes are
   * durable before the mapping commits. Synchronous: atomic with respect to write(2).
   */
  allocateForFault(ino: number, pgoff: number): { pfn: number; allocated: boolean } {
    const inode = this.inode(ino);
    const e = this.map.get(inode, pgoff);
    const state = entryState(e);
    if (state === STATE_WRITTEN) return { pfn: entryPfn(e), allocated: false };
    let pfn: number;
    if (state === STATE_UNWRITTEN) {
      // The leaf entry exists: converting it needs no map block, so no space check.
      pfn = entryPfn(e);
      blockView(this.storage, pfn).fill(0);
      this.journal.addOrdered(pfn, 1);
    } else {
      reserve(this.ctx, 1, 1);
      const prev = pgoff > 0 ? this.map.get(inode, pgoff - 1) : 0;
      pfn = this.alloc.allocate(1, prev !== 0 ? entryPfn(prev) + 1 : 0, { kind: 'zero' })[0].pfn;
      inode.blocks++;
    }
    this.map.set(inode, pgoff, makeEntry(STATE_WRITTEN, pfn));
    inode.mtimeMs = Date.now();
    this.inodes.persist(inode);
    // Postcondition (S2): the page is WRITTEN at a real block (pfn 0 is the zero page).
    assert(pfn !== 0 && this.map.get(inode, pgoff) === makeEntry(STATE_WRITTEN, pfn), `write fault of inode ${ino} pgoff ${pgoff} left it unwritten`);
    return { pfn, allocated: true };
  }

  /** What the 2 MiB at page `base` reads as, for a READ PMD fault (pmd-extent.ts; no lock, as iomap). */
  pmdExtent(ino: number, base: number): PmdExtent {
    return pmdExtent(this.ctx, this.inode(ino), base);
  }

  /** A PMD write fault's aligned extent (pmd-extent.ts), under allocateForFault's locking contract. */
  allocateForPmdFault(ino: number, base: number): PmdAllocation {
    const inode = this.inode(ino);
    return allocatePmd(this.ctx, inode, base, () => this.inodes.persist(inode));
  }

  /** A mapped page's block was written through a mapping: fsync must flush it. */
  markDirty(ino: number, pfn: number): void {
    this.inodes.byIno.get(ino)?.dirtyPfns.add(pfn);
  }

  /**
   * Keeps the running transaction bounded: commits it when it is past its soft limit, or
   * when `dataBlocks` might not fit the free space while frees await a commit (as writes
   * and fallocate do: commitIfShort). Callers that may allocate without the inode lock
   * (write faults, pins) call it first, holding no lock.
   */
  async makeRoom(dataBlocks = 1): Promise<void> {
    await this.commitIfShort(dataBlocks);
    await this.journal.makeRoom();
  }

  /** Commits the running journal transaction (MAP_SYNC faults). */
  commit(): Promise<void> {
    return this.journal.commit();
  }

  sizeOf(ino: number): number {
    return this.inode(ino).sizeBytes;
  }

  /** One page of the block map (for the dax layer and tests). */
  iomap(ino: number, pgoff: number): PageMapping {
    return toPageMapping(this.map.get(this.inode(ino), pgoff));
  }

  /**
   * Raw block-map entries of pages [first, first + count) (entryState tells HOLE, UNWRITTEN,
   * WRITTEN): the NBD server's holes and base:allocation. No lock, like read(): called in
   * the same synchronous stretch as a read, it describes exactly what that read saw.
   */
  mapRange(ino: number, first: number, count: number): Uint32Array {
    return this.map.getRange(this.inode(ino), first, count);
  }

  // ---- size and layout ---------------------------------------------------------

  async truncate(ino: number, sizeBytes: number, opts: LayoutBreakOptions = DEFAULT_LAYOUT_BREAK): Promise<void> {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new InvalidArgumentError(`size ${sizeBytes} is not a non-negative integer`);
    if (sizeBytes > FILE_BYTES_MAX) throw new FileTooBigError(sizeBytes, FILE_BYTES_MAX);
    await this.withLayoutLock(ino, (inode, persist) => truncateFile(this.layoutEnv, ino, inode, sizeBytes, opts, persist));
  }

  /**
   * The edge checked the arguments (server/rpc/validate.ts fallocateRequest: length > 0,
   * alignment per FALLOCATE_MODE_RULES); in-process callers go through it too, and here
   * they are asserted. What depends on the file (a collapse must end before EOF) is
   * checked by the mode's handler. The offset range (checkRange, EFBIG) and an unknown
   * mode (EINVAL, after ENOENT) stay refused here too, as for read, write and truncate:
   * in-process callers pass plain numbers and strings.
   */
  async fallocate(ino: number, mode: FallocateMode, offsetBytes: number, lengthBytes: number, opts: LayoutBreakOptions = DEFAULT_LAYOUT_BREAK): Promise<void> {
    this.checkRange(offsetBytes, lengthBytes);
    assert(lengthBytes > 0, 'fallocate of length 0 reached the engine unchecked');
    const end = offsetBytes + lengthBytes;
    if (end > FILE_BYTES_MAX) throw new FileTooBigError(end, FILE_BYTES_MAX);
    const rules = Object.hasOwn(FALLOCATE_MODE_RULES, mode) ? FALLOCATE_MODE_RULES[mode] : undefined;
    assert(!rules?.pageAligned || (offsetBytes % BLOCK_SIZE === 0 && lengthBytes % BLOCK_SIZE === 0),
      `unaligned ${mode} (offset ${offsetBytes}, length ${lengthBytes}) reached the engine unchecked`);
    await this.withLayoutLock(ino, async (inode, persist) => {
      if (!rules) throw new InvalidArgumentError(`unknown fallocate mode ${String(mode)}`);
      await this.commitIfShort(Math.ceil(lengthBytes / BLOCK_SIZE));
      const range: FallocateRange = {
        ino, inode, mode, offsetBytes, lengthBytes, end, opts,
        first: Math.floor(offsetBytes / BLOCK_SIZE), last: Math.floor((end - 1) / BLOCK_SIZE), persist,
      };
      await FALLOCATE_HANDLERS[mode](this.layoutEnv, range);
      this.touch(inode);
    });
  }

  /**
   * Blocks freed by uncommitted transactions (an unlink, a truncate) become allocatable at
   * the next commit: when a change may need more than is free, commit first rather than
   * answer ENOSPC with space about to come back. `dataBlocks` plus a margin for map blocks.
   */
  private async commitIfShort(dataBlocks: number): Promise<void> {
    if (dataBlocks + 16 > this.alloc.freeBlocks && this.alloc.pendingFreeBlocks > 0) await this.journal.commit();
  }

  /**
   * Runs a layout change under the inode lock, exclusive. `persist` writes the inode, and
   * first asserts that this change still holds the lock: file-layout.ts's steps (which
   * await between them) persist after each one, so each step checks its caller's lock.
   */
  /** What truncate and the fallocate handlers may use of the file layer. */
  private get layoutEnv(): FallocateEnv {
    return { ctx: this.ctx, journal: this.journal, hooks: this.hooks, touch: (i) => this.touch(i) };
  }

  private async withLayoutLock(ino: number, fn: (inode: Inode, persist: () => void) => Promise<void>): Promise<void> {
    this.inode(ino);
    const lock = this.lockOf(ino);
    const unlock = await lock.lockExclusive();
    try {
      // S6: as in write(), keep the running transaction bounded (each change touches the inode).
      while (this.journal.runningImages >= this.journal.softLimitImages) await this.journal.commit();
      const inode = this.inode(ino);
      await fn(inode, () => {
        lock.assertHeldExclusive(unlock);
        this.inodes.persist(inode);
      });
    } finally {
      unlock();
    }
  }

  // ---- volume ------------------------------------------------------------------

  statVolume(): VolumeInfo {
    const free = this.alloc.freeBlocks;
    return {
      blockSize: BLOCK_SIZE, blocksTotal: this.layout.data.count, blocksFree: free, blocksPendingFree: this.alloc.pendingFreeBlocks, blocksUsed: this.layout.data.count - free,
      files: this.ns.size, maxFiles: this.layout.maxFiles - 1, maxFileSizeBytes: FILE_BYTES_MAX,
      uuid: Buffer.from(this.sb.uuid).toString('hex'), formatVersion: this.sb.version,
      journalBlocks: this.layout.journal.count, sizeBytes: this.layout.volumeBlocks * BLOCK_SIZE,
    };
  }

  /**
   * Data blocks preallocated and not written yet (UNWRITTEN), or null while the first
   * count after mount runs in the background (unwritten-count.ts). O(1) after that.
   */
  unwrittenBlocks(): number | null {
    this.assertMounted();
    return this.unwritten.read(this.inodes.byIno, this.map);
  }

  /** Final sync, clean flag, unmap. The FileSystem is unusable afterwards. */
  async unmount(): Promise<void> {
    if (!this.mounted) return;
    this.cancelFreeCommit?.();
    this.cancelFreeCommit = undefined;
    this.unwritten.stop();
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
    if (offsetBytes > FILE_BYTES_MAX) throw new FileTooBigError(offsetBytes, FILE_BYTES_MAX);
  }

  private async flushPfns(pfns: number[]): Promise<void> {
    const runs = coalesceRuns(pfns.map((pfn) => ({ pfn, count: 1 })));
    await Promise.all(runs.map((r) => this.storage.flush(r.pfn * BLOCK_SIZE, r.count * BLOCK_SIZE)));
  }

  private assertMounted(): void {
    if (!this.mounted) throw new InvalidArgumentError('file system is unmounted');
  }
}
