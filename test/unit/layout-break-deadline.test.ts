/**
 * How a layout change's wait learns why it ended (files-service.ts layoutBreakOf): a
 * client cancels at its own copy of the deadline, which can reach us a little before ours;
 * that is a timeout (ETIMEDOUT), while a cancel well before the deadline is ECANCELED.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import { DaxError } from '../../server/errors';
import { layoutBreakOf } from '../../server/rpc/files-service';
import { DEADLINE_CANCEL_SLACK_MS } from '../../server/rpc/limits';

/** The parts of a grpc-js server call layoutBreakOf reads: its deadline, metadata and events. */
function callWithDeadline(deadlineMs: number): grpc.ServerUnaryCall<unknown, unknown> & EventEmitter {
  const call = new EventEmitter() as grpc.ServerUnaryCall<unknown, unknown> & EventEmitter;
  Object.assign(call, { getDeadline: () => new Date(deadlineMs), metadata: { get: () => [] } });
  return call;
}

function reasonAfterCancel(deadlineMs: number): string {
  const call = callWithDeadline(deadlineMs);
  const { signal } = layoutBreakOf('WAIT', call);
  call.emit('cancelled');
  call.emit('finish');
  assert.ok(signal?.aborted, 'the cancel aborts the wait');
  assert.ok(signal.reason instanceof DaxError);
  return signal.reason.code;
}

describe('layout-break wait: cancel near the deadline', () => {
  it(`a cancel ${DEADLINE_CANCEL_SLACK_MS / 5} ms before the deadline (the client's own deadline) is ETIMEDOUT`, () => {
    assert.equal(reasonAfterCancel(Date.now() + DEADLINE_CANCEL_SLACK_MS / 5), 'ETIMEDOUT');
  });

  it('a cancel long before the deadline is ECANCELED', () => {
    assert.equal(reasonAfterCancel(Date.now() + 60_000), 'ECANCELED');
  });
});
