/**
 * Validate once (server/rpc/validate.ts): the edge's validators are pure functions of
 * plain numbers returning the checked request the engine takes, and the engine asserts
 * what they promise instead of answering EINVAL a second time.
 */
import assert from 'node:assert/strict';
import { FALLOCATE_MODE_RULES, FALLOCATE_MODES } from '../../server/fs/types';
import { BLOCK_SIZE, FILE_BYTES_MAX, PIN_PAGES_MAX } from '../../server/limits';
import { dmaAccess, fallocateRequest, pageAccess, pinRequest } from '../../server/rpc/validate';
import { PAGE } from '../support/units';
import { freshVolume, isCode, pattern, snapshot } from './fs-fixture';

describe('checked requests: the edge checks, the engine asserts', function () {
  it('fallocateRequest: length 0 and (for pageAligned modes only) misalignment are EINVAL, past the max file size EFBIG', function () {
    for (const mode of FALLOCATE_MODES) {
      assert.throws(() => fallocateRequest(mode, 0, 0), isCode('EINVAL'), `${mode} length 0`);
      assert.throws(() => fallocateRequest(mode, FILE_BYTES_MAX - BLOCK_SIZE, 2 * BLOCK_SIZE), isCode('EFBIG'), `${mode} past max`);
      assert.throws(() => fallocateRequest(mode, -1, BLOCK_SIZE), isCode('EINVAL'), `${mode} negative offset`);
      const unaligned = () => fallocateRequest(mode, 100, BLOCK_SIZE);
      if (FALLOCATE_MODE_RULES[mode].pageAligned) assert.throws(unaligned, isCode('EINVAL'), `${mode} unaligned`);
      else assert.deepEqual(unaligned(), { mode, offset: 100, length: BLOCK_SIZE });
    }
    assert.deepEqual(fallocateRequest('COLLAPSE_RANGE', '4096', '8192'), { mode: 'COLLAPSE_RANGE', offset: 4096, length: 8192 }, 'wire strings too');
  });

  it('pinRequest: npages 0 or fractional EINVAL, over PIN_PAGES_MAX ELIMIT; page accesses stay inside one page', function () {
    assert.throws(() => pinRequest(1, 0, 0, false), isCode('EINVAL'));
    assert.throws(() => pinRequest(1, 0, 1.5, false), isCode('EINVAL'));
    assert.throws(() => pinRequest(1, 0, PIN_PAGES_MAX + 1, true), isCode('ELIMIT'));
    assert.deepEqual(pinRequest('7', '3', PIN_PAGES_MAX, true), { ino: 7, firstPgoff: 3, npages: PIN_PAGES_MAX, writable: true });
    assert.throws(() => pageAccess(PAGE - 4, 8), isCode('EINVAL'));
    assert.throws(() => pageAccess(0, -1), isCode('EINVAL'));
    assert.throws(() => dmaAccess(-1, 0, 1), isCode('EINVAL'));
    assert.throws(() => dmaAccess(0, PAGE, 1), isCode('EINVAL'));
    assert.deepEqual(dmaAccess(2, '4000', 96), { page: 2, offset: 4000, length: 96 });
  });

  it('the engine asserts what the edge checked: an unchecked fallocate is a bug (AssertionError), and changes nothing', async function () {
    const { fs } = await freshVolume();
    const f = await fs.create('f', true);
    await fs.write(f.ino, 0, pattern(4 * PAGE, 1), false);
    const before = await snapshot(fs, f.ino);
    await assert.rejects(fs.fallocate(f.ino, 'ALLOCATE', 0, 0), { code: 'ERR_ASSERTION' });
    await assert.rejects(fs.fallocate(f.ino, 'COLLAPSE_RANGE', 100, PAGE), { code: 'ERR_ASSERTION' });
    assert.deepEqual(await snapshot(fs, f.ino), before);
  });
});
