/**
 * Files.ReadStream and Files.WriteStream: the pipelined data path (op-stream.ts) bound to
 * the engine's read and write. Each op is validated exactly as its unary twin (readArgs,
 * writeArgs) and fails alone, as an OpError in its result.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { FileSystemApi } from '../fs/types';
import { statusName, type Metrics } from '../metrics';
import type { ReadOp__Output } from '../../wire/generated/daxd/v1/ReadOp';
import type { ReadResult } from '../../wire/generated/daxd/v1/ReadResult';
import type { ReadStreamRequest__Output } from '../../wire/generated/daxd/v1/ReadStreamRequest';
import type { ReadStreamResponse } from '../../wire/generated/daxd/v1/ReadStreamResponse';
import type { WriteOp__Output } from '../../wire/generated/daxd/v1/WriteOp';
import type { WriteResult } from '../../wire/generated/daxd/v1/WriteResult';
import type { WriteStreamRequest__Output } from '../../wire/generated/daxd/v1/WriteStreamRequest';
import type { WriteStreamResponse } from '../../wire/generated/daxd/v1/WriteStreamResponse';
import { readArgs, writeArgs } from './validate';
import { releaseHeadroom, withHeadroom } from '../../wire/bulk-codec';
import { RPC_IO_BYTES_MAX } from './limits';
import { OpStream, type Drainable, type OpKind } from './op-stream';
import { StreamMemory } from './stream-memory';

/**
 * Live op streams, so shutdown can drain them (grpc-js waits for every open call), and
 * the memory account they all share (stream-memory.ts).
 */
export class OpStreamRegistry extends Set<Drainable> {
  readonly memory: StreamMemory;
  constructor(memory = new StreamMemory()) {
    super();
    this.memory = memory;
  }
}

const EMPTY = Buffer.alloc(0);

function readKind(fs: FileSystemApi, metrics: Metrics | undefined): OpKind<ReadOp__Output, ReadResult> {
  return {
    name: 'Files.ReadStream',
    // What the op will hold once answered (run() refuses more than RPC_IO_BYTES_MAX).
    costBytes: (op) => Math.max(0, Math.min(Number(op.length) || 0, RPC_IO_BYTES_MAX)),
    run: async (op) => {
      const { ino, offset, length } = readArgs(op.ino, op.offset, op.length);
      // Into a reply buffer with headroom: a result alone in its message is sent from it
      // with no further copy (wire/bulk-codec.ts); batched results are copied once.
      const data = await fs.read(ino, offset, length, withHeadroom);
      metrics?.io('file', 'read', data.length);
      return { id: op.id, data };
    },
    failed: (op, error) => {
      metrics?.streamOpFailed('Files.ReadStream', statusName(error.code));
      return { id: op.id, data: EMPTY, error };
    },
    replyBytes: (result) => (result.data as Buffer).length,
    // Written to the socket: the read buffer goes back to the reply pool.
    sent: (result) => releaseHeadroom(result.data as Buffer),
  };
}

function writeKind(fs: FileSystemApi, metrics: Metrics | undefined): OpKind<WriteOp__Output, WriteResult> {
  return {
    name: 'Files.WriteStream',
    costBytes: (op) => op.data.length,
    run: async (op) => {
      const { ino, offset } = writeArgs(op.ino, op.offset, op.data);
      const result = await fs.write(ino, offset, op.data, op.sync);
      metrics?.io('file', 'write', result.written);
      return { id: op.id, written: result.written, size: result.sizeBytes };
    },
    failed: (op, error) => {
      metrics?.streamOpFailed('Files.WriteStream', statusName(error.code));
      return { id: op.id, written: 0, size: 0, error };
    },
    replyBytes: () => 0,
  };
}

function serve<Req, Res, Op extends { id: number }, Result>(
  call: grpc.ServerDuplexStream<Req, Res>, kind: OpKind<Op, Result>,
  batch: { opsOf(request: Req): Op[]; reply(results: Result[]): Res }, log: Logger, streams: OpStreamRegistry,
): void {
  // One connection = one peer address (host:port of the client's socket).
  const stream = new OpStream(call, kind, batch, log, (s) => streams.delete(s), streams.memory.open(call.getPeer()));
  streams.add(stream);
}

/** Each stream's ops run as its principal (fsOf: prefix and quota checks per op). */
export function readStreamHandler(fsOf: (call: object) => FileSystemApi, log: Logger, streams: OpStreamRegistry, metrics?: Metrics): grpc.handleBidiStreamingCall<ReadStreamRequest__Output, ReadStreamResponse> {
  const batch = { opsOf: (req: ReadStreamRequest__Output) => req.ops, reply: (results: ReadResult[]) => ({ results }) };
  return (call) => serve(call, readKind(fsOf(call), metrics), batch, log, streams);
}

export function writeStreamHandler(fsOf: (call: object) => FileSystemApi, log: Logger, streams: OpStreamRegistry, metrics?: Metrics): grpc.handleBidiStreamingCall<WriteStreamRequest__Output, WriteStreamResponse> {
  const batch = { opsOf: (req: WriteStreamRequest__Output) => req.ops, reply: (results: WriteResult[]) => ({ results }) };
  return (call) => serve(call, writeKind(fsOf(call), metrics), batch, log, streams);
}
