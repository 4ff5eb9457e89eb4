/**
 * Memory of data-moving unary calls (issue 10, defect 3, second part): a raw HTTP/2 client
 * that opens many Files.Read(4 MiB) on one connection and never reads its replies must
 * not make the server buffer more than CONNECTION_BYTES_BUFFERED_MAX; a call that cannot
 * fit waits with nothing done (and ends at its deadline); everything is given back on
 * cancel. Synchronised on the server's own signals ('blocked', 'closed') and on
 * engine reads, never on time.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { once } from 'node:events';
import pino from 'pino';
import type { FileSystem } from '../../server/fs/filesystem';
import { RpcServer } from '../../server/rpc/rpc-server';
import { CONNECTION_BYTES_BUFFERED_MAX, RPC_IO_BYTES_MAX } from '../../server/rpc/limits';
import type { StreamMemoryLimits } from '../../server/rpc/stream-memory';
import type { RawClients } from '../../client/raw-clients';
import { freshDax, sparseFile, type DaxVolume } from '../support/dax-volume';
import { MiB } from '../support/units';
import { call, failure, rawClients } from '../support/raw-rpc';

/** Protobuf varint. */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A gRPC-framed ReadRequest{ino, offset, length}. */
function readRequestFrame(ino: number, offset: number, length: number): Buffer {
  const body = Buffer.from([0x08, ...varint(ino), 0x10, ...varint(offset), 0x18, ...varint(length)]);
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  return frame;
}

/**
 * A client that sends Files.Read calls on one HTTP/2 connection and never reads: its
 * streams stay paused, so it never grants the server more window than the initial one.
 */
class StalledReader {
  readonly session: http2.ClientHttp2Session;
  readonly streams: http2.ClientHttp2Stream[] = [];
  constructor(address: string) {
    this.session = http2.connect(`http://${address}`, { settings: { initialWindowSize: 65_535 } });
    this.session.on('error', () => undefined);
  }

  read(ino: number, offset: number, length: number): http2.ClientHttp2Stream {
    const stream = this.session.request({
      ':method': 'POST', ':path': '/daxd.v1.Files/Read', 'content-type': 'application/grpc', te: 'trailers',
    });
    stream.on('error', () => undefined);
    stream.pause();
    stream.end(readRequestFrame(ino, offset, length));
    this.streams.push(stream);
    return stream;
  }

  close(): void {
    this.session.destroy();
  }
}

describe('unary data calls: a client that stops reading cannot grow the server heap', function () {
  this.timeout(60_000);
  let volume: DaxVolume;
  let server: RpcServer;
  let raw: RawClients;
  let stalled: StalledReader;
  let ino: number;
  const reads = { started: 0 };

  async function start(limits: Partial<StreamMemoryLimits> = {}): Promise<void> {
    server = await RpcServer.start({ fs: volume.fs, dax: volume.dax, log: pino({ level: 'silent' }), address: '127.0.0.1:0', streamLimits: limits });
    raw = rawClients(server.address);
    stalled = new StalledReader(server.address);
  }

  beforeEach(async function () {
    volume = await freshDax(64 * MiB);
    ino = await sparseFile(volume, 'big', 1024 * MiB);
    const fs = volume.fs as FileSystem & Record<string, unknown>;
    const read = fs.read.bind(fs);
    reads.started = 0;
    fs.read = (...args: Parameters<FileSystem['read']>) => { reads.started++; return read(...args); };
  });

  afterEach(async function () {
    stalled?.close();
    raw?.close();
    await server?.stop(1000);
    await volume.fs.unmount();
  });

  /** Resolves once the account refused a call (the bound is reached) or every read ran. */
  function boundOrAllRead(n: number): Promise<'blocked' | 'all read'> {
    const memory = server.streamMemory;
    return new Promise((resolve) => {
      memory.once('blocked', () => resolve('blocked'));
      const fs = volume.fs as FileSystem & Record<string, unknown>;
      const read = fs.read;
      fs.read = async (...args: Parameters<FileSystem['read']>) => {
        const data = await read(...args);
        if (reads.started >= n) setImmediate(() => resolve('all read'));
        return data;
      };
    });
  }

  it('32 Files.Read(4 MiB) on one connection, nothing read: <= CONNECTION_BYTES_BUFFERED_MAX held, the rest wait; cancel releases it all', async function () {
    await start();
    const memory = server.streamMemory;
    const n = 32;
    const reached = boundOrAllRead(n);
    for (let i = 0; i < n; i++) stalled.read(ino, i * RPC_IO_BYTES_MAX, RPC_IO_BYTES_MAX);
    const how = await reached;
    const fit = CONNECTION_BYTES_BUFFERED_MAX / RPC_IO_BYTES_MAX;
    assert.ok(reads.started <= fit, `${reads.started} of ${n} reads ran (${how}): at most ${fit} fit CONNECTION_BYTES_BUFFERED_MAX`);
    assert.equal(memory.bytes, CONNECTION_BYTES_BUFFERED_MAX, 'the connection is at its bound');
    assert.ok(memory.server.peakBytes <= CONNECTION_BYTES_BUFFERED_MAX, `peak ${memory.server.peakBytes}`);
    // Cancel: the client goes away.
    stalled.close();
    while (memory.connectionCount > 0) await once(memory, 'closed');
    assert.equal(memory.bytes, 0, 'cancel gives back every byte');
  });

  it('a call waiting for room ends at its deadline: DEADLINE_EXCEEDED, nothing done', async function () {
    await start({ serverMaxBytes: CONNECTION_BYTES_BUFFERED_MAX });
    const reached = boundOrAllRead(64);
    for (let i = 0; i < 20; i++) stalled.read(ino, i * RPC_IO_BYTES_MAX, RPC_IO_BYTES_MAX);
    assert.equal(await reached, 'blocked');
    const before = reads.started;
    const err = await failure(call((cb) => raw.files.Read({ ino, offset: 0, length: MiB }, { deadline: Date.now() + 300 }, cb)));
    assert.equal(err.code, 4, `got ${err.code} ${err.message}`); // DEADLINE_EXCEEDED
    assert.equal(reads.started, before, 'the waiting call never ran');
  });
});
