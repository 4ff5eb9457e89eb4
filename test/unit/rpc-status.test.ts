/**
 * The rpc layer's one error mapping and its uint64 parsing: every reason of the error
 * table reaches the wire with its own status and a daxd-reason trailer; anything else is
 * INTERNAL with a generic message, logged with its stack; uint64 strings are exact below
 * 2^53 and refused from there on.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { DaxError, REASONS, type ReasonCode } from '../../server/errors';
import { toServiceError } from '../../server/rpc/status';
import { REASON_METADATA_KEY } from '../../wire/metadata';
import { u64 } from '../../server/rpc/validate';

function capturingLog(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

describe('rpc status mapping and uint64 parsing', function () {
  it('every reason maps to its status and travels in the daxd-reason trailer', function () {
    const { log, lines } = capturingLog();
    for (const code of Object.keys(REASONS) as ReasonCode[]) {
      const err = toServiceError(new DaxError(code, 'detail'), log, 'test');
      assert.equal(err.code, REASONS[code].status, code);
      assert.notEqual(err.code, grpc.status.UNKNOWN);
      assert.deepEqual(err.metadata?.get(REASON_METADATA_KEY), [code]);
      assert.equal(err.details, `${code}: detail`);
    }
    assert.equal(lines.length, 0, 'expected errors are not logged as bugs');
  });

  it('a non-DaxError is INTERNAL with a generic message and an incident id; the stack is logged', function () {
    const { log, lines } = capturingLog();
    const err = toServiceError(new TypeError('secret internals'), log, 'Files.Read');
    assert.equal(err.code, grpc.status.INTERNAL);
    assert.equal(err.metadata?.get(REASON_METADATA_KEY).length, 0);
    assert.doesNotMatch(err.details ?? '', /secret/);
    const incident = /incident ([0-9a-f]+)/.exec(err.details ?? '')?.[1];
    assert.ok(incident);
    assert.equal(lines.length, 1);
    assert.equal(lines[0].incident, incident);
    assert.equal(lines[0].where, 'Files.Read');
    assert.match(String((lines[0].err as { stack: string }).stack), /TypeError: secret internals/);
  });

  it('u64: exact up to 2^53-1, EINVAL from 2^53 up to 2^64-1', function () {
    assert.equal(u64('0', 'x'), 0);
    assert.equal(u64('9007199254740991', 'x'), Number.MAX_SAFE_INTEGER);
    for (const bad of ['9007199254740992', '9007199254740993', '18446744073709551615', '-1', '1e3', 'abc']) {
      assert.throws(() => u64(bad, 'offset'), (e: DaxError) => e.code === 'EINVAL' && e.message.includes('offset'), bad);
    }
  });
});
