/**
 * The metadata journal: the only writer of metadata blocks (inode table, bitmaps, block
 * maps). Metadata is never modified in place in the volume: changes go to shadow images
 * in the running transaction, and reach their home locations only after the transaction
 * is durable in the journal (S6). Readers see the newest image: running, then committing,
 * then home.
 *
 * Commit (group commit: every caller waiting on the running transaction shares one):
 *   1. flush the transaction's ordered data blocks (S2: zeroes/data before the mapping)
 *   2. write header + descriptors + images into the journal zone, flush it: committed
 *   3. checkpoint: copy the images home, flush them
 *   4. hand the freed blocks back to the allocator (reusable from now on)
 * Only one commit runs at a time; the next running transaction waits behind it.
 * A failed commit aborts the journal: every later change is refused with EIO (the
 * volume stays as the last good commit left it; mount replays).
 */
import assert from 'node:assert';
import { BLOCK_SIZE } from '../limits';
import { IoError } from '../errors';
import type { BlockStorage } from '../media/storage';
import type { Layout } from '../media/layout';
import { encodeTransaction, maxImages } from './format';
import { BlockRun, coalesceRuns, Transaction } from './transaction';

/**
 * Images other requests may add to the running transaction while a layout change's atomic
 * section is open (they interleave only at its makeRoom awaits; a write adds a few).
 */
const ATOMIC_SLACK_IMAGES = 16;
/** Commits withinOneTransaction tries to make room before it runs a change in steps. */
const ROOM_COMMITS_MAX = 8;

export interface JournalStats {
  commits: number;
  lastCommitMs: number;
  blocksLogged: number;
}

export class Journal {
  private running: Transaction;
  private committing: Transaction | null = null;
  private failure: Error | null = null;
  private readonly maxImageCount: number;
  /** Past this many images, long operations commit between their steps. */
  readonly softLimitImages: number;
  readonly stats: JournalStats = { commits: 0, lastCommitMs: 0, blocksLogged: 0 };
  /** Called after each commit (the allocator releases the transaction's freed blocks). */
  onCommitted: (tx: Transaction) => void = () => undefined;
  /** Called when a block is freed in the running transaction (schedules a commit: FREE_COMMIT_DELAY_MS). */
  onFreed: () => void = () => undefined;
  /** Called with each commit's latency (server/metrics.ts: journal commit histogram). */
  onCommitTimed: (commitMs: number) => void = () => undefined;

  constructor(private readonly storage: BlockStorage, private readonly layout: Layout, nextSeq: number) {
    // The journal zone is written and read through one view: it must sit in one chunk.
    const endBytes = (layout.journal.start + layout.journal.count) * BLOCK_SIZE;
    assert(endBytes <= storage.chunkBytes, `journal zone ends at ${endBytes}, beyond the first storage chunk (${storage.chunkBytes})`);
    this.running = new Transaction(nextSeq);
    this.maxImageCount = maxImages(layout.journal.count);
    this.softLimitImages = Math.max(16, Math.floor(this.maxImageCount / 4));
  }

  get runningSeq(): number {
    return this.running.seq;
  }

  /** Newest image of a metadata block. Read-only: write() for changes. */
  read(pfn: number): Uint8Array {
    return this.running.images.get(pfn) ?? this.committing?.images.get(pfn) ?? this.home(pfn);
  }

  /** A writable shadow of `pfn` in the running transaction (copy of its newest image). */
  write(pfn: number): Uint8Array {
    this.assertUsable();
    let img = this.running.images.get(pfn);
    if (!img) {
      img = new Uint8Array(BLOCK_SIZE);
      img.set(this.read(pfn));
      this.running.images.set(pfn, img);
    }
    return img;
  }

  /** A zeroed shadow for a block newly allocated as metadata (its home holds garbage). */
  writeNew(pfn: number): Uint8Array {
    this.assertUsable();
    const img = new Uint8Array(BLOCK_SIZE);
    this.running.images.set(pfn, img);
    return img;
  }

  /** The block was freed in the running transaction: its image must not be logged. */
  forget(pfn: number): void {
    this.running.images.delete(pfn);
  }

  addOrdered(pfn: number, count: number): void {
    this.running.ordered.push({ pfn, count });
  }

  addFreed(run: BlockRun): void {
    this.running.freed.push(run);
    this.onFreed();
  }

  /** Blocks freed by the running (uncommitted) transaction: the allocator must skip them. */
  get pendingFrees(): readonly BlockRun[] {
    return this.running.freed;
  }

  get committingFrees(): readonly BlockRun[] {
    return this.committing?.freed ?? [];
  }

  get runningImages(): number {
    return this.running.images.size;
  }

  /** Open atomic sections (beginAtomic); while > 0 the running transaction does not start committing. */
  private atomicDepth = 0;

  /** Images one transaction holds at most (the journal zone's capacity). */
  get maxImages(): number {
    return this.maxImageCount;
  }

  /**
   * Opens a section whose changes must commit in one transaction (S6: a layout change that
   * fits the journal). Until endAtomic: makeRoom does not commit, and commit() (any caller:
   * fsync, sync writes, the free-commit timer) is deferred to endAtomic. The caller makes
   * room first (the running transaction plus its bound of images fits maxImages) and awaits
   * nothing but makeRoom inside the section, so the deferral is short and cannot deadlock.
   */
  beginAtomic(): void {
    this.atomicDepth++;
  }

  endAtomic(): void {
    assert(this.atomicDepth > 0, 'endAtomic without beginAtomic');
    this.atomicDepth--;
    if (this.atomicDepth === 0 && this.running.commitRequested && !this.committing && !this.failure) this.start();
  }

  /**
   * S6: runs a layout change's mutations so that they commit in one transaction when
   * `imagesBound` (layoutImagesBound) fits one. First commits the running transaction until
   * the change fits (under the soft limit when it can, in the journal at worst), then runs
   * `fn` in a journal atomic section: the steps' makeRoom do not commit, and commits asked
   * for meanwhile (fsync, the free-commit timer) start when it ends. `fn` awaits nothing
   * but those makeRoom calls (hooks run before, commits after), so the section is short
   * and cannot wait on a commit it defers. A change bigger than one transaction runs in
   * committed steps (README: crash semantics).
   */
  async withinOneTransaction(imagesBound: number, fn: () => Promise<void>): Promise<void> {
    const need = imagesBound + ATOMIC_SLACK_IMAGES;
    const room = Math.max(this.softLimitImages, need);
    for (let i = 0; i < ROOM_COMMITS_MAX && this.runningImages > 0 && this.runningImages + need > room; i++) await this.commit();
    if (this.runningImages + need > this.maxImages) {
      await fn();
      return;
    }
    this.beginAtomic();
    try {
      await fn();
    } finally {
      this.endAtomic();
    }
  }

  /** Long operations call this between consistent steps to keep a transaction bounded. */
  async makeRoom(): Promise<void> {
    if (this.atomicDepth > 0) {
      // The section's bound was checked against the room left before it began.
      assert(this.running.images.size <= this.maxImageCount, `atomic change grew the transaction to ${this.running.images.size} images (journal holds ${this.maxImageCount})`);
      return;
    }
    if (this.running.images.size >= this.softLimitImages) await this.commit();
  }

  /** Resolves once every change made before the call is committed and checkpointed. */
  commit(): Promise<void> {
    if (this.failure) return Promise.reject(this.ioError());
    const tx = this.running;
    if (tx.empty) return this.committing ? this.committing.done : Promise.resolve();
    if (!this.committing && this.atomicDepth === 0) this.start();
    else tx.commitRequested = true;
    return tx.done;
  }

  private start(): void {
    const tx = this.running;
    assert(!this.committing, 'one commit at a time');
    assert(tx.images.size <= this.maxImageCount, `transaction of ${tx.images.size} images exceeds the journal (${this.maxImageCount})`);
    this.committing = tx;
    this.running = new Transaction(tx.seq + 1);
    this.run(tx).then(
      () => {
        this.committing = null;
        tx.resolve();
        // Callers that asked for the next transaction while this one was committing.
        if (this.running.commitRequested && this.atomicDepth === 0) this.start();
      },
      (err: Error) => {
        this.failure = err;
        this.committing = null;
        tx.reject(err);
        this.running.reject(this.ioError());
      },
    );
  }

  private async run(tx: Transaction): Promise<void> {
    const t0 = performance.now();
    await this.flushRuns(coalesceRuns(tx.ordered));
    const homes = [...tx.images.keys()].sort((a, b) => a - b);
    if (homes.length > 0) {
      const zone = this.storage.view(this.layout.journal.start * BLOCK_SIZE, this.layout.journal.count * BLOCK_SIZE);
      const blocks = encodeTransaction(zone, tx.seq, homes, homes.map((h) => tx.images.get(h)!));
      await this.storage.flush(this.layout.journal.start * BLOCK_SIZE, blocks * BLOCK_SIZE);
      for (const h of homes) this.home(h).set(tx.images.get(h)!);
      await this.flushRuns(coalesceRuns(homes.map((pfn) => ({ pfn, count: 1 }))));
    }
    this.onCommitted(tx);
    this.stats.commits += 1;
    this.stats.blocksLogged += homes.length;
    this.stats.lastCommitMs = performance.now() - t0;
    this.onCommitTimed(this.stats.lastCommitMs);
  }

  private async flushRuns(runs: BlockRun[]): Promise<void> {
    await Promise.all(runs.map((r) => this.storage.flush(r.pfn * BLOCK_SIZE, r.count * BLOCK_SIZE)));
  }

  private home(pfn: number): Uint8Array {
    return this.storage.view(pfn * BLOCK_SIZE, BLOCK_SIZE);
  }

  private assertUsable(): void {
    if (this.failure) throw this.ioError();
  }

  private ioError(): IoError {
    return new IoError(`journal aborted after a failed commit: ${this.failure?.message}; remount to recover`);
  }
}
