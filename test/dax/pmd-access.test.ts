/**
 * Loads and stores through PAGE and PMD tokens are held to the token's own range by the
 * engine (S7), exactly as the rpc edge holds every access to a PMD (server/rpc/validate.ts
 * mappingAccess: offset < PMD_BYTES and offset + length <= PMD_BYTES): a PAGE token takes
 * offset < BLOCK_SIZE and offset + length <= BLOCK_SIZE, a PMD token the same in PMD_BYTES;
 * anything else is EINVAL, a zero-length access at the end included.
 */
import assert from 'node:assert/strict';
import { PMD_PAGES } from '../../server/limits';
import { expectCode, freshDax, sparseFile } from '../support/dax-volume';
import { MiB, PAGE } from '../support/units';
import { TestOwner } from '../support/test-owner';

const PMD_BYTES = PMD_PAGES * PAGE;

describe('dax PMD entries: access ranges of PAGE and PMD tokens', function () {
  it('regression: a zero-length Load or Store at the end of the token\'s range is EINVAL, as at the edge (mapping-bad-input: Load at offset 4096)', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 4 * MiB);
    const a = new TestOwner('a');
    const page = (await v.dax.fault(a, ino, 3, 'WRITE', false)).pte!;
    const pmd = (await v.dax.fault(a, ino, PMD_PAGES, 'WRITE', false, 'PMD')).pte!;
    assert.deepEqual([page.order, pmd.order], [0, 9]);
    for (const [t, size] of [[page.token, PAGE], [pmd.token, PMD_BYTES]] as const) {
      await expectCode(() => v.dax.load(a, t, size, 0), 'EINVAL', `load at ${size}, length 0`);
      await expectCode(() => v.dax.store(a, t, size, Buffer.alloc(0)), 'EINVAL', `store at ${size}, length 0`);
      // Past PMD_BYTES the edge refuses it (the engine asserts): only a PAGE token's end here.
      if (size === PAGE) await expectCode(() => v.dax.load(a, t, size - 1, 2), 'EINVAL', `load crossing ${size}`);
      await expectCode(() => v.dax.storeFaultIfStale(a, t, size, Buffer.alloc(0), { ino, pgoff: t === page.token ? 3 : PMD_PAGES, sync: false }), 'EINVAL', `fault_if_stale store at ${size}`);
      assert.equal(v.dax.load(a, t, size - 1, 1).length, 1, 'the last byte');
      assert.equal(v.dax.load(a, t, size - 1, 0).length, 0, 'a zero-length access inside the range');
    }
    // A stale token's fault_if_stale store stays within the target page.
    await expectCode(() => v.dax.storeFaultIfStale(a, '', PAGE, Buffer.alloc(0), { ino, pgoff: 9, sync: false }), 'EINVAL', 'fault_if_stale store at 4096 through no token');
  });
});
