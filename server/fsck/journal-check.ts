/**
 * The journal as mount would treat it: a valid transaction is laid over its home blocks
 * (fsck checks the volume as mount will leave it after replay, without writing); a torn
 * or corrupt one is discarded, which is the legal leftover of a crash in the middle of a
 * commit (a note in info.journal, not a finding). A checksum-valid transaction that mount
 * refuses is a finding.
 */
import { DaxError } from '../errors';
import type { BlockStorage } from '../media/storage';
import type { Layout } from '../media/layout';
import { readJournal } from '../journal/replay';
import type { OverlayReader } from './overlay';
import { reasonOf, type FindingLog, type FsckInfo } from './report';

/**
 * Decodes the journal and lays a valid transaction over `reader`. Returns the homes that
 * lie in the data zone: each must be a block-map block of the replayed volume (checked
 * once the maps are walked), or replay would overwrite file data.
 */
export function checkJournal(storage: BlockStorage, layout: Layout, reader: OverlayReader, log: FindingLog, info: FsckInfo): number[] {
  let tx: ReturnType<typeof readJournal>;
  try {
    tx = readJournal(storage, layout);
  } catch (err) {
    if (!(err instanceof DaxError)) throw err;
    if (err.code === 'EVERSION') {
      info.journal = `unknown version: ${reasonOf(err)}`;
      log.add('JOURNAL_VERSION', `${reasonOf(err)}: mount refuses the volume (EVERSION)`);
      return [];
    }
    info.journal = `corrupt: ${reasonOf(err)}`;
    log.add('JOURNAL_CORRUPT', `${reasonOf(err)}: mount refuses the volume (ECORRUPT)`);
    return [];
  }
  if (tx.state === 'empty') {
    info.journal = 'empty';
    return [];
  }
  if (tx.state === 'discarded') {
    info.journal = `discarded: ${tx.reason}`;
    return [];
  }
  info.journal = `valid seq ${tx.seq} (${tx.homes.length} blocks)`;
  const seen = new Set<number>();
  tx.homes.forEach((home, i) => {
    if (seen.has(home)) log.add('JOURNAL_CORRUPT', `journal transaction ${tx.seq} logs block ${home} twice (descriptor ${i})`);
    seen.add(home);
    reader.lay(home, tx.images[i]);
  });
  const homesInData: number[] = [];
  for (const home of seen) {
    if (home >= layout.data.start) homesInData.push(home);
    else if (!isFixedMetadata(layout, home)) {
      log.add('JOURNAL_HOME_NOT_METADATA', `journal transaction ${tx.seq} logs block ${home}, which lies in no metadata zone (inodes, bitmaps)`);
    }
  }
  return homesInData;
}

function isFixedMetadata(layout: Layout, pfn: number): boolean {
  return [layout.inodes, layout.inodeBitmap, layout.blockBitmap].some((z) => pfn >= z.start && pfn < z.start + z.count);
}

