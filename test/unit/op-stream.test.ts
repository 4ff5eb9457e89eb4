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
import { RPC_IO_BYTES_MAX, STREAM_BYTES_BUFFERED_MAX, STREAM_OPS_IN_FLIGHT_MAX } from '../../server/rpc/limits';
import { OpStream, type OpErrorWire, type OpKind } from '../../server/rpc/op-stream';
import { StreamMemory } from '../../server/rpc/stream-memory';

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
  /** false: the transport keeps what is written (the client stopped reading) until send(). */
  sending = true;
  private unsent: Array<() => void> = [];
  write(res: Res, sent?: () => void): boolean {
    this.replies.push(res);
    if (sent !== undefined) {
      if (this.sending) process.nextTick(sent);
      else this.unsent.push(sent);
    }
    return this.writable;
  }
  /** The client reads again: what was kept goes out. */
  send(): void {
    this.sending = true;
    const callbacks = this.unsent;
    this.unsent = [];
    for (const sent of callbacks) sent();
  }
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

function setup(memory = new StreamMemory(), peer = 'peer-1'): { call: FakeCall; ctl: ReturnType<typeof controlledKind>; stream: OpStream<Req, Res, Op, Result>; memory: StreamMemory } {
  const call = new FakeCall();
  const ctl = controlledKind();
  const stream = new OpStream<Req, Res, Op, Result>(
    call as unknown as grpc.ServerDuplexStream<Req, Res>, ctl.kind,
    { opsOf: (req) => req.ops, reply: (results) => ({ results }) }, log, () => undefined, memory.open(peer),
  );
  return { call, ctl, stream, memory };
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

  it('at STREAM_BYTES_BUFFERED_MAX bytes the input pauses (one op always fits)', async function () {
    const { call, ctl } = setup();
    call.emit('data', { ops: [{ id: 1, bytes: STREAM_BYTES_BUFFERED_MAX }, { id: 2, bytes: 1 }] });
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

  it('a reply message never holds more than RPC_IO_BYTES_MAX of data', async function () {
    const { call, ctl } = setup();
    call.emit('data', { ops: [{ id: 1, bytes: 1024 * 1024 - 1 }, { id: 2, bytes: RPC_IO_BYTES_MAX }, { id: 3, bytes: 10 }] });
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

describe('server op stream: memory bounds (stream, connection, server)', function () {
  const MiB = 1024 * 1024;
  const opsOf = (first: number, n: number, bytes: number): Op[] => Array.from({ length: n }, (_, i) => ({ id: first + i, bytes }));

  /** Finish every op as it starts (the engine is fast), until nothing new starts. */
  async function runStarted(ctl: ReturnType<typeof controlledKind>): Promise<void> {
    let finished = 0;
    for (let round = 0; round < 10_000 && finished < ctl.started.length; round++) {
      while (finished < ctl.started.length) ctl.finish(ctl.started[finished++]);
      await tick();
    }
  }

  it('a reader that stops: replies held stay within STREAM_BYTES_BUFFERED_MAX, no op starts; sending resumes; cancel gives all back', async function () {
    const { call, ctl, memory } = setup();
    call.sending = false;
    const total = 2 * STREAM_BYTES_BUFFERED_MAX / MiB;
    call.emit('data', { ops: opsOf(0, total, MiB) });
    await runStarted(ctl);
    assert.equal(memory.bytes, STREAM_BYTES_BUFFERED_MAX, 'the stream holds exactly its bound of unsent replies');
    assert.equal(memory.server.peakBytes, STREAM_BYTES_BUFFERED_MAX, 'never more');
    assert.equal(ctl.started.length, STREAM_BYTES_BUFFERED_MAX / MiB, 'ops beyond the bound wait');
    assert.equal(call.paused, true, 'and the input is paused');
    call.send();
    await runStarted(ctl);
    assert.ok(ctl.started.length > STREAM_BYTES_BUFFERED_MAX / MiB, 'sent replies make room');
    assert.ok(memory.server.peakBytes <= STREAM_BYTES_BUFFERED_MAX, `peak ${memory.server.peakBytes}`);
    call.sending = false;
    call.emit('data', { ops: opsOf(total, 4, MiB) });
    await runStarted(ctl);
    assert.equal(memory.bytes, 4 * MiB);
    call.emit('cancelled');
    assert.equal(memory.bytes, 0, 'cancel gives back every byte');
    assert.equal(memory.connectionCount, 0);
  });

  it('streams of one connection share CONNECTION_BYTES_BUFFERED_MAX, all streams share SERVER_BYTES_BUFFERED_MAX', async function () {
    const memory = new StreamMemory({ streamMaxBytes: 8, connectionMaxBytes: 12, serverMaxBytes: 20 });
    const a = setup(memory, 'peer-1');
    const b = setup(memory, 'peer-1');
    const c = setup(memory, 'peer-2');
    for (const s of [a, b, c]) s.call.sending = false;
    a.call.emit('data', { ops: opsOf(0, 4, 4) });
    await runStarted(a.ctl);
    assert.equal(a.ctl.started.length, 2, 'stream bound: 8 bytes');
    b.call.emit('data', { ops: opsOf(0, 4, 4) });
    await runStarted(b.ctl);
    assert.equal(b.ctl.started.length, 1, 'connection bound: 12 bytes');
    c.call.emit('data', { ops: opsOf(0, 4, 4) });
    await runStarted(c.ctl);
    assert.equal(c.ctl.started.length, 2, 'another connection: its own 8-byte stream bound');
    const d = setup(memory, 'peer-3');
    d.call.emit('data', { ops: opsOf(0, 1, 4) });
    assert.equal(d.ctl.started.length, 0, 'server bound: 20 bytes held, an op of 4 waits');
    assert.equal(memory.bytes, 20);
    a.call.send(); // a's reader catches up: room at every level, and the waiters are woken
    await runStarted(a.ctl);
    await runStarted(d.ctl);
    assert.equal(d.ctl.started.length, 1, 'woken when room came back');
    assert.ok(memory.server.peakBytes <= 20);
    for (const s of [a, b, c, d]) s.call.emit('cancelled');
    assert.equal(memory.bytes, 0);
  });
});
