/**
 * SDK unary calls (client/unary-call.ts): retried on UNAVAILABLE only when idempotent,
 * never on other codes, with a deadline on every attempt; failures become
 * DaxClientError carrying the daxd-reason trailer.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { DaxClientError } from '../../client/errors';
import { callUnary, type UnaryMethod } from '../../client/unary-call';

/** A method that fails with the given codes in turn, then answers 'ok'. */
function flaky(codes: grpc.status[]): { method: UnaryMethod<object, string>; calls: number; deadlines: Date[] } {
  const state = { calls: 0, deadlines: [] as Date[], method: null as unknown as UnaryMethod<object, string> };
  state.method = (_req, _md, options, callback) => {
    const code = codes[state.calls++];
    state.deadlines.push(options.deadline as Date);
    const metadata = new grpc.Metadata();
    metadata.set('daxd-reason', 'ESHUTDOWN');
    setImmediate(() => (code === undefined
      ? callback(null, 'ok')
      : callback(Object.assign(new Error('x'), { code, details: 'down', metadata }))));
    return {} as grpc.ClientUnaryCall;
  };
  return state;
}

const options = { deadlineMs: 5_000, retries: 3, backoffMs: 1 };

describe('SDK unary calls: deadlines and retries', function () {
  it('an idempotent call is retried on UNAVAILABLE until it succeeds', async function () {
    const m = flaky([grpc.status.UNAVAILABLE, grpc.status.UNAVAILABLE]);
    assert.equal(await callUnary(m.method, {}, { ...options, idempotent: true }), 'ok');
    assert.equal(m.calls, 3);
    assert.ok(m.deadlines.every((d) => d instanceof Date && d.getTime() > Date.now()));
  });

  it('a non-idempotent call is not retried', async function () {
    const m = flaky([grpc.status.UNAVAILABLE]);
    await assert.rejects(callUnary(m.method, {}, { ...options, idempotent: false }),
      (e: DaxClientError) => e.code === grpc.status.UNAVAILABLE && e.reason === 'ESHUTDOWN');
    assert.equal(m.calls, 1);
  });

  it('other codes are never retried; retries stop after the limit', async function () {
    const notFound = flaky([grpc.status.NOT_FOUND]);
    await assert.rejects(callUnary(notFound.method, {}, { ...options, idempotent: true }), { code: grpc.status.NOT_FOUND });
    assert.equal(notFound.calls, 1);
    const down = flaky([14, 14, 14, 14, 14]);
    await assert.rejects(callUnary(down.method, {}, { ...options, idempotent: true }), { code: grpc.status.UNAVAILABLE });
    assert.equal(down.calls, 4);
  });
});
