/**
 * The SDK side of the op streams (client/op-pipeline.ts) over a fake stream: ops of one
 * tick share a message, results are matched by id in any order, the in-flight window
 * holds the rest back, write() returning false waits for 'drain', a failed stream fails
 * what was sent on it and later ops use a fresh stream, and late ops fail with
 * DEADLINE_EXCEEDED.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { DaxClientError } from '../../client/errors';
import { PIPELINE_OPS_IN_FLIGHT_MAX } from '../../client/limits';
import { OpPipeline } from '../../client/op-pipeline';

interface Op { id: number; n: number }
interface Result { id: number; error: { code: number; reason: string; message: string } | null; n: number }
interface Req { ops: Op[] }
interface Res { results: Result[] }

class FakeStream extends EventEmitter {
  sent: Req[] = [];
  writable = true;
  ended = false;
  write(req: Req): boolean { this.sent.push(req); return this.writable; }
  end(): void { this.ended = true; }
  cancel(): void { this.ended = true; }
  answer(ids: number[], error: Result['error'] = null): void {
    this.emit('data', { results: ids.map((id) => ({ id, error, n: id })) });
  }
  get ops(): Op[] { return this.sent.flatMap((r) => r.ops); }
}

function setup(late?: (op: Op) => void): { pipeline: OpPipeline<Op, Req, Res, Result>; streams: FakeStream[] } {
  const streams: FakeStream[] = [];
  const pipeline = new OpPipeline<Op, Req, Res, Result>({
    open: () => {
      const s = new FakeStream();
      streams.push(s);
      return s as unknown as grpc.ClientDuplexStream<Req, Res>;
    },
    request: (ops) => ({ ops }),
    results: (res) => res.results,
    ...(late === undefined ? {} : { late }),
  });
  return { pipeline, streams };
}

const nextTick = () => new Promise<void>((resolve) => process.nextTick(resolve));

describe('SDK op pipeline: batching, window, backpressure, failure', function () {
  it('ops submitted in one tick travel in one message; results match by id in any order', async function () {
    const { pipeline, streams } = setup();
    const results = [1, 2, 3].map((n) => pipeline.submit((id) => ({ id, n }), 10, 10_000));
    await nextTick();
    assert.equal(streams.length, 1);
    assert.equal(streams[0].sent.length, 1);
    const ids = streams[0].ops.map((o) => o.id);
    streams[0].answer([...ids].reverse());
    assert.deepEqual((await Promise.all(results)).map((r) => r.id), ids);
    pipeline.close();
  });

  it('no more than PIPELINE_OPS_IN_FLIGHT_MAX ops are sent before answers come back', async function () {
    const { pipeline, streams } = setup();
    const all = Array.from({ length: PIPELINE_OPS_IN_FLIGHT_MAX + 10 }, (_, n) => pipeline.submit((id) => ({ id, n }), 1, 10_000));
    await nextTick();
    assert.equal(streams[0].ops.length, PIPELINE_OPS_IN_FLIGHT_MAX);
    streams[0].answer(streams[0].ops.slice(0, 10).map((o) => o.id));
    await nextTick();
    assert.equal(streams[0].ops.length, PIPELINE_OPS_IN_FLIGHT_MAX + 10);
    streams[0].answer(streams[0].ops.slice(10).map((o) => o.id));
    assert.equal((await Promise.all(all)).length, PIPELINE_OPS_IN_FLIGHT_MAX + 10);
    pipeline.close();
  });

  it('write() returning false holds further messages until drain', async function () {
    const { pipeline, streams } = setup();
    const first = pipeline.submit((id) => ({ id, n: 1 }), 1, 10_000);
    await nextTick();
    const stream = streams[0];
    stream.writable = false;
    const second = pipeline.submit((id) => ({ id, n: 2 }), 1, 10_000);
    await nextTick();
    assert.equal(stream.sent.length, 2, 'the message that got false was still sent');
    const third = pipeline.submit((id) => ({ id, n: 3 }), 1, 10_000);
    await nextTick();
    assert.equal(stream.sent.length, 2, 'nothing more until drain');
    stream.writable = true;
    stream.emit('drain');
    await nextTick();
    assert.equal(stream.sent.length, 3);
    stream.answer(stream.ops.map((o) => o.id));
    await Promise.all([first, second, third]);
    pipeline.close();
  });

  it('an op error rejects only that op, as DaxClientError with code and reason', async function () {
    const { pipeline, streams } = setup();
    const bad = pipeline.submit((id) => ({ id, n: 1 }), 1, 10_000);
    const good = pipeline.submit((id) => ({ id, n: 2 }), 1, 10_000);
    await nextTick();
    const [badOp, goodOp] = streams[0].ops;
    streams[0].answer([badOp.id], { code: grpc.status.NOT_FOUND, reason: 'ENOENT', message: 'ENOENT: no inode 9' });
    streams[0].answer([goodOp.id]);
    await assert.rejects(bad, (e: DaxClientError) => e.code === grpc.status.NOT_FOUND && e.reason === 'ENOENT');
    assert.equal((await good).id, goodOp.id);
    pipeline.close();
  });

  it('a failed stream fails what was sent on it; the next op opens a fresh stream', async function () {
    const { pipeline, streams } = setup();
    const lost = pipeline.submit((id) => ({ id, n: 1 }), 1, 10_000);
    await nextTick();
    streams[0].emit('error', Object.assign(new Error('gone'), { code: grpc.status.UNAVAILABLE, details: 'gone', metadata: new grpc.Metadata() }));
    await assert.rejects(lost, (e: DaxClientError) => e.code === grpc.status.UNAVAILABLE);
    const next = pipeline.submit((id) => ({ id, n: 2 }), 1, 10_000);
    await nextTick();
    assert.equal(streams.length, 2);
    streams[1].answer(streams[1].ops.map((o) => o.id));
    await next;
    pipeline.close();
  });

  it('an op without an answer past its deadline fails with DEADLINE_EXCEEDED', async function () {
    const { pipeline } = setup();
    await assert.rejects(pipeline.submit((id) => ({ id, n: 1 }), 1, 1), (e: DaxClientError) => e.code === grpc.status.DEADLINE_EXCEEDED);
    pipeline.close();
  });

  it('close() fails everything pending with CANCELLED', async function () {
    const { pipeline } = setup();
    const pending = pipeline.submit((id) => ({ id, n: 1 }), 1, 10_000);
    pipeline.close();
    await assert.rejects(pending, (e: DaxClientError) => e.code === grpc.status.CANCELLED);
  });
});

describe('SDK op pipeline: late results of expired ops', function () {
  it('a late result on a stream the SDK closed as idle still reaches kind.late after a newer stream failed', async function () {
    const late: number[] = [];
    const { pipeline, streams } = setup((op) => late.push(op.n));
    // op 1 misses its deadline on stream 0.
    await assert.rejects(pipeline.submit((id) => ({ id, n: 1 }), 1, 1), (e: DaxClientError) => e.code === grpc.status.DEADLINE_EXCEEDED);
    const id1 = streams[0].ops[0].id;
    // Nothing in flight: the SDK half-closes stream 0 as idle (what its idle timer does).
    (pipeline as unknown as { closeIdle(): void }).closeIdle();
    assert.ok(streams[0].ended);
    // A newer stream fails; its failure says nothing about stream 0's answers.
    const lost = pipeline.submit((id) => ({ id, n: 2 }), 1, 10_000);
    await nextTick();
    assert.equal(streams.length, 2);
    streams[1].emit('error', Object.assign(new Error('gone'), { code: grpc.status.UNAVAILABLE, details: 'gone', metadata: new grpc.Metadata() }));
    await assert.rejects(lost);
    // Stream 0's answer to op 1 arrives late: the kind still hears of it (e.g. to unpin).
    streams[0].answer([id1]);
    assert.deepEqual(late, [1]);
    // Once stream 0 ends, nothing of it is kept.
    streams[0].emit('end');
    pipeline.close();
  });
});
