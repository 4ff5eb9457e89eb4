/**
 * The bulk path (wire/bulk-codec.ts codecs, replies read into headroom buffers and framed
 * in place) against a real server, seen from both kinds of client:
 *   - an outside client: the plain @grpc/proto-loader stub of proto/daxd/v1/daxd.proto,
 *     protobufjs on both sides (what a user of the .proto gets);
 *   - the SDK (hand-written codecs, requests framed in place).
 * Each writes random data with Write and WriteStream and reads it back with Read and
 * ReadStream, across chunk sizes that hit both the in-place path (one large result per
 * reply) and the copying one (many small results in one reply), and data written by one
 * client is read by the other.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CLIENT_CHANNEL_OPTIONS, loadDaxdProto, type DaxClient } from '../../client';
import type { FilesClient } from '../../wire/generated/daxd/v1/Files';
import { call, streamOutcome } from '../support/raw-rpc';
import { randInt, seededRng } from '../support/rng';
import { clientFor, startServer, tempDir, type StartedServer } from '../support/start-server';
import { MiB } from '../support/units';

interface ReadResultOut { id: number; data: Buffer; error: unknown }
interface WriteResultOut { id: number; written: string; error: unknown }

describe('bulk wire path: outside (proto-loader) clients and the SDK agree byte for byte', function () {
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;
  let sdk: DaxClient;
  let plain: FilesClient;

  before(async function () {
    tmp = tempDir();
    server = await startServer({ volumePath: path.join(tmp.dir, 'bulk.vol'), size: '128M' });
    sdk = clientFor(server);
    // The generated constructor as loaded from the .proto: protobufjs codecs, nothing of daxd's.
    plain = new (loadDaxdProto().daxd.v1.Files)(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  });

  after(async function () {
    sdk?.close();
    plain?.close();
    if (server) assert.deepEqual(await server.stop(), { code: 0, signal: null });
    tmp?.remove();
  });

  function random(rng: () => number, length: number): Buffer {
    const b = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i += 4) b.writeUInt32LE(randInt(rng, 0, 0xffffffff), Math.min(i, length - 4));
    return b;
  }

  async function streamRead(ino: number, chunks: Array<[number, number]>): Promise<Buffer[]> {
    const stream = plain.ReadStream();
    stream.write({ ops: chunks.map(([offset, length], i) => ({ id: i + 1, ino, offset, length })) });
    stream.end();
    const { messages, error } = await streamOutcome(stream as unknown as grpc.ClientDuplexStream<unknown, { results: ReadResultOut[] }>);
    assert.equal(error, null);
    const results = messages.flatMap((m) => m.results).sort((a, b) => a.id - b.id);
    assert.deepEqual(results.map((r) => r.error), chunks.map(() => null));
    return results.map((r) => r.data);
  }

  it('48 MiB of distinct 1 MiB chunks read back 3 times through pipelined ReadStreams: reused reply buffers never mix replies', async function () {
    const f = await sdk.create('bulk-pool');
    const chunks = 48;
    // Chunk i is filled with a pattern that names it, so a reply carrying another chunk's bytes shows.
    const chunkOf = (i: number) => {
      const b = Buffer.alloc(MiB);
      for (let at = 0; at < MiB; at += 8) {
        b.writeUInt32LE(i, at);
        b.writeUInt32LE(at, at + 4);
      }
      return b;
    };
    for (let i = 0; i < chunks; i += 8) await Promise.all(Array.from({ length: 8 }, (_, k) => sdk.write(f.ino, (i + k) * MiB, chunkOf(i + k))));
    for (let round = 0; round < 3; round++) {
      const reads = await Promise.all(Array.from({ length: chunks }, (_, i) => sdk.read(f.ino, i * MiB, MiB)));
      reads.forEach((r, i) => assert.ok(r.equals(chunkOf(i)), `round ${round}: chunk ${i} came back with other bytes`));
    }
  });

  for (const [label, size, chunk] of [['1 MiB chunks (one result per reply: in place)', 4 * MiB, MiB], ['4 KiB chunks (batched replies: copied)', 256 * 1024, 4096]] as const) {
    it(`${label}: plain Write/WriteStream -> SDK and plain reads, SDK writes -> plain reads`, async function () {
      const rng = seededRng(size + chunk);
      const f = await sdk.create(`bulk-${chunk}`);
      const data = random(rng, size);
      const offsets = Array.from({ length: size / chunk }, (_, i) => i * chunk);
      // Outside client writes: first half unary, second half in one WriteStream message.
      const half = offsets.slice(0, offsets.length / 2);
      for (const at of half) await call((cb) => plain.Write({ ino: f.ino, offset: at, data: data.subarray(at, at + chunk) }, cb));
      const ws = plain.WriteStream();
      ws.write({ ops: offsets.slice(half.length).map((at, i) => ({ id: i + 1, ino: f.ino, offset: at, data: data.subarray(at, at + chunk) })) });
      ws.end();
      const written = await streamOutcome(ws as unknown as grpc.ClientDuplexStream<unknown, { results: WriteResultOut[] }>);
      assert.equal(written.error, null);
      assert.ok(written.messages.flatMap((m) => m.results).every((r) => r.error === null && Number(r.written) === chunk));
      // The SDK reads it (its decoders, pipelined ReadStream).
      assert.ok((await sdk.read(f.ino, 0, size)).equals(data), 'SDK read of plain writes');
      // The outside client reads it: unary and stream.
      const unary = await call<{ data: Buffer }>((cb) => plain.Read({ ino: f.ino, offset: 0, length: Math.min(size, 4 * MiB) }, cb));
      assert.ok(unary.data.equals(data.subarray(0, unary.data.length)) && unary.data.length === Math.min(size, 4 * MiB));
      assert.ok(Buffer.concat(await streamRead(f.ino, offsets.map((at) => [at, chunk]))).equals(data), 'plain ReadStream');
      // The SDK overwrites (its encoders, framed in place); the outside client reads that back.
      const next = random(rng, size);
      await sdk.write(f.ino, 0, next);
      assert.ok(Buffer.concat(await streamRead(f.ino, offsets.map((at) => [at, chunk]))).equals(next), 'plain read of SDK writes');
      // A short read at end of file is a prefix of the headroom buffer: still exact.
      const tail = await streamRead(f.ino, [[size - 100, chunk]]);
      assert.ok(tail[0].equals(next.subarray(size - 100)));
    });
  }
});
