/**
 * Memory of a stalled Dma.Stream (the op-stream account, stream-memory.ts), over a real
 * gRPC connection to an in-process RpcServer: a client that asks for far more DMA reads
 * than the bound and never reads its replies makes the server stop starting ops with at
 * most STREAM_BYTES_BUFFERED_MAX held; a cancel gives it all back. Synchronised on the
 * account's own signals ('held', 'blocked', 'closed'), never on time.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import pino from 'pino';
import { RpcServer } from '../../server/rpc/rpc-server';
import { STREAM_BYTES_BUFFERED_MAX } from '../../server/rpc/limits';
import type { StreamAccount } from '../../server/rpc/stream-memory';
import type { RawClients } from '../../client/raw-clients';
import type { PinResponse__Output } from '../../wire/generated/daxd/v1/PinResponse';
import type { SessionInfo__Output } from '../../wire/generated/daxd/v1/SessionInfo';
import { freshDax, writtenFile, type DaxVolume } from '../support/dax-volume';
import { call, rawClients } from '../support/raw-rpc';
import { MiB } from '../support/units';

describe('Dma.Stream: a client that stops reading cannot grow the server heap', function () {
  this.timeout(60_000);
  let volume: DaxVolume;
  let server: RpcServer;
  let raw: RawClients;

  before(async function () {
    volume = await freshDax(64 * MiB);
    server = await RpcServer.start({ fs: volume.fs, dax: volume.dax, log: pino({ level: 'silent' }), address: '127.0.0.1:0' });
    raw = rawClients(server.address);
  });

  after(async function () {
    raw.close();
    await server.stop(1000);
    await volume.fs.unmount();
  });

  it('512 reads of 4 MiB asked, nothing read: <= STREAM_BYTES_BUFFERED_MAX held, ops stop starting; cancel releases it all', async function () {
    const ino = await writtenFile(volume, 'dma-memory', 1024, (pg) => pg & 0xff);
    const session = await call<SessionInfo__Output>((cb) => raw.session.Open({ client_name: 'dma-memory' }, cb));
    const pin = await call<PinResponse__Output>((cb) => raw.dma.Pin({ session_id: session.session_id, ino, first_pgoff: 0, npages: 1024 }, cb));
    let started = 0;
    const dmaRead = volume.dax.dmaRead.bind(volume.dax);
    volume.dax.dmaRead = (...args: Parameters<typeof dmaRead>) => { started++; return dmaRead(...args); };
    const memory = server.streamMemory;
    const stream = raw.dma.Stream();
    stream.on('error', () => undefined); // CANCELLED, after cancel()
    const held = once(memory, 'held') as Promise<[StreamAccount]>;
    const total = 512;
    stream.write({ ops: Array.from({ length: total }, (_, id) => ({ id, session_id: session.session_id, pin_id: pin.pin_id, access: 'READ' as const, length: 4 * MiB })) });
    await held;
    while (memory.bytes < STREAM_BYTES_BUFFERED_MAX - 4 * MiB) await once(memory, 'blocked');
    assert.ok(memory.server.peakBytes <= STREAM_BYTES_BUFFERED_MAX, `peak ${memory.server.peakBytes} bytes > ${STREAM_BYTES_BUFFERED_MAX}`);
    assert.ok(started < total / 2, `${started} of ${total} DMA reads started: the server kept going`);
    const closed = once(memory, 'closed');
    stream.cancel();
    await closed;
    assert.equal(memory.bytes, 0, 'cancel gives back every byte');
  });
});
