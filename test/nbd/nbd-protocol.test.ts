/**
 * The NBD server's happy paths over a raw socket (test/support/raw-nbd.ts), against an
 * in-process engine: the handshake and its options, every command, what each does to
 * the file (holes, unwritten blocks, size), durability of FLUSH and FUA across a power
 * loss, the layout-break policies of TRIM over a pinned page, DISC draining, the export
 * holding its inode, and backpressure.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { FileSystem } from '../../server/fs/filesystem';
import { NBD_LAYOUT_BREAK_TIMEOUT_MS, NBD_REQUEST_BYTES_MAX } from '../../server/nbd/limits';
import { goData, metaData, nbdFixture, W, type NbdFixture } from '../support/raw-nbd';
import { TestOwner } from '../support/test-owner';
import { until } from '../support/until';
import { MiB, PAGE } from '../support/units';

const FILE_BYTES = 1 * MiB;

describe('NBD server: protocol', function () {
  let f: NbdFixture;
  let ino: number;

  beforeEach(async function () {
    f = await nbdFixture();
    ino = (await f.fs.create('disk', true)).ino;
    await f.fs.truncate(ino, FILE_BYTES);
  });

  afterEach(async function () {
    await f.stop();
  });

  describe('handshake', function () {
    it('greets fixed newstyle with NO_ZEROES', async function () {
      const c = await f.connect();
      const g = await c.greet();
      assert.equal(g.magic, W.NBDMAGIC);
      assert.equal(g.opt, W.IHAVEOPT);
      assert.equal(g.flags, W.NBD_FLAG_FIXED_NEWSTYLE | W.NBD_FLAG_NO_ZEROES);
    });

    it('LIST names every file, then ACK', async function () {
      await f.fs.create('other', true);
      const c = await f.connect();
      await c.greet();
      c.sendOption(W.NBD_OPT_LIST);
      const replies = await c.optionReplies();
      const names = replies.filter((r) => r.type === W.NBD_REP_SERVER).map((r) => r.data.subarray(4, 4 + r.data.readUInt32BE(0)).toString());
      assert.deepEqual(names.sort(), ['disk', 'other']);
      assert.equal(replies[replies.length - 1].type, W.NBD_REP_ACK);
    });

    it('INFO answers EXPORT (size, truthful flags), BLOCK_SIZE (1, 4096, NBD_REQUEST_BYTES_MAX), NAME and DESCRIPTION', async function () {
      const c = await f.connect();
      await c.greet();
      c.sendOption(W.NBD_OPT_STRUCTURED_REPLY);
      assert.equal((await c.optionReply()).type, W.NBD_REP_ACK);
      c.sendOption(W.NBD_OPT_INFO, goData('disk', [W.NBD_INFO_NAME, W.NBD_INFO_DESCRIPTION, W.NBD_INFO_BLOCK_SIZE]));
      const replies = await c.optionReplies();
      assert.equal(replies[replies.length - 1].type, W.NBD_REP_ACK);
      const info = new Map(replies.filter((r) => r.type === W.NBD_REP_INFO).map((r) => [r.data.readUInt16BE(0), r.data.subarray(2)]));
      const exp = info.get(W.NBD_INFO_EXPORT) as Buffer;
      assert.equal(Number(exp.readBigUInt64BE(0)), FILE_BYTES);
      const flags = exp.readUInt16BE(8);
      for (const flag of [W.NBD_FLAG_HAS_FLAGS, W.NBD_FLAG_SEND_FLUSH, W.NBD_FLAG_SEND_FUA, W.NBD_FLAG_SEND_TRIM, W.NBD_FLAG_SEND_WRITE_ZEROES,
        W.NBD_FLAG_SEND_FAST_ZERO, W.NBD_FLAG_CAN_MULTI_CONN, W.NBD_FLAG_SEND_CACHE, W.NBD_FLAG_SEND_DF]) {
        assert.ok((flags & flag) !== 0, `flag 0x${flag.toString(16)} in 0x${flags.toString(16)}`);
      }
      assert.equal(flags & 2, 0, 'not read-only');
      const bs = info.get(W.NBD_INFO_BLOCK_SIZE) as Buffer;
      assert.deepEqual([bs.readUInt32BE(0), bs.readUInt32BE(4), bs.readUInt32BE(8)], [1, 4096, NBD_REQUEST_BYTES_MAX]);
      assert.ok(NBD_REQUEST_BYTES_MAX >= 32 * MiB);
      assert.equal(info.get(W.NBD_INFO_NAME)?.toString(), 'disk');
      assert.match(info.get(W.NBD_INFO_DESCRIPTION)?.toString() ?? '', /disk/);
      // The connection stays in option haggling: GO still works.
      assert.equal((await c.go('disk', { structured: false })).size, FILE_BYTES);
    });

    it('SEND_DF is advertised only with structured replies', async function () {
      const c = await f.connect();
      await c.greet();
      const { flags } = await c.go('disk', { structured: false });
      assert.equal(flags & W.NBD_FLAG_SEND_DF, 0);
    });

    it('LIST_META_CONTEXT offers base:allocation for no query, "base:" and "base:allocation", nothing for other namespaces', async function () {
      const c = await f.connect();
      await c.greet();
      c.sendOption(W.NBD_OPT_STRUCTURED_REPLY);
      await c.optionReply();
      for (const [queries, expected] of [[[], 1], [['base:'], 1], [['base:allocation'], 1], [['qemu:dirty-bitmap:x'], 0]] as const) {
        c.sendOption(W.NBD_OPT_LIST_META_CONTEXT, metaData('disk', [...queries]));
        const replies = await c.optionReplies();
        const contexts = replies.filter((r) => r.type === W.NBD_REP_META_CONTEXT).map((r) => r.data.subarray(4).toString());
        assert.deepEqual(contexts, expected === 1 ? ['base:allocation'] : [], JSON.stringify(queries));
        assert.equal(replies[replies.length - 1].type, W.NBD_REP_ACK);
      }
    });

    it('the empty name is the default export when one is configured', async function () {
      await f.stop();
      f = await nbdFixture({ defaultExport: 'disk' });
      ino = (await f.fs.create('disk', true)).ino;
      await f.fs.truncate(ino, FILE_BYTES);
      const c = await f.connect();
      await c.greet();
      c.sendOption(W.NBD_OPT_INFO, goData('', [W.NBD_INFO_NAME]));
      const replies = await c.optionReplies();
      const name = replies.find((r) => r.type === W.NBD_REP_INFO && r.data.readUInt16BE(0) === W.NBD_INFO_NAME);
      assert.equal(name?.data.subarray(2).toString(), 'disk');
      assert.equal((await c.go('')).size, FILE_BYTES);
    });

    it('EXPORT_NAME (old clients) enters transmission with size and flags, no zeroes after NO_ZEROES', async function () {
      const c = await f.connect();
      await c.greet();
      c.sendOption(W.NBD_OPT_EXPORT_NAME, Buffer.from('disk'));
      const r = await c.bytes(10);
      assert.equal(Number(r.readBigUInt64BE(0)), FILE_BYTES);
      assert.ok((r.readUInt16BE(8) & W.NBD_FLAG_SEND_FLUSH) !== 0);
      assert.equal((await c.command(W.NBD_CMD_FLUSH)).error, 0, 'the next bytes are a reply, not zero padding');
    });

    it('ABORT is acknowledged and the server closes', async function () {
      const c = await f.connect();
      await c.greet();
      c.sendOption(W.NBD_OPT_ABORT);
      assert.equal((await c.optionReply()).type, W.NBD_REP_ACK);
      await c.closed;
    });
  });

  describe('commands', function () {
    it('WRITE then READ round-trips at odd offsets, with simple replies', async function () {
      const c = await f.connect();
      await c.greet();
      await c.go('disk', { structured: false });
      const data = randomBytes(3 * PAGE + 17);
      assert.equal((await c.command(W.NBD_CMD_WRITE, { offset: 5000, data })).error, 0);
      assert.deepEqual(await c.read(5000, data.length), data);
      assert.deepEqual(await f.fs.read(ino, 5000, data.length), data, 'the engine holds what NBD wrote');
      assert.equal(f.fs.stat(ino).sizeBytes, FILE_BYTES, 'writes inside the export keep the size');
    });

    it('requests split anywhere (a byte at a time) and many in one segment parse the same', async function () {
      const c = await f.connect();
      await c.greet();
      await c.go('disk');
      c.socket.setNoDelay(true);
      const data = randomBytes(PAGE + 3);
      const header = Buffer.alloc(28);
      header.writeUInt32BE(W.NBD_REQUEST_MAGIC, 0);
      header.writeUInt16BE(W.NBD_CMD_WRITE, 6);
      header.writeBigUInt64BE(77n, 8);
      header.writeBigUInt64BE(123n, 16);
      header.writeUInt32BE(data.length, 24);
      const bytes = Buffer.concat([header, data]);
      for (let i = 0; i < 40; i++) {
        c.write(bytes.subarray(i, i + 1));
        await new Promise((r) => setImmediate(r));
      }
      c.write(bytes.subarray(40));
      const [m] = await c.replyTo();
      assert.deepEqual([m.cookie, m.error], [77n, 0]);
      assert.deepEqual(await f.fs.read(ino, 123, data.length), data);
      // Sixty-four READs in one write: sixty-four answers, each with its cookie.
      const many: Buffer[] = [];
      for (let i = 0; i < 64; i++) {
        const h = Buffer.alloc(28);
        h.writeUInt32BE(W.NBD_REQUEST_MAGIC, 0);
        h.writeUInt16BE(W.NBD_CMD_READ, 6);
        h.writeBigUInt64BE(BigInt(1000 + i), 8);
        h.writeBigUInt64BE(123n, 16);
        h.writeUInt32BE(data.length, 24);
        many.push(h);
      }
      c.write(Buffer.concat(many));
      const seen = new Set<bigint>();
      for (let i = 0; i < 64; i++) {
        const msgs = await c.replyTo();
        const got = Buffer.concat(msgs.filter((x) => x.type === W.NBD_REPLY_TYPE_OFFSET_DATA).map((x) => x.payload.subarray(8)));
        assert.deepEqual(got, data);
        seen.add(msgs[0].cookie);
      }
      assert.equal(seen.size, 64);
    });

    for (const structured of [false, true]) {
      it(`pipelined large READs and WRITEs with distinct data all arrive intact (reused buffers never overwrite bytes on their way; ${structured ? 'structured' : 'simple'})`, async function () {
        await f.stop();
        let done = 0;
        const answered = () => done;
        f = await nbdFixture({ observer: { request: () => void done++ } });
        ino = (await f.fs.create('disk', true)).ino;
        await f.fs.truncate(ino, FILE_BYTES);
        const c = await f.connect();
        await c.greet();
        await c.go('disk', { structured });
        const piece = 128 * 1024 + 512;
        const n = 6;
        const data = randomBytes(n * piece);
        const writes: bigint[] = [];
        for (let i = 0; i < n; i++) writes.push(c.request(W.NBD_CMD_WRITE, { offset: i * piece, data: data.subarray(i * piece, (i + 1) * piece) }));
        for (let i = 0; i < n; i++) assert.equal((await c.reply()).error, 0);
        assert.deepEqual(await f.fs.read(ino, 0, n * piece), data);
        // The client reads nothing until 128 replies (16 MiB) are queued, sent in batches the
        // server answers one at a time: later batches take pooled buffers while the replies
        // of earlier ones still wait in the socket's queue (the kernel's buffers are full).
        c.socket.pause();
        const cookies = new Map<bigint, number>();
        for (let batch = 0; batch < 16; batch++) {
          for (let k = 0; k < 8; k++) cookies.set(c.request(W.NBD_CMD_READ, { offset: ((batch + k) % n) * piece, length: piece }), (batch + k) % n);
          await until(() => answered() === n + (batch + 1) * 8, `batch ${batch} answered`);
        }
        assert.ok(f.nbd.list()[0].buffered.bytes > 2 * MiB, 'replies wait in the server');
        c.socket.resume();
        for (let k = 0; k < cookies.size; k++) {
          const msgs = await c.replyTo();
          const i = cookies.get(msgs[0].cookie) as number;
          const got = structured ? Buffer.concat(msgs.filter((m) => m.type === W.NBD_REPLY_TYPE_OFFSET_DATA).map((m) => m.payload.subarray(8))) : msgs[0].payload;
          assert.ok(got.equals(data.subarray(i * piece, (i + 1) * piece)), `reply ${k} (piece ${i})`);
        }
      });
    }

    it('structured READ: OFFSET_DATA for written pages, OFFSET_HOLE for holes and unwritten pages; DF gives one data chunk', async function () {
      const c = await f.connect();
      await c.greet();
      await c.go('disk');
      const data = randomBytes(2 * PAGE);
      await f.fs.write(ino, 0, data, false);
      await f.fs.fallocate(ino, 'KEEP_SIZE', 4 * PAGE, 2 * PAGE); // unwritten
      const cookie = c.request(W.NBD_CMD_READ, { offset: 0, length: 8 * PAGE });
      const msgs = await c.replyTo();
      const shape = msgs.map((m) => [m.type, Number(m.payload.readBigUInt64BE(0)), m.type === W.NBD_REPLY_TYPE_OFFSET_HOLE ? m.payload.readUInt32BE(8) : m.payload.length - 8]);
      assert.deepEqual(shape, [[W.NBD_REPLY_TYPE_OFFSET_DATA, 0, 2 * PAGE], [W.NBD_REPLY_TYPE_OFFSET_HOLE, 2 * PAGE, 6 * PAGE]]);
      assert.ok(msgs.every((m) => m.cookie === cookie));
      assert.equal(msgs[msgs.length - 1].flags & W.NBD_REPLY_FLAG_DONE, W.NBD_REPLY_FLAG_DONE);
      assert.equal(msgs.filter((m) => m.flags & W.NBD_REPLY_FLAG_DONE).length, 1);
      // A read that starts in a hole and ends in data, unaligned.
      await f.fs.write(ino, 6 * PAGE, data, false);
      c.request(W.NBD_CMD_READ, { offset: 5 * PAGE + 100, length: 2 * PAGE });
      const m2 = await c.replyTo();
      assert.deepEqual(m2.map((m) => [m.type, Number(m.payload.readBigUInt64BE(0))]), [[W.NBD_REPLY_TYPE_OFFSET_HOLE, 5 * PAGE + 100], [W.NBD_REPLY_TYPE_OFFSET_DATA, 6 * PAGE]]);
      // DF: one content chunk, zeros explicit.
      const df = c.request(W.NBD_CMD_READ, { offset: 0, length: 8 * PAGE, flags: W.NBD_CMD_FLAG_DF });
      const m3 = await c.replyTo();
      assert.equal(m3.length, 1);
      assert.equal(m3[0].type, W.NBD_REPLY_TYPE_OFFSET_DATA);
      assert.equal(m3[0].cookie, df);
      assert.deepEqual(m3[0].payload.subarray(8), await f.fs.read(ino, 0, 8 * PAGE));
    });

    it('BLOCK_STATUS reports holes (hole|zero), unwritten (zero) and data (0), merged; REQ_ONE gives one extent', async function () {
      const c = await f.connect();
      await c.greet();
      await c.go('disk');
      await f.fs.write(ino, PAGE, randomBytes(2 * PAGE), false);
      await f.fs.fallocate(ino, 'KEEP_SIZE', 3 * PAGE, PAGE);
      c.request(W.NBD_CMD_BLOCK_STATUS, { offset: 0, length: FILE_BYTES });
      const [m] = await c.replyTo();
      assert.equal(m.type, W.NBD_REPLY_TYPE_BLOCK_STATUS);
      assert.equal(m.payload.readUInt32BE(0), W.BASE_ALLOCATION_ID);
      const extents: number[][] = [];
      for (let at = 4; at < m.payload.length; at += 8) extents.push([m.payload.readUInt32BE(at), m.payload.readUInt32BE(at + 4)]);
      assert.deepEqual(extents, [[PAGE, 3], [2 * PAGE, 0], [PAGE, 2], [FILE_BYTES - 4 * PAGE, 3]]);
      c.request(W.NBD_CMD_BLOCK_STATUS, { offset: 100, length: FILE_BYTES - 100, flags: W.NBD_CMD_FLAG_REQ_ONE });
      const [one] = await c.replyTo();
      assert.equal(one.payload.length, 12);
      assert.deepEqual([one.payload.readUInt32BE(4), one.payload.readUInt32BE(8)], [PAGE - 100, 3]);
    });

    it('TRIM punches a hole and keeps the size; WRITE_ZEROES punches, or keeps blocks (unwritten) with NO_HOLE', async function () {
      const c = await f.connect();
      await c.greet();
      await c.go('disk');
      await f.fs.write(ino, 0, randomBytes(12 * PAGE), false);
      assert.equal(f.fs.stat(ino).blocks, 12);
      assert.equal((await c.command(W.NBD_CMD_TRIM, { offset: 0, length: 4 * PAGE })).error, 0);
      assert.equal(f.fs.stat(ino).blocks, 8);
      assert.equal(f.fs.iomap(ino, 0).state, 'HOLE');
      assert.equal((await c.command(W.NBD_CMD_WRITE_ZEROES, { offset: 4 * PAGE, length: 4 * PAGE })).error, 0);
      assert.equal(f.fs.stat(ino).blocks, 4);
      assert.equal((await c.command(W.NBD_CMD_WRITE_ZEROES, { offset: 8 * PAGE, length: 4 * PAGE, flags: W.NBD_CMD_FLAG_NO_HOLE | W.NBD_CMD_FLAG_FAST_ZERO })).error, 0);
      assert.equal(f.fs.stat(ino).blocks, 4, 'NO_HOLE keeps the blocks');
      assert.equal(f.fs.iomap(ino, 8).state, 'UNWRITTEN');
      assert.deepEqual(await c.read(0, 12 * PAGE), Buffer.alloc(12 * PAGE));
      assert.equal(f.fs.stat(ino).sizeBytes, FILE_BYTES);
      // Unaligned: the partial pages are zeroed, their neighbours kept.
      const data = randomBytes(2 * PAGE);
      await f.fs.write(ino, 20 * PAGE, data, false);
      assert.equal((await c.command(W.NBD_CMD_TRIM, { offset: 20 * PAGE + 10, length: PAGE })).error, 0);
      const expected = Buffer.from(data);
      expected.fill(0, 10, PAGE + 10);
      assert.deepEqual(await c.read(20 * PAGE, 2 * PAGE), expected);
    });

    it('CACHE succeeds and changes nothing; zero-length READ/WRITE/TRIM succeed', async function () {
      const c = await f.connect();
      await c.greet();
      await c.go('disk');
      assert.equal((await c.command(W.NBD_CMD_CACHE, { offset: 0, length: FILE_BYTES })).error, 0);
      assert.equal(f.fs.stat(ino).blocks, 0);
      assert.equal((await c.command(W.NBD_CMD_WRITE, { offset: 0, length: 0 })).error, 0);
      assert.equal((await c.command(W.NBD_CMD_TRIM, { offset: 0, length: 0 })).error, 0);
      assert.deepEqual(await c.read(0, 0), Buffer.alloc(0));
    });

    it('a file shorter than its export (shrunk over gRPC) reads as zeros past its end', async function () {
      const c = await f.connect();
      await c.greet();
      await c.go('disk');
      await f.fs.write(ino, 0, Buffer.alloc(2 * PAGE, 7), false);
      await f.fs.truncate(ino, PAGE + 10);
      const expected = Buffer.alloc(2 * PAGE);
      expected.fill(7, 0, PAGE + 10);
      assert.deepEqual(await c.read(0, 2 * PAGE), expected);
      assert.deepEqual(await c.read(0, 2 * PAGE, W.NBD_CMD_FLAG_DF), expected);
    });
  });

  describe('durability (S6)', function () {
    for (const how of ['FLUSH', 'FUA'] as const) {
      it(`${how}: an acknowledged write survives a power loss that loses everything not flushed`, async function () {
        const c = await f.connect();
        await c.greet();
        await c.go('disk');
        const old = randomBytes(4 * PAGE);
        await f.fs.write(ino, 0, old, true);
        const fresh = randomBytes(4 * PAGE);
        // An overwrite (in place) and an allocating write (new blocks, journal).
        const flags = how === 'FUA' ? W.NBD_CMD_FLAG_FUA : 0;
        assert.equal((await c.command(W.NBD_CMD_WRITE, { offset: 0, data: fresh, flags })).error, 0);
        assert.equal((await c.command(W.NBD_CMD_WRITE, { offset: 100 * PAGE, data: fresh, flags })).error, 0);
        if (how === 'FLUSH') assert.equal((await c.command(W.NBD_CMD_FLUSH)).error, 0);
        f.storage.crash(() => 0.5, 0);
        c.end();
        await f.nbd.stop(100);
        const storage = f.storage.reboot();
        const fs = await FileSystem.mount(storage);
        const { ino: again } = fs.lookup('disk');
        assert.deepEqual(await fs.read(again, 0, 4 * PAGE), fresh);
        assert.deepEqual(await fs.read(again, 100 * PAGE, 4 * PAGE), fresh);
        await fs.unmount();
      });
    }

    it('without FLUSH or FUA the same power loss may lose the overwrite (the test above is not vacuous)', async function () {
      const c = await f.connect();
      await c.greet();
      await c.go('disk');
      const old = randomBytes(4 * PAGE);
      await f.fs.write(ino, 0, old, true);
      assert.equal((await c.command(W.NBD_CMD_WRITE, { offset: 0, data: randomBytes(4 * PAGE) })).error, 0);
      f.storage.crash(() => 0.5, 0);
      c.end();
      await f.nbd.stop(100);
      const fs = await FileSystem.mount(f.storage.reboot());
      assert.deepEqual(await fs.read(fs.lookup('disk').ino, 0, 4 * PAGE), old);
      await fs.unmount();
    });
  });

  describe('TRIM over a pinned page (S4)', function () {
    async function pinned(policy: 'WAIT' | 'FAIL' | 'RECALL', layoutBreakTimeoutMs = NBD_LAYOUT_BREAK_TIMEOUT_MS) {
      await f.stop();
      f = await nbdFixture({ layoutBreak: policy, limits: { layoutBreakTimeoutMs } });
      ino = (await f.fs.create('disk', true)).ino;
      const data = randomBytes(4 * PAGE);
      await f.fs.write(ino, 0, data, false);
      await f.fs.truncate(ino, FILE_BYTES);
      const owner = new TestOwner('dma');
      const pin = await f.dax.pin(owner, { ino, firstPgoff: 1, npages: 1, writable: true, leaseMs: 0 });
      const c = await f.connect();
      await c.greet();
      await c.go('disk');
      return { c, owner, pin, data };
    }

    it('FAIL: EIO at once, the message says EBUSY, the file is unchanged', async function () {
      const { c, data } = await pinned('FAIL');
      const r = await c.command(W.NBD_CMD_TRIM, { offset: 0, length: 4 * PAGE });
      assert.equal(r.error, W.NBD_EIO);
      assert.match(r.message, /EBUSY/);
      assert.deepEqual(await f.fs.read(ino, 0, 4 * PAGE), data);
      assert.equal(f.fs.stat(ino).blocks, 4);
    });

    it('FAST_ZERO over a pinned page under WAIT: ENOTSUP at once (the client falls back to writing zeroes), the file unchanged', async function () {
      const { c, data } = await pinned('WAIT');
      const r = await c.command(W.NBD_CMD_WRITE_ZEROES, { offset: 0, length: 4 * PAGE, flags: W.NBD_CMD_FLAG_FAST_ZERO });
      assert.equal(r.error, W.NBD_ENOTSUP, r.message);
      assert.match(r.message, /FAST_ZERO/);
      assert.deepEqual(await f.fs.read(ino, 0, 4 * PAGE), data);
      assert.equal(f.fs.stat(ino).blocks, 4);
      // Without a pin in the way FAST_ZERO zeroes as usual.
      const free = await c.command(W.NBD_CMD_WRITE_ZEROES, { offset: 2 * PAGE, length: 2 * PAGE, flags: W.NBD_CMD_FLAG_FAST_ZERO });
      assert.equal(free.error, 0, free.message);
      assert.deepEqual(await f.fs.read(ino, 2 * PAGE, 2 * PAGE), Buffer.alloc(2 * PAGE));
    });

    it('WAIT: waits for the unpin, then punches', async function () {
      const { c, owner, pin } = await pinned('WAIT');
      const cookie = c.request(W.NBD_CMD_TRIM, { offset: 0, length: 4 * PAGE });
      await until(() => (f.dax.inspect(ino, 1, 1)[0]?.waiters ?? 0) > 0 || f.nbd.list()[0]?.inFlight === 1, 'the TRIM is waiting');
      assert.equal(f.fs.stat(ino).blocks, 4, 'nothing freed while pinned');
      f.dax.unpin(owner, pin.id);
      const [m] = await c.replyTo();
      assert.equal(m.cookie, cookie);
      assert.equal(m.error, 0);
      assert.equal(f.fs.stat(ino).blocks, 0);
    });

    it('WAIT past NBD_LAYOUT_BREAK_TIMEOUT_MS: EIO, the message says ETIMEDOUT, the file is unchanged', async function () {
      const { c, data } = await pinned('WAIT', 50);
      const r = await c.command(W.NBD_CMD_TRIM, { offset: 0, length: 4 * PAGE });
      assert.equal(r.error, W.NBD_EIO);
      assert.match(r.message, /ETIMEDOUT.*NBD_LAYOUT_BREAK_TIMEOUT_MS/);
      assert.deepEqual(await f.fs.read(ino, 0, 4 * PAGE), data);
      assert.equal(f.fs.stat(ino).blocks, 4);
    });

    it('RECALL: the pin is recalled and revoked, then the punch happens', async function () {
      const { c, owner } = await pinned('RECALL');
      const r = await c.command(W.NBD_CMD_TRIM, { offset: 0, length: 4 * PAGE });
      assert.equal(r.error, 0);
      assert.ok((owner.events as unknown as Array<{ kind: string }>).some((e) => e.kind === 'pinRecall'), JSON.stringify(owner.events));
      assert.ok((owner.events as unknown as Array<{ kind: string }>).some((e) => e.kind === 'pinRevoked'), 'the pin was revoked');
      assert.equal(f.fs.stat(ino).blocks, 0);
    });
  });

  describe('connection life', function () {
    it('DISC answers every request in flight first, then closes', async function () {
      const c = await f.connect();
      await c.greet();
      await c.go('disk');
      const cookies: bigint[] = [];
      const data = randomBytes(64 * 1024);
      for (let i = 0; i < 16; i++) cookies.push(c.request(W.NBD_CMD_WRITE, { offset: i * data.length, data }));
      c.request(W.NBD_CMD_DISC);
      const got: bigint[] = [];
      for (let i = 0; i < 16; i++) {
        const m = await c.reply();
        assert.equal(m.error, 0);
        got.push(m.cookie);
      }
      assert.deepEqual(got.sort(), cookies.sort());
      await c.closed;
      assert.deepEqual(await f.fs.read(ino, 15 * data.length, data.length), data);
    });

    it('an export holds its inode: unlinked meanwhile it still serves; its blocks go when the connection ends', async function () {
      const c = await f.connect();
      await c.greet();
      await c.go('disk');
      const data = randomBytes(8 * PAGE);
      assert.equal((await c.command(W.NBD_CMD_WRITE, { offset: 0, data })).error, 0);
      const before = f.fs.statVolume();
      await f.fs.unlink('disk');
      assert.deepEqual(await c.read(0, data.length), data);
      c.request(W.NBD_CMD_DISC);
      await c.closed;
      await until(() => f.nbd.connectionCount === 0, 'connection gone');
      await f.fs.commit();
      assert.ok(f.fs.statVolume().blocksFree >= before.blocksFree + 8, 'blocks freed after the last user went');
    });

    it('server stop: a TRIM waiting for a pin ends with ESHUTDOWN (file unchanged), the connection closes, stop resolves', async function () {
      const owner = new TestOwner('dma');
      await f.fs.write(ino, 0, randomBytes(4 * PAGE), false);
      const pin = await f.dax.pin(owner, { ino, firstPgoff: 0, npages: 1, writable: true, leaseMs: 0 });
      const c = await f.connect();
      await c.greet();
      await c.go('disk');
      const cookie = c.request(W.NBD_CMD_TRIM, { offset: 0, length: 4 * PAGE });
      await until(() => f.nbd.list()[0]?.inFlight === 1, 'the TRIM is in flight');
      const stopped = f.nbd.stop(10_000);
      const [m] = await c.replyTo();
      assert.equal(m.cookie, cookie);
      assert.equal(m.error, W.NBD_ESHUTDOWN, m.message);
      await c.closed;
      await stopped;
      assert.equal(f.fs.stat(ino).blocks, 4, 'nothing punched');
      f.dax.unpin(owner, pin.id);
    });

    it('backpressure: at NBD_REQUESTS_IN_FLIGHT_MAX the server stops reading; everything is answered later', async function () {
      await f.stop();
      f = await nbdFixture({ layoutBreak: 'WAIT', limits: { requestsInFlightMax: 4 } });
      ino = (await f.fs.create('disk', true)).ino;
      await f.fs.write(ino, 0, randomBytes(4 * PAGE), false);
      await f.fs.truncate(ino, FILE_BYTES);
      const owner = new TestOwner('dma');
      const pin = await f.dax.pin(owner, { ino, firstPgoff: 0, npages: 1, writable: true, leaseMs: 0 });
      const c = await f.connect();
      await c.greet();
      await c.go('disk');
      // The TRIM waits for the pin holding the inode lock; the writes queue behind it.
      c.request(W.NBD_CMD_TRIM, { offset: 0, length: PAGE });
      const n = 40;
      for (let i = 0; i < n; i++) c.request(W.NBD_CMD_WRITE, { offset: (8 + i) * PAGE, data: Buffer.alloc(PAGE, i + 1) });
      await until(() => f.nbd.list()[0]?.inFlight === 4, 'four requests in flight');
      // More requests sit unread in the socket; none is started past the bound.
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setImmediate(r));
        assert.equal(f.nbd.list()[0].inFlight, 4);
      }
      f.dax.unpin(owner, pin.id);
      for (let i = 0; i < n + 1; i++) assert.equal((await c.reply()).error, 0);
      assert.deepEqual(await f.fs.read(ino, (8 + n - 1) * PAGE, PAGE), Buffer.alloc(PAGE, n));
    });

    it('backpressure: a client that does not read its READ replies holds at most NBD_CONNECTION_BYTES_BUFFERED_MAX', async function () {
      await f.stop();
      const max = 4 * MiB;
      f = await nbdFixture({ limits: { connectionBytesBufferedMax: max } });
      ino = (await f.fs.create('disk', true)).ino;
      await f.fs.write(ino, 0, randomBytes(MiB), false);
      const c = await f.connect();
      await c.greet();
      await c.go('disk', { structured: false });
      c.socket.pause();
      const n = 200;
      for (let i = 0; i < n; i++) c.request(W.NBD_CMD_READ, { offset: 0, length: MiB });
      const conn = () => f.nbd.list()[0];
      await until(() => conn().buffered.paused, 'the server paused reading');
      assert.ok(conn().buffered.bytes <= max, JSON.stringify(conn().buffered));
      c.socket.resume();
      for (let i = 0; i < n; i++) assert.equal((await c.reply()).payload.length, MiB);
    });
  });

  it('a second connection sees the first one\'s acknowledged write (CAN_MULTI_CONN)', async function () {
    const a = await f.connect();
    const b = await f.connect();
    await a.greet();
    await b.greet();
    await a.go('disk');
    await b.go('disk');
    const data = randomBytes(PAGE);
    assert.equal((await a.command(W.NBD_CMD_WRITE, { offset: 0, data })).error, 0);
    assert.deepEqual(await b.read(0, PAGE), data);
  });
});

