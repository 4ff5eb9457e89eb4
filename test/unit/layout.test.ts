import assert from 'node:assert/strict';
import { BLOCK_SIZE, VOLUME_BYTES_MAX, VOLUME_BYTES_MIN } from '../../server/limits';
import { DaxError } from '../../server/errors';
import { assertLayout, BITS_PER_BLOCK, computeLayout, INODES_PER_BLOCK, Layout, SUPERBLOCK_PFNS, validateVolumeSize } from '../../server/media/layout';
import { GiB, MiB } from '../support/units';

const TiB = 1024 * GiB;

function isCode(code: string): (err: unknown) => boolean {
  return (err) => err instanceof DaxError && err.code === code;
}

/** Every property the zone table promises, checked independently of assertLayout. */
function checkZones(layout: Layout, sizeBytes: number): void {
  assert.equal(layout.volumeBlocks, sizeBytes / BLOCK_SIZE);
  const names = layout.zones.map((z) => z.name);
  assert.deepEqual(names, ['zero', 'superblock', 'journal', 'inodes', 'inodeBitmap', 'blockBitmap', 'data']);
  let end = 0;
  for (const z of layout.zones) {
    assert.ok(Number.isSafeInteger(z.start) && Number.isSafeInteger(z.count), `${z.name} not integral`);
    assert.ok(z.start >= end, `${z.name} starts at ${z.start}, before the previous zone's end ${end}`);
    assert.equal(z.start % z.alignBlocks, 0, `${z.name} start ${z.start} not aligned to ${z.alignBlocks}`);
    assert.ok(z.count > 0, `${z.name} is empty`);
    end = z.start + z.count;
    assert.ok(end <= layout.volumeBlocks, `${z.name} ends at ${end}, past the volume (${layout.volumeBlocks})`);
  }
  assert.equal(end, layout.volumeBlocks, 'the data zone runs to the end of the volume');
  assert.deepEqual(layout.zones[0], { name: 'zero', start: 0, count: 1, alignBlocks: 1 });
  assert.deepEqual(SUPERBLOCK_PFNS, [1, 2]);
  assert.equal(layout.zones[1].start, 1);
  assert.equal(layout.zones[1].count, 2);
  // Data is 2 MiB aligned (PMD-sized faults), and never contains pfn 0 (the zero page).
  assert.equal((layout.data.start * BLOCK_SIZE) % (2 * MiB), 0);
  assert.ok(layout.data.start > 0);
  // Bitmaps cover what they describe; the inode table holds maxFiles slots.
  assert.ok(layout.blockBitmap.count * BITS_PER_BLOCK >= layout.data.count);
  assert.ok(layout.inodeBitmap.count * BITS_PER_BLOCK >= layout.maxFiles);
  assert.equal(layout.inodes.count * INODES_PER_BLOCK, layout.maxFiles);
  // Journal: between 256 and 16384 blocks.
  assert.ok(layout.journal.count >= 256 && layout.journal.count <= 16384);
  // The named zones are the ones in the table.
  for (const key of ['journal', 'inodes', 'inodeBitmap', 'blockBitmap', 'data'] as const) {
    assert.equal(layout[key], layout.zones.find((z) => z.name === key));
  }
}

describe('layout', () => {
  for (const [label, sizeBytes] of [['16 MiB', 16 * MiB], ['1 GiB', GiB], ['1 TiB', TiB], ['1 TiB - 4 KiB', TiB - BLOCK_SIZE], ['16 MiB + 4 KiB', 16 * MiB + BLOCK_SIZE]] as const) {
    it(`zones of a ${label} volume are ordered, aligned and inside the volume`, () => {
      const layout = computeLayout(sizeBytes);
      checkZones(layout, sizeBytes);
      assert.doesNotThrow(() => assertLayout(layout));
    });
  }

  it('the extremes get the documented journal and inode-table sizes', () => {
    const small = computeLayout(16 * MiB);
    assert.equal(small.journal.count, 256);
    assert.equal(small.maxFiles, 1024);
    assert.equal(small.data.start, 512);
    const large = computeLayout(TiB);
    assert.equal(large.journal.count, 16384);
    assert.equal(large.maxFiles, 1 << 20);
  });

  it('is a pure function of the size', () => {
    assert.deepEqual(computeLayout(GiB), computeLayout(GiB));
  });

  it('refuses sizes outside [16 MiB, 1 TiB] with EINVAL', () => {
    assert.equal(VOLUME_BYTES_MIN, 16 * MiB);
    assert.equal(VOLUME_BYTES_MAX, TiB);
    for (const size of [0, BLOCK_SIZE, 16 * MiB - BLOCK_SIZE, TiB + BLOCK_SIZE, 2 * TiB]) {
      assert.throws(() => computeLayout(size), isCode('EINVAL'), `size ${size}`);
      assert.throws(() => validateVolumeSize(size), isCode('EINVAL'), `size ${size}`);
    }
  });

  it('refuses unaligned and non-integer sizes with EINVAL', () => {
    for (const size of [16 * MiB + 1, 16 * MiB + 512, GiB - 1, 16.5 * MiB + 0.5, Number.NaN, -16 * MiB, Number.MAX_SAFE_INTEGER + 1]) {
      assert.throws(() => computeLayout(size), isCode('EINVAL'), `size ${size}`);
    }
  });

  it('assertLayout catches a misaligned, overlapping or short zone table', () => {
    const good = computeLayout(16 * MiB);
    const withZone = (name: string, patch: object): Layout => ({
      ...good, zones: good.zones.map((z) => (z.name === name ? { ...z, ...patch } : z)),
    });
    assert.throws(() => assertLayout(withZone('data', { start: good.data.start + 1, count: good.data.count - 1 })), assert.AssertionError);
    assert.throws(() => assertLayout(withZone('inodes', { start: good.journal.start })), assert.AssertionError);
    assert.throws(() => assertLayout(withZone('data', { count: good.data.count - 1 })), assert.AssertionError);
  });
});
