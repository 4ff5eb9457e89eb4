/**
 * Mount-time recovery: replays the transaction in the journal zone if it is valid
 * (idempotent: see format.ts), discards it if torn or corrupt. Reports what it did so
 * mount can log it and fsck can show it.
 */
import { BLOCK_SIZE } from '../limits';
import { CorruptError } from '../errors';
import type { BlockStorage } from '../media/storage';
import type { Layout } from '../media/layout';
import { decodeTransaction } from './format';

export type ReplayResult =
  | { state: 'empty'; nextSeq: number }
  | { state: 'discarded'; reason: string; nextSeq: number }
  | { state: 'replayed'; seq: number; blocks: number; nextSeq: number };

/** A journalled block must be metadata: inode table, bitmaps, or a block-map block in data. */
export function isJournalableBlock(layout: Layout, pfn: number): boolean {
  return pfn >= layout.inodes.start && pfn < layout.volumeBlocks;
}

/** Decodes the journal; the images of a valid transaction, without applying them. */
export function readJournal(storage: BlockStorage, layout: Layout): ReturnType<typeof decodeTransaction> {
  const zone = storage.view(layout.journal.start * BLOCK_SIZE, layout.journal.count * BLOCK_SIZE);
  const tx = decodeTransaction(zone);
  if (tx.state === 'valid') {
    const bad = tx.homes.find((h) => !isJournalableBlock(layout, h));
    // A checksum-valid transaction naming a non-metadata block is not a torn write: it is
    // corruption (or a bug), and applying it could overwrite the superblock.
    if (bad !== undefined) throw new CorruptError(`journal transaction ${tx.seq} names block ${bad} outside the metadata zones`);
  }
  return tx;
}

export async function replayJournal(storage: BlockStorage, layout: Layout): Promise<ReplayResult> {
  const tx = readJournal(storage, layout);
  if (tx.state === 'empty') return { state: 'empty', nextSeq: 1 };
  if (tx.state === 'discarded') return { state: 'discarded', reason: tx.reason, nextSeq: Number.isSafeInteger(tx.seq) ? tx.seq + 1 : 1 };
  for (let i = 0; i < tx.homes.length; i++) {
    storage.view(tx.homes[i] * BLOCK_SIZE, BLOCK_SIZE).set(tx.images[i]);
  }
  await Promise.all(tx.homes.map((h) => storage.flush(h * BLOCK_SIZE, BLOCK_SIZE)));
  return { state: 'replayed', seq: tx.seq, blocks: tx.homes.length, nextSeq: tx.seq + 1 };
}
