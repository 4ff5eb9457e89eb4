/**
 * Memory of stalled op streams, over a real gRPC connection (an in-process RpcServer on a
 * MemoryStorage volume, a raw client built from the proto): a client that asks for far
 * more than the bound and never reads its replies makes the server stop (no op starts, no
 * request is read) with at most STREAM_BYTES_BUFFERED_MAX held; a cancel gives it all
 * back. Synchronised on the server's own signals ('held': a request is not read for now;
 * 'closed': a stream's account gave everything back), never on time.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import pino from 'pino';
import type { FileSystem } from '../../server/fs/filesystem';
import { RpcServer } from '../../server/rpc/rpc-server';
import { CONNECTION_BYTES_BUFFERED_MAX, STREAM_BYTES_BUFFERED_MAX } from '../../server/rpc/limits';
import type { StreamAccount } from '../../server/rpc/stream-memory';
import type { RawClients } from '../../client/raw-clients';
import { freshDax, MiB, sparseFile, type DaxVolume } from '../dax/helpers';
import { rawClients } from './raw-rpc';

describe('op streams: a client that stops reading cannot grow the server heap', function () {
  this.timeout(60_000);
  let volume: DaxVolume;
  let server: RpcServer;
  let raw: RawClients;
  let ino: number;
  const engineOps = { read: 0, write: 0 };

  beforeEach(async function () {
    volume = await freshDax(64 * MiB);
    ino = await sparseFile(volume, 'big', 1024 * MiB);
    // Count the ops that reach the engine: a stalled stream must stop starting them.
    const fs = volume.fs as FileSystem & Record<string, unknown>;
    const read = fs.read.bind(fs);
    const write = fs.write.bind(fs);
    engineOps.read = 0;
    engineOps.write = 0;
    fs.read = (...args: Parameters<FileSystem['read']>) => { engineOps.read++; return read(...args); };
    fs.write = (...args: Parameters<FileSystem['write']>) => { engineOps.write++; return write(...args); };
    server = await RpcServer.start({ fs: volume.fs, dax: volume.dax, log: pino({ level: 'silent' }), address: '127.0.0.1:0' });
    raw = rawClients(server.address);
  });

  afterEach(async function () {
    raw.close();
    await server.stop(1000);
    await volume.fs.unmount();
  });

  it('ReadStream: 512 MiB asked, nothing read: the server holds <= STREAM_BYTES_BUFFERED_MAX and stops; cancel releases it all', async function () {
    const memory = server.streamMemory;
    const stream = raw.files.ReadStream();
    stream.on('error', () => undefined); // CANCELLED, after cancel()
    const held = once(memory, 'held') as Promise<[StreamAccount]>;
    const total = 512;
    stream.write({ ops: Array.from({ length: total }, (_, i) => ({ id: i, ino, offset: i * MiB, length: MiB })) });
    // Nobody reads `stream`: grpc-js fills the client's buffer, then the HTTP/2 window.
    await held;
    // Once held back, nothing more starts until the client reads: wait for the stream to
    // be at its bound (the replies in flight in the transport may still be draining).
    while (memory.bytes < STREAM_BYTES_BUFFERED_MAX - MiB) await once(memory, 'blocked');
    assert.ok(memory.server.peakBytes <= STREAM_BYTES_BUFFERED_MAX, `peak ${memory.server.peakBytes} bytes > ${STREAM_BYTES_BUFFERED_MAX}`);
    assert.ok(engineOps.read < total / 2, `${engineOps.read} of ${total} reads started: the server kept going`);
    const closed = once(memory, 'closed');
    stream.cancel();
    await closed;
    assert.equal(memory.bytes, 0, 'cancel gives back every byte');
    assert.equal(memory.connectionCount, 0);
    assert.ok(memory.server.peakBytes <= STREAM_BYTES_BUFFERED_MAX, `peak ${memory.server.peakBytes}`);
  });

  it('8 stalled ReadStreams on one connection share CONNECTION_BYTES_BUFFERED_MAX', async function () {
    const memory = server.streamMemory;
    const streams = Array.from({ length: 8 }, () => raw.files.ReadStream());
    const closed: Array<Promise<unknown>> = [];
    let heldCount = 0;
    const allHeld = new Promise<void>((resolve) => {
      memory.on('held', () => { if (++heldCount >= 2) resolve(); });
    });
    streams.forEach((s, k) => {
      s.on('error', () => undefined);
      s.write({ ops: Array.from({ length: 128 }, (_, i) => ({ id: i, ino, offset: (k * 128 + i) * MiB, length: MiB })) });
    });
    await allHeld;
    while (memory.bytes < CONNECTION_BYTES_BUFFERED_MAX - 8 * MiB) await once(memory, 'blocked');
    assert.ok(memory.server.peakBytes <= CONNECTION_BYTES_BUFFERED_MAX, `peak ${memory.server.peakBytes} bytes > ${CONNECTION_BYTES_BUFFERED_MAX}`);
    for (const s of streams) {
      closed.push(new Promise((resolve) => s.on('status', resolve)));
      s.cancel();
    }
    await Promise.all(closed);
    while (memory.connectionCount > 0) await once(memory, 'closed');
    assert.equal(memory.bytes, 0);
  });

  it('WriteStream: while the engine is slow, a flooding client is not read past STREAM_BYTES_BUFFERED_MAX of input', async function () {
    const memory = server.streamMemory;
    // Writes wait at a gate the test opens: the client outruns the engine.
    let openGate: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => { openGate = resolve; });
    const fs = volume.fs as FileSystem & Record<string, unknown>;
    const write = fs.write;
    fs.write = async (...args: Parameters<FileSystem['write']>) => { await gate; return write(...args); };
    const stream = raw.files.WriteStream();
    stream.on('error', () => undefined);
    stream.on('data', () => undefined);
    const data = Buffer.alloc(256 * 1024, 0x5a);
    let sent = 0;
    let heldBack = false;
    const held = once(memory, 'held').then(() => { heldBack = true; });
    // Write until the server holds our input back (bounded: it must happen long before).
    for (let batch = 0; batch < 1024 && !heldBack; batch++) {
      const ops = Array.from({ length: 4 }, (_, i) => ({ id: sent + i, ino, offset: ((sent + i) % 1024) * data.length, data, sync: false }));
      sent += ops.length;
      if (!stream.write({ ops })) await Promise.race([once(stream, 'drain'), held]);
    }
    assert.ok(heldBack, `the server read all ${sent} writes while none could finish`);
    assert.ok(engineOps.write <= STREAM_BYTES_BUFFERED_MAX / data.length, `${engineOps.write} writes started`);
    assert.ok(memory.server.peakBytes <= STREAM_BYTES_BUFFERED_MAX, `peak ${memory.server.peakBytes}`);
    const closed = once(memory, 'closed');
    stream.cancel();
    await closed;
    assert.equal(memory.bytes, 0, 'cancel gives back every byte');
    openGate();
  });
});
