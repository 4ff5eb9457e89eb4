/**
 * The transport settings daxd relies on for bulk data (README "Limits": FLOW_CONTROL_WINDOW_BYTES): the server
 * advertises a 16 MiB HTTP/2 stream window and grants a 16 MiB connection window, set
 * through grpc-js internals (server/rpc/flow-control.ts) that a grpc-js upgrade could move.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import path from 'node:path';
import { FLOW_CONTROL_WINDOW_BYTES, STREAMS_PER_CONNECTION_MAX } from '../../server/rpc/limits';
import { startServer, tempDir, type StartedServer } from '../support/start-server';

describe('transport: flow-control windows and stream limit', function () {
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;

  before(async function () {
    tmp = tempDir();
    server = await startServer({ volumePath: path.join(tmp.dir, 'transport.vol') });
  });

  after(async function () {
    if (server) assert.deepEqual(await server.stop(), { code: 0, signal: null });
    tmp?.remove();
  });

  it('the server advertises a 16 MiB stream window and 1024 streams, and grants a 16 MiB connection window', async function () {
    const session = http2.connect(`http://${server.address}`);
    try {
      const [settings] = (await once(session, 'remoteSettings')) as [http2.Settings];
      assert.equal(settings.initialWindowSize, FLOW_CONTROL_WINDOW_BYTES);
      assert.equal(settings.maxConcurrentStreams, STREAMS_PER_CONNECTION_MAX);
      // The server's WINDOW_UPDATE precedes its PING ACK on the connection.
      await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
      assert.equal(session.state.remoteWindowSize, FLOW_CONTROL_WINDOW_BYTES);
    } finally {
      session.close();
    }
  });
});
