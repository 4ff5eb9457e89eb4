/**
 * Inode slot checks (inode.ts documents the slot). A used slot (bit set in the inode
 * bitmap) must verify and decode; a free one must say FREE. Names of linked inodes are
 * checked for uniqueness through 32-bit hashes sorted in one typed array (8 bytes per
 * file, not a Map of strings), comparing the actual names only where hashes collide.
 */
import { CorruptError } from '../errors';
import { FILE_BYTES_MAX, NAME_BYTES_MAX } from '../limits';
import { crc32 } from '../media/checksum';
import { INODE_SIZE_BYTES } from '../media/layout';
import { dataView } from '../media/u64';
import { MAX_DEPTH } from '../fs/block-map';
import { decodeInode, Inode, INODE_FREE, INODE_LINKED, INODE_ORPHAN } from '../fs/inode';
import { reasonOf, type FindingLog } from './report';

const CRC_OFF = INODE_SIZE_BYTES - 4;
const NAME_OFF = 50;
/** Bytes of the slot that encodeInode leaves zero: after mapDepth, and after the name. */
const RESERVED_AFTER_DEPTH = [29, 32] as const;
/** Names are keyed by hash * INO_SPAN + ino; maxFiles never exceeds 2^20. */
const INO_SPAN = 2 ** 20;

/** Where a slot lives: inode table block and slot index (a string only when reported). */
export interface SlotPlace {
  pfn: number;
  index: number;
}

function placeOf(at: SlotPlace): string {
  return `inode table block ${at.pfn} slot ${at.index}`;
}

export function slotState(slot: Uint8Array): number {
  return dataView(slot).getUint32(0, true);
}

/** A used slot: returns the inode if it decodes (name or size problems are findings, not fatal). */
export function checkUsedSlot(ino: number, slot: Uint8Array, at: SlotPlace, log: FindingLog): Inode | null {
  const dv = dataView(slot);
  if (dv.getUint32(0, true) === INODE_FREE) {
    log.add('INODE_STATE', `inode ${ino} (${placeOf(at)}): marked used in the inode bitmap but its slot is FREE`);
    return null;
  }
  const stored = dv.getUint32(CRC_OFF, true);
  const actual = crc32(slot.subarray(0, CRC_OFF));
  if (stored !== actual) {
    log.add('INODE_CHECKSUM', `inode ${ino} (${placeOf(at)}): checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${actual.toString(16)})`);
    return null;
  }
  const state = dv.getUint32(0, true);
  if (state !== INODE_LINKED && state !== INODE_ORPHAN) {
    log.add('INODE_STATE', `inode ${ino} (${placeOf(at)}): marked used in the inode bitmap but its state is ${state} (expected ${INODE_LINKED} LINKED or ${INODE_ORPHAN} ORPHAN)`);
    return null;
  }
  let inode: Inode;
  try {
    inode = decodeInode(ino, slot);
  } catch (err) {
    if (!(err instanceof CorruptError)) throw err;
    log.add('INODE_FIELD', `${reasonOf(err)} (${placeOf(at)})`);
    return null;
  }
  checkReserved(ino, slot, log);
  checkName(ino, state, slot, log);
  if (inode.sizeBytes > FILE_BYTES_MAX) log.add('SIZE_BEYOND_MAX', `inode ${ino}: size ${inode.sizeBytes} bytes (${inode.sizeBytes} vs. max ${FILE_BYTES_MAX})`);
  if ((inode.mapRoot === 0) !== (inode.mapDepth === 0) || inode.mapDepth > MAX_DEPTH) {
    log.add('MAP_DEPTH', `inode ${ino}: map root ${inode.mapRoot} with depth ${inode.mapDepth} (root is 0 iff depth is 0, depth <= ${MAX_DEPTH})`);
  }
  return inode;
}

/** A free slot: FREE, unless the bitmap lost the bit of an inode in use. */
export function checkFreeSlot(ino: number, slot: Uint8Array, at: SlotPlace, log: FindingLog): void {
  const state = slotState(slot);
  if (state === INODE_FREE) return;
  const where = placeOf(at);
  if (state === INODE_LINKED || state === INODE_ORPHAN) {
    log.add('INODE_BITMAP_MISSING', `inode ${ino} (${where}) has state ${state === INODE_LINKED ? 'LINKED' : 'ORPHAN'} but its inode bitmap bit is clear: mount does not see it`);
  } else {
    log.add('INODE_STATE', `inode ${ino} (${where}): free in the inode bitmap but its state is ${state} (expected ${INODE_FREE} FREE)`);
  }
}

function checkReserved(ino: number, slot: Uint8Array, log: FindingLog): void {
  const nameLength = dataView(slot).getUint16(48, true);
  const ranges: Array<readonly [number, number]> = [RESERVED_AFTER_DEPTH, [NAME_OFF + Math.min(nameLength, NAME_BYTES_MAX), CRC_OFF]];
  for (const [from, to] of ranges) {
    for (let i = from; i < to; i++) {
      if (slot[i] !== 0) {
        log.add('INODE_RESERVED', `inode ${ino}: byte ${i} of the slot is 0x${slot[i].toString(16)}, expected 0 (reserved)`);
        return;
      }
    }
  }
}

function checkName(ino: number, state: number, slot: Uint8Array, log: FindingLog): void {
  const raw = Buffer.from(slot.subarray(NAME_OFF, NAME_OFF + dataView(slot).getUint16(48, true)));
  if (state === INODE_ORPHAN) {
    if (raw.length !== 0) log.add('INODE_NAME', `inode ${ino}: orphan (unlinked) but still named ${JSON.stringify(raw.toString('utf8'))}`);
    return;
  }
  const problem = nameProblem(raw);
  if (problem) log.add('INODE_NAME', `inode ${ino}: name ${JSON.stringify(raw.toString('utf8'))} ${problem}`);
}

function nameProblem(raw: Buffer): string | null {
  if (raw.length === 0 || raw.length > NAME_BYTES_MAX) return `is ${raw.length} bytes (1..${NAME_BYTES_MAX} required)`;
  if (raw.includes(0)) return 'contains a NUL byte';
  if (!Buffer.from(raw.toString('utf8'), 'utf8').equals(raw)) return 'is not valid UTF-8';
  return null;
}

/** Collects linked names by hash; reports names used twice once every inode has been seen. */
export class NameIndex {
  private keys = new Float64Array(1024);
  private n = 0;

  add(ino: number, name: string): void {
    if (this.n === this.keys.length) {
      const grown = new Float64Array(this.keys.length * 2);
      grown.set(this.keys);
      this.keys = grown;
    }
    this.keys[this.n++] = crc32(Buffer.from(name, 'utf8')) * INO_SPAN + ino;
  }

  /** `nameOf` re-reads an inode's name (only for hash collisions). */
  reportDuplicates(nameOf: (ino: number) => string, log: FindingLog): void {
    const keys = this.keys.subarray(0, this.n).sort();
    for (let i = 0; i < keys.length; ) {
      const hash = Math.floor(keys[i] / INO_SPAN);
      let j = i + 1;
      while (j < keys.length && Math.floor(keys[j] / INO_SPAN) === hash) j++;
      if (j - i > 1) reportGroup(Array.from(keys.subarray(i, j), (k) => k % INO_SPAN), nameOf, log);
      i = j;
    }
  }
}

function reportGroup(inos: number[], nameOf: (ino: number) => string, log: FindingLog): void {
  const byName = new Map<string, number[]>();
  for (const ino of inos) {
    const name = nameOf(ino);
    byName.set(name, [...(byName.get(name) ?? []), ino]);
  }
  for (const [name, list] of byName) {
    if (list.length > 1) log.add('DUPLICATE_NAME', `name ${JSON.stringify(name)} is used by inodes ${list.join(', ')}`);
  }
}
