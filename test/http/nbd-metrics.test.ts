/**
 * The NBD front end in /metrics and the admin API, moved by known NBD requests sent over a
 * raw socket (test/support/raw-nbd.ts: one request is one known effect):
 * - daxd_nbd_connections follows connections open (from accept, through the handshake, to
 *   the close); daxd_nbd_connections_opened_total counts them;
 * - daxd_nbd_request_duration_seconds counts each request by command and outcome (`ok`,
 *   or the NBD error name);
 * - daxd_io_ops_total / daxd_io_bytes_total{path="nbd"} count READ and WRITE bytes;
 * - GET /api/v1/nbd lists the connections (export null during the handshake, the file name
 *   after GO) and matches its schema.
 */
import assert from 'node:assert/strict';
import { nbdSchema } from '../../server/http/admin-schemas';
import { RawNbd, W } from '../support/raw-nbd';
import { PAGE } from '../support/units';
import { until } from '../support/until';
import { getJson, rpc, scrape, startHttpDaxd, validate, type HttpDaxd } from './fixture';

interface NbdApi {
  address: string | null;
  total: number;
  connections: Array<{ id: number; peer: string; export: string | null; openedAtMs: number; ageMs: number; inFlight: number }>;
}

describe('NBD metrics and GET /api/v1/nbd after known NBD requests', function () {
  this.timeout(60_000);
  let s: HttpDaxd;
  const open: RawNbd[] = [];

  before(async function () {
    s = await startHttpDaxd('nbd-metrics');
  });

  after(async function () {
    for (const c of open) c.end();
    await s?.stop();
  });

  async function connect(): Promise<RawNbd> {
    const c = await RawNbd.connect(s.nbd);
    open.push(c);
    return c;
  }

  const gauge = async () => (await scrape(s.base)).value('daxd_nbd_connections');

  it('daxd_nbd_connections: +1 at accept, still 1 after GO, back to 0 at close; /api/v1/nbd lists the connection', async function () {
    const before = await scrape(s.base);
    assert.equal(before.types.get('daxd_nbd_connections'), 'gauge');
    assert.equal(before.value('daxd_nbd_connections'), 0);
    await rpc(s.raw).create('conn.img');
    const c = await connect();
    await c.greet();
    assert.equal(await gauge(), 1, 'a connection in its handshake counts');
    const during = (await getJson<NbdApi>(s.base, '/api/v1/nbd')).body;
    validate(nbdSchema, during, '/api/v1/nbd');
    assert.equal(during.address, s.nbd);
    assert.equal(during.total, 1);
    assert.equal(during.connections[0].export, null, 'no export during the handshake');
    assert.match(during.connections[0].peer, /^127\.0\.0\.1:\d+$/);
    await c.go('conn.img', { structured: true });
    const after = (await getJson<NbdApi>(s.base, '/api/v1/nbd')).body;
    validate(nbdSchema, after, '/api/v1/nbd');
    assert.deepEqual(after.connections.map((x) => [x.id, x.export, x.inFlight]), [[during.connections[0].id, 'conn.img', 0]]);
    assert.equal(await gauge(), 1);
    c.end();
    await until(async () => (await gauge()) === 0, 'daxd_nbd_connections back to 0 after the close');
    assert.equal((await getJson<NbdApi>(s.base, '/api/v1/nbd')).body.total, 0);
    const end = await scrape(s.base);
    assert.equal(end.value('daxd_nbd_connections_opened_total') - before.value('daxd_nbd_connections_opened_total'), 1);
  });

  it('request durations by command and outcome; NBD READ/WRITE bytes under path="nbd"', async function () {
    const ino = await rpc(s.raw).create('io.img');
    await rpc(s.raw).truncate(ino, 16 * PAGE);
    const c = await connect();
    await c.greet();
    await c.go('io.img', { structured: true });
    const before = await scrape(s.base);
    assert.equal((await c.command(W.NBD_CMD_WRITE, { offset: 0, length: 3 * PAGE, data: Buffer.alloc(3 * PAGE, 7) })).error, 0);
    assert.deepEqual(await c.read(100, 5000), Buffer.alloc(5000, 7));
    assert.equal((await c.command(W.NBD_CMD_FLUSH)).error, 0);
    assert.equal((await c.command(W.NBD_CMD_TRIM, { offset: 2 * PAGE, length: PAGE })).error, 0);
    // Past the end: EINVAL (a READ), ENOSPC (a WRITE); neither moves the I/O counters.
    assert.equal((await c.command(W.NBD_CMD_READ, { offset: 16 * PAGE, length: PAGE })).error, W.NBD_EINVAL);
    assert.equal((await c.command(W.NBD_CMD_WRITE, { offset: 16 * PAGE, length: 10, data: Buffer.alloc(10) })).error, W.NBD_ENOSPC);
    const after = await scrape(s.base);
    const d = (name: string, labels: Record<string, string> = {}) => after.value(name, labels) - before.value(name, labels);
    const count = 'daxd_nbd_request_duration_seconds_count';
    assert.equal(after.types.get('daxd_nbd_request_duration_seconds'), 'histogram');
    assert.deepEqual(
      {
        write: d(count, { command: 'WRITE', outcome: 'ok' }), read: d(count, { command: 'READ', outcome: 'ok' }),
        flush: d(count, { command: 'FLUSH', outcome: 'ok' }), trim: d(count, { command: 'TRIM', outcome: 'ok' }),
        readEinval: d(count, { command: 'READ', outcome: 'EINVAL' }), writeEnospc: d(count, { command: 'WRITE', outcome: 'ENOSPC' }),
        all: d(count),
      },
      { write: 1, read: 1, flush: 1, trim: 1, readEinval: 1, writeEnospc: 1, all: 6 },
    );
    assert.ok(d('daxd_nbd_request_duration_seconds_sum', { command: 'FLUSH' }) > 0, 'a FLUSH takes time');
    assert.equal(d('daxd_io_ops_total', { path: 'nbd', direction: 'write' }), 1);
    assert.equal(d('daxd_io_bytes_total', { path: 'nbd', direction: 'write' }), 3 * PAGE);
    assert.equal(d('daxd_io_ops_total', { path: 'nbd', direction: 'read' }), 1);
    assert.equal(d('daxd_io_bytes_total', { path: 'nbd', direction: 'read' }), 5000);
    for (const path of ['file', 'mapping', 'dma']) assert.equal(d('daxd_io_ops_total', { path }), 0, `NBD I/O counted as ${path}`);
  });
});
