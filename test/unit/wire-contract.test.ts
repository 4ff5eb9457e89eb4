/**
 * The wire module (wire/) is the one place the server and the SDK take the contract from:
 * the reasons the server's error table maps are exactly the proto's `enum Reason` (the
 * list wire/reasons.ts reads off it), and the loaded proto has the same enum.
 */
import assert from 'node:assert/strict';
import { REASONS } from '../../server/errors';
import { loadDaxdProto } from '../../wire/proto';
import { REASON_NAMES, isReason } from '../../wire/reasons';

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
});
