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

  /**
   * Why the protocol fuzzer opens a new connection every CASES_PER_CONNECTION cases: the
   * server's HTTP/2 library (nghttp2 >= 1.57, the rapid-reset defence) closes a connection
   * whose client resets more streams than its budget (burst 1000, then 33 per second) with
   * GOAWAY INTERNAL_ERROR, and every call in flight on it then ends INTERNAL "Session closed
   * with error code 2" on a grpc-js client. daxd sends no such GOAWAY itself.
   */
  async function resetStreams(count: number): Promise<number | null> {
    const session = http2.connect(`http://${server.address}`);
    session.on('error', () => undefined);
    let goaway: number | null = null;
    session.on('goaway', (code: number) => (goaway = code));
    try {
      await once(session, 'remoteSettings');
      for (let i = 0; i < count && goaway === null && !session.destroyed; i++) {
        const stream = session.request({ ':method': 'POST', ':path': '/daxd.v1.Files/StatVolume', 'content-type': 'application/grpc', te: 'trailers' });
        stream.on('error', () => undefined);
        stream.close(http2.constants.NGHTTP2_CANCEL);
        if (i % 50 === 49) await new Promise((resolve) => setImmediate(resolve));
      }
      // A PING round trip: every RST_STREAM sent before it has been processed by the server.
      if (!session.destroyed) await new Promise<void>((resolve) => session.ping(() => resolve()));
      await new Promise((resolve) => setImmediate(resolve));
      return goaway;
    } finally {
      session.destroy();
    }
  }

  it('a client that resets 800 streams at once keeps its connection; 1500 resets get GOAWAY INTERNAL_ERROR from the HTTP/2 library', async function () {
    this.timeout(30_000);
    assert.equal(await resetStreams(800), null);
    assert.equal(await resetStreams(1_500), http2.constants.NGHTTP2_INTERNAL_ERROR);
  });
});
