/**
 * The server side of the pipelined op streams (server/rpc/op-stream.ts), driven through a
 * fake call whose ops finish when the test says: the in-flight bounds pause the input,
 * a full reply side stops new ops until 'drain', results of one tick share a message,
 * half-close ends the stream once all is answered, and shutdown answers unstarted ops
 * with ESHUTDOWN and ends with UNAVAILABLE.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { InvalidArgumentError } from '../../server/errors';
import { RPC_IO_MAX_BYTES, STREAM_BYTES_IN_FLIGHT_MAX, STREAM_OPS_IN_FLIGHT_MAX } from '../../server/rpc/limits';
import { OpStream, type OpErrorWire, type OpKind } from '../../server/rpc/op-stream';

interface Op { id: number; bytes: number; fail?: boolean }
interface Result { id: number; error?: OpErrorWire; bytes?: number }
interface Req { ops: Op[] }
interface Res { results: Result[] }

/** Just enough of grpc.ServerDuplexStream for OpStream. */
class FakeCall extends EventEmitter {
  paused = false;
  writable = true;
  replies: Res[] = [];
  ended = false;
  status: { code: number; metadata: grpc.Metadata } | null = null;
  constructor() {
    super();
    this.on('error', (err: { code: number; metadata: grpc.Metadata }) => {
      this.status = err;
    });
  }
  pause(): this { this.paused = true; return this; }
  resume(): this { this.paused = false; return this; }
  isPaused(): boolean { return this.paused; }
  write(res: Res): boolean { this.replies.push(res); return this.writable; }
  end(): this { this.ended = true; return this; }
  get answered(): number[] { return this.replies.flatMap((r) => r.results.map((x) => x.id)); }
}

/** Ops that finish when the test resolves them. */
function controlledKind(): { kind: OpKind<Op, Result>; finish(id: number): void; started: number[] } {
  const pending = new Map<number, () => void>();
  const started: number[] = [];
  const kind: OpKind<Op, Result> = {
    name: 'Test.Stream',
    costBytes: (op) => op.bytes,
    run: (op) => {
      started.push(op.id);
      if (op.fail) return Promise.reject(new InvalidArgumentError(`op ${op.id} is bad`));
      return new Promise<Result>((resolve) => pending.set(op.id, () => resolve({ id: op.id, bytes: op.bytes })));
    },
    failed: (op, error) => ({ id: op.id, error }),
    replyBytes: (result) => result.bytes ?? 0,
  };
  return { kind, started, finish: (id) => { pending.get(id)?.(); pending.delete(id); } };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
const log = pino({ level: 'silent' });

function setup(): { call: FakeCall; ctl: ReturnType<typeof controlledKind>; stream: OpStream<Req, Res, Op, Result> } {
  const call = new FakeCall();
  const ctl = controlledKind();
  const stream = new OpStream<Req, Res, Op, Result>(
    call as unknown as grpc.ServerDuplexStream<Req, Res>, ctl.kind,
    { opsOf: (req) => req.ops, reply: (results) => ({ results }) }, log, () => undefined,
  );
  return { call, ctl, stream };
}

describe('server op stream: pipelining and flow control', function () {
  it('ops of one message run concurrently and their results share one reply', async function () {
    const { call, ctl } = setup();
    call.emit('data', { ops: [1, 2, 3].map((id) => ({ id, bytes: 10 })) });
    assert.deepEqual(ctl.started, [1, 2, 3]);
    [3, 1, 2].forEach(ctl.finish);
    await tick();
    assert.equal(call.replies.length, 1);
    assert.deepEqual(call.answered, [3, 1, 2]);
  });

  it('at STREAM_OPS_IN_FLIGHT_MAX ops the input pauses; it resumes as ops finish', async function () {
    const { call, ctl } = setup();
    const n = STREAM_OPS_IN_FLIGHT_MAX + 5;
    call.emit('data', { ops: Array.from({ length: STREAM_OPS_IN_FLIGHT_MAX }, (_, id) => ({ id, bytes: 1 })) });
    call.emit('data', { ops: Array.from({ length: 5 }, (_, i) => ({ id: STREAM_OPS_IN_FLIGHT_MAX + i, bytes: 1 })) });
    assert.equal(ctl.started.length, STREAM_OPS_IN_FLIGHT_MAX);
    assert.equal(call.paused, true);
    for (let id = 0; id < 5; id++) ctl.finish(id);
    await tick();
    assert.equal(ctl.started.length, n);
    assert.equal(call.paused, false);
  });

  it('at STREAM_BYTES_IN_FLIGHT_MAX bytes the input pauses (one op always fits)', async function () {
    const { call, ctl } = setup();
    call.emit('data', { ops: [{ id: 1, bytes: STREAM_BYTES_IN_FLIGHT_MAX }, { id: 2, bytes: 1 }] });
    assert.deepEqual(ctl.started, [1]);
    assert.equal(call.paused, true);
    ctl.finish(1);
    await tick();
    assert.deepEqual(ctl.started, [1, 2]);
  });

  it('a reply the transport cannot take stops new ops until drain', async function () {
    const { call, ctl } = setup();
    call.writable = false;
    call.emit('data', { ops: [{ id: 1, bytes: 1 }] });
    ctl.finish(1);
    await tick();
    assert.equal(call.replies.length, 1);
    call.emit('data', { ops: [{ id: 2, bytes: 1 }] });
    assert.deepEqual(ctl.started, [1], 'op 2 waits for drain');
    assert.equal(call.paused, true);
    call.writable = true;
    call.emit('drain');
    assert.deepEqual(ctl.started, [1, 2]);
  });

  it('a failing op is answered with its error; the stream goes on, and ends OK after half-close', async function () {
    const { call, ctl } = setup();
    call.emit('data', { ops: [{ id: 1, bytes: 1, fail: true }, { id: 2, bytes: 1 }] });
    call.emit('end');
    await tick();
    assert.equal(call.ended, false, 'op 2 is still running');
    ctl.finish(2);
    await tick();
    const results = call.replies.flatMap((r) => r.results);
    assert.equal(results.find((r) => r.id === 1)?.error?.reason, 'EINVAL');
    assert.equal(results.find((r) => r.id === 2)?.error, undefined);
    assert.equal(call.ended, true);
    assert.equal(call.status, null);
  });

  it('shutdown: started ops finish and are answered, unstarted ones get ESHUTDOWN, the stream ends UNAVAILABLE', async function () {
    const { call, ctl, stream } = setup();
    call.emit('data', { ops: Array.from({ length: STREAM_OPS_IN_FLIGHT_MAX }, (_, id) => ({ id, bytes: 1 })) });
    call.emit('data', { ops: [0, 1].map((i) => ({ id: STREAM_OPS_IN_FLIGHT_MAX + i, bytes: 1 })) });
    stream.drain();
    await tick();
    const early = call.replies.flatMap((r) => r.results);
    assert.deepEqual(early.map((r) => r.error?.reason), ['ESHUTDOWN', 'ESHUTDOWN']);
    assert.equal(call.status, null, 'not before the started ops are answered');
    for (let id = 0; id < STREAM_OPS_IN_FLIGHT_MAX; id++) ctl.finish(id);
    await tick();
    assert.equal(call.answered.length, STREAM_OPS_IN_FLIGHT_MAX + 2);
    const status = call.status as { code: number; metadata: grpc.Metadata } | null;
    assert.equal(status?.code, 14);
    assert.deepEqual(status?.metadata.get('daxd-reason'), ['ESHUTDOWN']);
  });

  it('a reply message never holds more than RPC_IO_MAX_BYTES of data', async function () {
    const { call, ctl } = setup();
    call.emit('data', { ops: [{ id: 1, bytes: 1024 * 1024 - 1 }, { id: 2, bytes: RPC_IO_MAX_BYTES }, { id: 3, bytes: 10 }] });
    [1, 2, 3].forEach(ctl.finish);
    await tick();
    assert.deepEqual(call.replies.map((r) => r.results.map((x) => x.id)), [[1], [2], [3]]);
  });

  it('a cancelled call stops: late results are dropped', async function () {
    const { call, ctl } = setup();
    call.emit('data', { ops: [{ id: 1, bytes: 1 }] });
    call.emit('cancelled');
    ctl.finish(1);
    await tick();
    assert.equal(call.replies.length, 0);
  });
});
