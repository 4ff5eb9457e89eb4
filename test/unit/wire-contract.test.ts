/**
 * The wire module (wire/) is the one place the server and the SDK take the contract from:
 * the reasons the server's error table maps are exactly the proto's `enum Reason` (the
 * list wire/reasons.ts reads off it), and the loaded proto has the same enum.
 */
import assert from 'node:assert/strict';
import { REASONS } from '../../server/errors';
import { loadDaxdProto } from '../../wire/proto';
import { REASON_NAMES, isReason } from '../../wire/reasons';
import { fromWire, int64Fields, u64ToNumber } from '../../wire/from-wire';
import type { VolumeInfo, VolumeInfo__Output } from '../../wire/generated/daxd/v1/VolumeInfo';

describe('wire contract', function () {
  it('server/errors.ts maps exactly the reasons of the wire list, in its order', function () {
    assert.deepEqual(Object.keys(REASONS), [...REASON_NAMES]);
  });

  it('the proto loaded at run time has enum Reason with REASON_UNSPECIFIED = 0 and then the wire list', function () {
    const reason = loadDaxdProto().daxd.v1.Reason as unknown as { type: { value: Array<{ name: string; number: number }> } };
    const values = reason.type.value.map((v) => [v.name, v.number]);
    assert.deepEqual(values, [['REASON_UNSPECIFIED', 0], ...REASON_NAMES.map((n, i) => [n, i + 1])]);
  });

  it('isReason knows every wire reason and nothing else', function () {
    for (const n of REASON_NAMES) assert.ok(isReason(n), n);
    for (const n of ['', 'REASON_UNSPECIFIED', 'enoent', 'EWHATEVER']) assert.equal(isReason(n), false, n);
  });

  it('fromWire: camelCase names, the proto\'s uint64 fields as numbers, the rest as decoded', function () {
    assert.deepEqual([...int64Fields('daxd.v1.VolumeInfo')].sort(), [
      'block_size', 'blocks_free', 'blocks_pending_free', 'blocks_total', 'blocks_used', 'files', 'journal_blocks',
      'max_file_size', 'max_files', 'max_io_bytes', 'max_message_bytes', 'size',
    ]);
    const decoded: VolumeInfo__Output = {
      block_size: '4096', blocks_total: '9007199254740991', blocks_free: '3', blocks_used: '4', files: '5', max_files: '6',
      max_file_size: '7', uuid: '0123', format_version: 2, journal_blocks: '8', size: '9', max_io_bytes: '10',
      max_message_bytes: '11', blocks_pending_free: '0',
    };
    const info = fromWire<VolumeInfo__Output, VolumeInfo>('daxd.v1.VolumeInfo', decoded);
    assert.deepEqual(info, {
      blockSize: 4096, blocksTotal: 2 ** 53 - 1, blocksFree: 3, blocksUsed: 4, files: 5, maxFiles: 6, maxFileSize: 7,
      uuid: '0123', formatVersion: 2, journalBlocks: 8, size: 9, maxIoBytes: 10, maxMessageBytes: 11, blocksPendingFree: 0,
    });
  });

  it('u64ToNumber refuses what is not a safe non-negative integer instead of rounding it', function () {
    assert.equal(u64ToNumber('9007199254740991'), 2 ** 53 - 1);
    for (const bad of ['9007199254740992', '18446744073709551615', '-1', '1.5', '', 'x']) assert.throws(() => u64ToNumber(bad, 'f'), RangeError, bad);
  });
});
