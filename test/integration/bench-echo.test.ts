/**
 * The bench's echo baseline (test/bench/echo-server.ts) must cost the SDK what daxd costs
 * it, but for daxd itself: it answers StatVolume with daxd's data-path limits, so the
 * SDK fetches them once (as against daxd) instead of trying again before every I/O (an
 * extra unary call per op that made the echo look 4x slower than daxd at QD1).
 */
import assert from 'node:assert/strict';
import type * as grpc from '@grpc/grpc-js';
import { DaxClient } from '../../client';
import { MESSAGE_BYTES_MAX, RPC_IO_BYTES_MAX } from '../../wire/limits';
import { startEchoServer } from '../bench/echo-server';

describe('bench echo server', function () {
  this.timeout(30_000);

  it('answers StatVolume with daxd\'s limits: the SDK fetches them once over many I/Os', async function () {
    const { address, server } = await startEchoServer();
    const client = DaxClient.connect(address);
    try {
      for (let i = 0; i < 20; i++) {
        assert.equal((await client.read(1, i * 4096, 4096)).length, 4096);
        assert.equal((await client.write(1, i * 4096, Buffer.alloc(4096, i))).written, 4096);
      }
      assert.deepEqual(await client.dataPathLimits(), { ioBytesMax: RPC_IO_BYTES_MAX, messageBytesMax: MESSAGE_BYTES_MAX });
      const limits = (client as unknown as { serverLimits: { fetches: number } }).serverLimits;
      assert.equal(limits.fetches, 1, 'StatVolume calls made by 40 I/Os');
    } finally {
      client.close();
      await new Promise<void>((resolve) => (server as grpc.Server).tryShutdown(() => resolve()));
    }
  });
});
