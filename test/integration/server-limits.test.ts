/**
 * The SDK sizes its calls by the limits the server reports (VolumeInfo.max_io_bytes /
 * max_message_bytes), not by copies of its own: against a server (a stand-in on
 * 127.0.0.1 that implements StatVolume, WriteStream and ReadStream) that reports 8 KiB,
 * writes and reads are cut into 8 KiB ops and no stream message carries more than 8 KiB
 * of data. The limits are fetched once, by the first I/O, which goes ahead with the wire
 * defaults (wire/limits.ts).
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { DaxClient } from '../../client';
import { loadDaxdProto } from '../../wire/proto';
import { MESSAGE_BYTES_MAX, RPC_IO_BYTES_MAX } from '../../wire/limits';
import type { ReadStreamRequest__Output } from '../../wire/generated/daxd/v1/ReadStreamRequest';
import type { ReadStreamResponse } from '../../wire/generated/daxd/v1/ReadStreamResponse';
import type { VolumeInfo } from '../../wire/generated/daxd/v1/VolumeInfo';
import type { WriteStreamRequest__Output } from '../../wire/generated/daxd/v1/WriteStreamRequest';
import type { WriteStreamResponse } from '../../wire/generated/daxd/v1/WriteStreamResponse';
import { MappingRpc } from '../../client/mapping-rpc';
import type { AccessBatchRequest } from '../../wire/generated/daxd/v1/AccessBatchRequest';
import type { MappingClient } from '../../wire/generated/daxd/v1/Mapping';
import { KiB } from '../support/units';

const SERVER_IO_BYTES_MAX = 8 * KiB;

/** What the stand-in saw: data bytes of every op, per stream message, and StatVolume calls. */
interface Seen {
  statVolumes: number;
  writeMessages: number[][];
  readMessages: number[][];
}

async function standIn(limits: { maxIoBytes: number; maxMessageBytes: number }): Promise<{ address: string; seen: Seen; stop(): Promise<void> }> {
  const seen: Seen = { statVolumes: 0, writeMessages: [], readMessages: [] };
  const server = new grpc.Server();
  const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback({ code: grpc.status.UNIMPLEMENTED, details: 'stand-in' });
  const files: grpc.UntypedServiceImplementation = {};
  for (const name of Object.keys(loadDaxdProto().daxd.v1.Files.service)) files[name] = unimplemented;
  files.StatVolume = (_call: unknown, callback: grpc.sendUnaryData<VolumeInfo>) => {
    seen.statVolumes++;
    callback(null, { block_size: 4096, max_io_bytes: limits.maxIoBytes, max_message_bytes: limits.maxMessageBytes });
  };
  files.WriteStream = (call: grpc.ServerDuplexStream<WriteStreamRequest__Output, WriteStreamResponse>) => {
    call.on('data', (req: WriteStreamRequest__Output) => {
      seen.writeMessages.push(req.ops.map((op) => op.data.length));
      call.write({ results: req.ops.map((op) => ({ id: op.id, written: op.data.length, size: Number(op.offset) + op.data.length })) });
    });
    call.on('end', () => call.end());
  };
  files.ReadStream = (call: grpc.ServerDuplexStream<ReadStreamRequest__Output, ReadStreamResponse>) => {
    call.on('data', (req: ReadStreamRequest__Output) => {
      seen.readMessages.push(req.ops.map((op) => Number(op.length)));
      call.write({ results: req.ops.map((op) => ({ id: op.id, data: Buffer.alloc(Number(op.length), 7) })) });
    });
    call.on('end', () => call.end());
  };
  server.addService(loadDaxdProto().daxd.v1.Files.service, files);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  return {
    address: `127.0.0.1:${port}`,
    seen,
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

describe('SDK: data-path limits come from the server', function () {
  this.timeout(30_000);

  it('writes and reads are cut into ops of the server\'s max_io_bytes, and no message carries more', async function () {
    const server = await standIn({ maxIoBytes: SERVER_IO_BYTES_MAX, maxMessageBytes: SERVER_IO_BYTES_MAX + 64 * KiB });
    const client = DaxClient.connect(server.address);
    try {
      assert.deepEqual(await client.dataPathLimits(), { ioBytesMax: SERVER_IO_BYTES_MAX, messageBytesMax: SERVER_IO_BYTES_MAX + 64 * KiB });
      const out = await client.write(1, 0, Buffer.alloc(64 * KiB, 1));
      assert.equal(out.written, 64 * KiB);
      const ops = server.seen.writeMessages.flat();
      assert.deepEqual(ops, new Array(8).fill(SERVER_IO_BYTES_MAX), 'eight ops of 8 KiB');
      for (const m of server.seen.writeMessages) assert.ok(m.reduce((a, b) => a + b, 0) <= SERVER_IO_BYTES_MAX, `a message of ${m} bytes`);

      const data = await client.read(1, 0, 40 * KiB);
      assert.equal(data.length, 40 * KiB);
      assert.deepEqual(server.seen.readMessages.flat(), new Array(5).fill(SERVER_IO_BYTES_MAX), 'five reads of 8 KiB');
      for (const m of server.seen.readMessages) assert.ok(m.reduce((a, b) => a + b, 0) <= SERVER_IO_BYTES_MAX, `a message of ${m} bytes`);
      assert.equal(server.seen.statVolumes, 1, 'the limits are fetched once');
    } finally {
      client.close();
      await server.stop();
    }
  });

  it('the first I/O fetches them (once) and goes ahead with the wire defaults; the next I/O uses the server\'s', async function () {
    const server = await standIn({ maxIoBytes: SERVER_IO_BYTES_MAX, maxMessageBytes: SERVER_IO_BYTES_MAX + 64 * KiB });
    const client = DaxClient.connect(server.address);
    try {
      await Promise.all([client.write(1, 0, Buffer.alloc(16 * KiB)), client.write(1, 16 * KiB, Buffer.alloc(16 * KiB))]);
      assert.deepEqual(server.seen.writeMessages.flat(), [16 * KiB, 16 * KiB], 'before the answer: the wire defaults');
      assert.equal((await client.dataPathLimits()).ioBytesMax, SERVER_IO_BYTES_MAX);
      await client.write(1, 0, Buffer.alloc(16 * KiB));
      assert.deepEqual(server.seen.writeMessages.flat().slice(2), [8 * KiB, 8 * KiB]);
      assert.equal(server.seen.statVolumes, 1);
    } finally {
      client.close();
      await server.stop();
    }
  });

  it('a server that reports no limits (0) leaves the wire defaults', async function () {
    const server = await standIn({ maxIoBytes: 0, maxMessageBytes: 0 });
    const client = DaxClient.connect(server.address);
    try {
      assert.deepEqual(await client.dataPathLimits(), { ioBytesMax: RPC_IO_BYTES_MAX, messageBytesMax: MESSAGE_BYTES_MAX });
    } finally {
      client.close();
      await server.stop();
    }
  });

  it('mapping AccessBatch calls carry at most the server\'s max_io_bytes of data', async function () {
    const calls: number[] = [];
    const fake = {
      AccessBatch(request: AccessBatchRequest, _md: unknown, _opts: unknown, callback: (err: null, res: unknown) => void) {
        const ops = request.ops ?? [];
        calls.push(ops.reduce((n, op) => n + Number(op.length ?? 0), 0));
        callback(null, { results: ops.map((op) => ({ data: Buffer.alloc(Number(op.length ?? 0)), error: null, pte: null })) });
      },
    } as unknown as MappingClient;
    const rpc = new MappingRpc(fake, 'session', { deadlineMs: 10_000, retries: 0, ioBytesMax: () => SERVER_IO_BYTES_MAX });
    const outcomes = await rpc.accessBatch(Array.from({ length: 6 }, () => ({ store: false as const, token: 't', offset: 0, length: 4 * KiB })));
    assert.equal(outcomes.filter((o) => o.ok).length, 6);
    assert.deepEqual(calls, [8 * KiB, 8 * KiB, 8 * KiB], 'six 4 KiB loads in three calls of 8 KiB');
  });
});
