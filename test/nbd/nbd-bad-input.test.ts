/**
 * The NBD bad-input table: one row per malformed, out-of-range or unsupported input sent
 * over a raw socket, with the spec's answer: an option error reply, a request error value,
 * or the hard disconnect. After every row that is not a disconnect, the same connection
 * must still work (a READ or an option still gets its answer): bad input costs the client
 * one request, never the server.
 */
import assert from 'node:assert/strict';
import { NBD_OPTION_BYTES_MAX, NBD_OPTIONS_MAX, NBD_REQUEST_BYTES_MAX } from '../../server/nbd/limits';
import { ClosedError, goData, metaData, nbdFixture, RawNbd, W, type NbdFixture } from '../support/raw-nbd';
import { MiB, PAGE } from '../support/units';

const EXPORT_BYTES = 1 * MiB;

type Expect =
  | { option: number; message?: RegExp }
  | { errno: number; message?: RegExp }
  | { disconnect: true }
  | { ok: true };

interface Row {
  name: string;
  /** 'option': after greet, in option haggling; 'transmission': after GO (structured unless told); 'raw': nothing done yet. */
  phase: 'raw' | 'option' | 'transmission' | 'simple';
  /** Sends the bad input; for option rows, the caller reads the final option reply. */
  send(c: RawNbd): void | Promise<void>;
  expect: Expect;
  /** Fixture options for this row. */
  fixture?: Parameters<typeof nbdFixture>[0];
}

const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};

const ROWS: Row[] = [
  // ---- handshake
  { name: 'unknown client flags', phase: 'raw', send: async (c) => void (await c.greet(0x80)), expect: { disconnect: true } },
  { name: 'bad option magic', phase: 'option', send: (c) => c.sendOption(W.NBD_OPT_GO, goData('disk'), 0x1234n), expect: { disconnect: true } },
  { name: 'unknown option', phase: 'option', send: (c) => c.sendOption(99, Buffer.from('junk')), expect: { option: W.NBD_REP_ERR_UNSUP } },
  {
    name: 'option data over NBD_OPTION_BYTES_MAX (discarded unread)', phase: 'option',
    send: (c) => c.sendOption(W.NBD_OPT_GO, Buffer.alloc(NBD_OPTION_BYTES_MAX + 1)), expect: { option: W.NBD_REP_ERR_TOO_BIG, message: /NBD_OPTION_BYTES_MAX/ },
  },
  { name: 'LIST with data', phase: 'option', send: (c) => c.sendOption(W.NBD_OPT_LIST, Buffer.from('x')), expect: { option: W.NBD_REP_ERR_INVALID } },
  { name: 'STRUCTURED_REPLY with data', phase: 'option', send: (c) => c.sendOption(W.NBD_OPT_STRUCTURED_REPLY, Buffer.from('x')), expect: { option: W.NBD_REP_ERR_INVALID } },
  { name: 'STARTTLS (TLS off)', phase: 'option', send: (c) => c.sendOption(W.NBD_OPT_STARTTLS), expect: { option: W.NBD_REP_ERR_POLICY, message: /--nbd-tls off/ } },
  { name: 'GO shorter than its fixed fields', phase: 'option', send: (c) => c.sendOption(W.NBD_OPT_GO, Buffer.alloc(3)), expect: { option: W.NBD_REP_ERR_INVALID } },
  {
    name: 'GO name length overruns the option', phase: 'option',
    send: (c) => c.sendOption(W.NBD_OPT_GO, Buffer.concat([u32(1000), Buffer.from('disk'), Buffer.alloc(2)])), expect: { option: W.NBD_REP_ERR_INVALID, message: /overruns/ },
  },
  {
    name: 'GO info count disagrees with the length', phase: 'option',
    send: (c) => {
      const d = goData('disk', [W.NBD_INFO_NAME]);
      c.sendOption(W.NBD_OPT_GO, d.subarray(0, d.length - 2));
    },
    expect: { option: W.NBD_REP_ERR_INVALID },
  },
  { name: 'GO of an unknown export', phase: 'option', send: (c) => c.sendOption(W.NBD_OPT_GO, goData('nope')), expect: { option: W.NBD_REP_ERR_UNKNOWN, message: /nope/ } },
  {
    name: 'GO of the empty name without a default export', phase: 'option',
    send: (c) => c.sendOption(W.NBD_OPT_GO, goData('')), expect: { option: W.NBD_REP_ERR_UNKNOWN, message: /--nbd-default-export/ },
  },
  {
    name: 'GO name that is not UTF-8', phase: 'option',
    send: (c) => c.sendOption(W.NBD_OPT_GO, Buffer.concat([u32(2), Buffer.from([0xff, 0xfe]), Buffer.alloc(2)])), expect: { option: W.NBD_REP_ERR_INVALID, message: /UTF-8/ },
  },
  {
    name: 'GO name longer than a file name', phase: 'option',
    send: (c) => c.sendOption(W.NBD_OPT_GO, goData('x'.repeat(300))), expect: { option: W.NBD_REP_ERR_INVALID, message: /ENAMETOOLONG/ },
  },
  {
    name: 'SET_META_CONTEXT before STRUCTURED_REPLY', phase: 'option',
    send: (c) => c.sendOption(W.NBD_OPT_SET_META_CONTEXT, metaData('disk', [W.BASE_ALLOCATION])), expect: { option: W.NBD_REP_ERR_INVALID, message: /STRUCTURED_REPLY/ },
  },
  {
    name: 'SET_META_CONTEXT query length overruns the option', phase: 'option',
    send: async (c) => {
      c.sendOption(W.NBD_OPT_STRUCTURED_REPLY);
      await c.optionReply();
      c.structured = true;
      c.sendOption(W.NBD_OPT_SET_META_CONTEXT, Buffer.concat([u32(4), Buffer.from('disk'), u32(1), u32(500), Buffer.from('base:')]));
    },
    expect: { option: W.NBD_REP_ERR_INVALID, message: /overruns/ },
  },
  {
    name: 'LIST_META_CONTEXT with bytes after the last query', phase: 'option',
    send: async (c) => {
      c.sendOption(W.NBD_OPT_STRUCTURED_REPLY);
      await c.optionReply();
      c.structured = true;
      c.sendOption(W.NBD_OPT_LIST_META_CONTEXT, Buffer.concat([metaData('disk', []), Buffer.from('zz')]));
    },
    expect: { option: W.NBD_REP_ERR_INVALID },
  },
  {
    name: 'STRUCTURED_REPLY twice', phase: 'option',
    send: async (c) => {
      c.sendOption(W.NBD_OPT_STRUCTURED_REPLY);
      await c.optionReply();
      c.structured = true;
      c.sendOption(W.NBD_OPT_STRUCTURED_REPLY);
    },
    expect: { option: W.NBD_REP_ERR_INVALID },
  },
  { name: 'EXPORT_NAME of an unknown export (no error reply exists)', phase: 'option', send: (c) => c.sendOption(W.NBD_OPT_EXPORT_NAME, Buffer.from('nope')), expect: { disconnect: true } },
  {
    name: 'more than NBD_OPTIONS_MAX options', phase: 'option',
    send: async (c) => {
      for (let i = 0; i < NBD_OPTIONS_MAX; i++) {
        c.sendOption(99);
        try {
          await c.optionReply();
        } catch (err) {
          throw new Error(`option ${i + 1}: ${String(err)}`, { cause: err });
        }
      }
      c.sendOption(99);
    },
    expect: { disconnect: true },
  },
  { name: 'handshake not finished within NBD_HANDSHAKE_MS_MAX', phase: 'option', fixture: { limits: { handshakeMsMax: 100 } }, send: () => undefined, expect: { disconnect: true } },

  // ---- transmission
  { name: 'bad request magic', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_READ, { length: PAGE, magic: 0xdeadbeef }), expect: { disconnect: true } },
  { name: 'unknown command', phase: 'transmission', send: (c) => void c.request(9, { length: PAGE }), expect: { errno: W.NBD_EINVAL, message: /unknown NBD command 9/ } },
  { name: 'unknown command flag', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_READ, { length: PAGE, flags: 1 << 9 }), expect: { errno: W.NBD_EINVAL, message: /flags/ } },
  { name: 'NO_HOLE on a WRITE (flag of another command)', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_WRITE, { data: Buffer.alloc(PAGE), flags: W.NBD_CMD_FLAG_NO_HOLE }), expect: { errno: W.NBD_EINVAL } },
  { name: 'DF without structured replies', phase: 'simple', send: (c) => void c.request(W.NBD_CMD_READ, { length: PAGE, flags: W.NBD_CMD_FLAG_DF }), expect: { errno: W.NBD_EINVAL } },
  {
    name: 'READ longer than NBD_REQUEST_BYTES_MAX', phase: 'transmission',
    send: (c) => void c.request(W.NBD_CMD_READ, { length: NBD_REQUEST_BYTES_MAX + 1 }), expect: { errno: W.NBD_EINVAL, message: /NBD_REQUEST_BYTES_MAX/ },
  },
  {
    name: 'WRITE longer than NBD_REQUEST_BYTES_MAX (payload discarded)', phase: 'transmission',
    send: (c) => void c.request(W.NBD_CMD_WRITE, { data: Buffer.alloc(NBD_REQUEST_BYTES_MAX + 1) }), expect: { errno: W.NBD_EINVAL, message: /NBD_REQUEST_BYTES_MAX/ },
  },
  { name: 'WRITE past the end', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_WRITE, { offset: EXPORT_BYTES - 10, data: Buffer.alloc(PAGE) }), expect: { errno: W.NBD_ENOSPC } },
  { name: 'WRITE_ZEROES past the end', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_WRITE_ZEROES, { offset: EXPORT_BYTES, length: 1 }), expect: { errno: W.NBD_ENOSPC } },
  { name: 'READ past the end', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_READ, { offset: EXPORT_BYTES - PAGE, length: 2 * PAGE }), expect: { errno: W.NBD_EINVAL, message: /past the end/ } },
  { name: 'READ past the end, simple replies', phase: 'simple', send: (c) => void c.request(W.NBD_CMD_READ, { offset: EXPORT_BYTES, length: 1 }), expect: { errno: W.NBD_EINVAL } },
  { name: 'READ at offset 2^63', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_READ, { offset: 1n << 63n, length: PAGE }), expect: { errno: W.NBD_EINVAL } },
  { name: 'TRIM past the end', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_TRIM, { offset: 0, length: EXPORT_BYTES + 1 }), expect: { errno: W.NBD_EINVAL } },
  { name: 'CACHE past the end', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_CACHE, { offset: EXPORT_BYTES, length: PAGE }), expect: { errno: W.NBD_EINVAL } },
  { name: 'FLUSH with a length', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_FLUSH, { length: PAGE }), expect: { errno: W.NBD_EINVAL } },
  { name: 'BLOCK_STATUS of length 0', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_BLOCK_STATUS, { length: 0 }), expect: { errno: W.NBD_EINVAL } },
  { name: 'BLOCK_STATUS past the end', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_BLOCK_STATUS, { offset: EXPORT_BYTES, length: PAGE }), expect: { errno: W.NBD_EINVAL } },
  {
    name: 'BLOCK_STATUS without base:allocation selected', phase: 'simple',
    send: (c) => void c.request(W.NBD_CMD_BLOCK_STATUS, { length: PAGE }), expect: { errno: W.NBD_EINVAL },
  },

  // ---- boundaries that must work
  { name: 'READ ending exactly at the end', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_READ, { offset: EXPORT_BYTES - PAGE, length: PAGE }), expect: { ok: true } },
  { name: 'WRITE of exactly NBD_REQUEST_BYTES_MAX', phase: 'transmission', fixture: { limits: {} }, send: (c) => void c.request(W.NBD_CMD_WRITE, { data: Buffer.alloc(NBD_REQUEST_BYTES_MAX) }), expect: { ok: true } },
  { name: 'WRITE_ZEROES with FAST_ZERO', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_WRITE_ZEROES, { length: PAGE, flags: W.NBD_CMD_FLAG_FAST_ZERO }), expect: { ok: true } },
  { name: 'FUA on a READ (clients do send it)', phase: 'transmission', send: (c) => void c.request(W.NBD_CMD_READ, { length: PAGE, flags: W.NBD_CMD_FLAG_FUA }), expect: { ok: true } },
];

describe('NBD server: bad input (raw socket)', function () {
  let f: NbdFixture | null = null;

  afterEach(async function () {
    await f?.stop();
    f = null;
  });

  async function fixture(row: Row): Promise<NbdFixture> {
    // A WRITE of NBD_REQUEST_BYTES_MAX needs room on the volume.
    const big = row.name.includes('exactly NBD_REQUEST_BYTES_MAX');
    const fx = await nbdFixture(row.fixture ?? {}, big ? 128 * MiB : 64 * MiB);
    const { ino } = await fx.fs.create('disk', true);
    await fx.fs.truncate(ino, big ? NBD_REQUEST_BYTES_MAX : EXPORT_BYTES);
    return fx;
  }

  for (const row of ROWS) {
    const e = row.expect;
    const label = 'disconnect' in e ? 'hard disconnect' : 'option' in e ? `option error 0x${e.option.toString(16)}` : 'errno' in e ? `errno ${e.errno}` : 'success';
    it(`${row.name} -> ${label}`, async function () {
      f = await fixture(row);
      const c = await f.connect();
      if (row.phase !== 'raw') await c.greet();
      if (row.phase === 'transmission') await c.go('disk');
      if (row.phase === 'simple') await c.go('disk', { structured: false });
      await row.send(c);
      if ('disconnect' in e) {
        await assert.rejects(row.phase === 'transmission' || row.phase === 'simple' ? c.reply() : c.optionReply(), ClosedError);
        await c.closed;
        return;
      }
      if ('option' in e) {
        const replies = await c.optionReplies();
        const last = replies[replies.length - 1];
        assert.equal(last.type.toString(16), e.option.toString(16), last.data.toString());
        if (e.message) assert.match(last.data.toString(), e.message);
        // Still negotiating: the export can be opened on the same connection.
        assert.equal((await c.go('disk')).size, EXPORT_BYTES);
        return;
      }
      const msgs = await c.replyTo();
      const error = msgs.find((m) => m.error !== 0);
      if ('ok' in e) {
        assert.equal(error, undefined, error?.message);
      } else {
        assert.equal(error?.error, e.errno, JSON.stringify(msgs.map((m) => [m.type, m.error, m.message])));
        if (c.structured) assert.equal(error?.type, W.NBD_REPLY_TYPE_ERROR);
        if (e.message) assert.match(error?.message ?? '', e.message);
      }
      // The connection still serves.
      assert.equal((await c.read(0, PAGE)).length, PAGE);
    });
  }

  it('one connection over NBD_CONNECTIONS_MAX is closed before the greeting; the others keep working', async function () {
    f = await nbdFixture({ limits: { connectionsMax: 2 } });
    await f.fs.create('disk', true);
    const a = await f.connect();
    const b = await f.connect();
    await a.greet();
    await b.greet();
    const c = await f.connect();
    await assert.rejects(c.bytes(18), ClosedError);
    assert.equal((await a.go('disk')).size, 0);
  });

  it(`the table has at least 35 failing rows`, function () {
    assert.ok(ROWS.filter((r) => !('ok' in r.expect)).length >= 35, String(ROWS.length));
  });
});
