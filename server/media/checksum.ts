/**
 * CRC-32 (IEEE) of on-media records, computed natively by zlib (Node >= 20.15).
 * Used for the superblock, inodes and journal transactions: every one is verified after
 * every read, and a mismatch is corruption (never silently used).
 */
import zlib from 'node:zlib';

export function crc32(data: Uint8Array, seed = 0): number {
  return zlib.crc32(data, seed) >>> 0;
}
