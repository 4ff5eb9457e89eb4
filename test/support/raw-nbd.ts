/**
 * A raw NBD client for tests: exact bytes on a TCP socket, no library in between, so the
 * tests can send what no real client would (bad magic, unknown options, overlong
 * lengths) and see the server's exact answer. Also: an in-process NBD server over a
 * MemoryStorage volume (nbdFixture) for the protocol and bad-input tests.
 *
 * Reads are event-driven: `bytes(n)` resolves when n bytes arrived and rejects when the
 * server closed first; `closed` resolves when the server closed the connection.
 * `startTls` sends NBD_OPT_STARTTLS and, on NBD_REP_ACK, goes on over TLS.
 */
import net from 'node:net';
import tls from 'node:tls';
import pino from 'pino';
import { NbdServer, type NbdServerOptions } from '../../server/nbd/nbd-server';
import * as W from '../../server/nbd/wire-format';
import { freshDax, type DaxVolume } from './dax-volume';
import { MiB } from './units';

export { W };

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

/** One reply message: simple (payload = READ data when asked for) or one structured chunk. */
export interface ReplyMessage {
  structured: boolean;
  cookie: bigint;
  /** Simple: the error field. Chunk: the error of an error chunk, else 0. */
  error: number;
  flags: number;
  type: number;
  payload: Buffer;
  /** An error chunk's message. */
  message: string;
}

export class ClosedError extends Error {}

export class RawNbd {
  private chunks: Buffer[] = [];
  private length = 0;
  private waiter: { n: number; resolve(b: Buffer): void; reject(e: Error): void } | null = null;
  private isClosed = false;
  readonly closed: Promise<void>;
  /** READ lengths by cookie, to read a simple reply's data. */
  private readonly simpleReadBytes = new Map<bigint, number>();
  structured = false;

  private readonly onData = (b: Buffer) => {
    this.chunks.push(b);
    this.length += b.length;
    this.serve();
  };

  private constructor(public socket: net.Socket) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', this.onData);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.isClosed = true;
      const w = this.waiter;
      this.waiter = null;
      w?.reject(new ClosedError('server closed the connection'));
    });
  }

  /** `localAddress`: the address to connect from (127.0.0.2 plays a remote peer without leaving loopback). */
  static connect(address: string, opts: { localAddress?: string } = {}): Promise<RawNbd> {
    const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port, localAddress: opts.localAddress }, () => resolve(new RawNbd(s)));
      s.once('error', reject);
    });
  }

  /**
   * NBD_OPT_STARTTLS; on NBD_REP_ACK the TLS handshake (`tlsOptions`: ca, cert, key...),
   * after which every read and write goes over TLS. Returns the STARTTLS reply; rejects
   * when the handshake fails.
   */
  async startTls(tlsOptions: tls.ConnectionOptions): Promise<OptionReply> {
    this.sendOption(W.NBD_OPT_STARTTLS);
    const r = await this.optionReply();
    if (r.type !== W.NBD_REP_ACK) return r;
    if (this.length > 0) throw new Error(`${this.length} bytes after the STARTTLS ACK in plaintext`);
    const raw = this.socket;
    raw.off('data', this.onData);
    const secure = tls.connect({ socket: raw, servername: 'localhost', ...tlsOptions });
    secure.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
      secure.once('close', () => reject(new ClosedError('closed during the TLS handshake')));
    });
    secure.on('data', this.onData);
    this.socket = secure;
    return r;
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  bytes(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.serve();
    });
  }

  private serve(): void {
    const w = this.waiter;
    if (w === null) return;
    if (this.length >= w.n) {
      const all = Buffer.concat(this.chunks);
      this.chunks = [all.subarray(w.n)];
      this.length -= w.n;
      this.waiter = null;
      w.resolve(all.subarray(0, w.n));
    } else if (this.isClosed) {
      this.waiter = null;
      w.reject(new ClosedError('server closed the connection'));
    }
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  end(): void {
    this.socket.destroy();
  }

  // ---- handshake ----

  /** Reads the greeting and sends client flags; returns the handshake flags. */
  async greet(clientFlags = W.NBD_FLAG_C_FIXED_NEWSTYLE | W.NBD_FLAG_C_NO_ZEROES): Promise<{ magic: bigint; opt: bigint; flags: number }> {
    const g = await this.bytes(18);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(clientFlags >>> 0);
    this.write(c);
    return { magic: g.readBigUInt64BE(0), opt: g.readBigUInt64BE(8), flags: g.readUInt16BE(16) };
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0), magic = W.IHAVEOPT, declaredBytes = data.length): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(magic, 0);
    h.writeUInt32BE(option >>> 0, 8);
    h.writeUInt32BE(declaredBytes >>> 0, 12);
    this.write(Buffer.concat([h, data]));
  }

  async optionReply(): Promise<OptionReply> {
    const h = await this.bytes(20);
    if (h.readBigUInt64BE(0) !== W.OPTION_REPLY_MAGIC) throw new Error(`bad option reply magic ${h.toString('hex')}`);
    const len = h.readUInt32BE(16);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await this.bytes(len) };
  }

  /** Replies up to and including the final one (ACK or an error). */
  async optionReplies(): Promise<OptionReply[]> {
    const out: OptionReply[] = [];
    for (;;) {
      const r = await this.optionReply();
      out.push(r);
      if (r.type === W.NBD_REP_ACK || r.type >= 0x80000000) return out;
    }
  }

  /** STRUCTURED_REPLY (+ SET_META_CONTEXT base:allocation) then GO: the export's size and flags. */
  async go(name: string, opts: { structured?: boolean; meta?: boolean } = {}): Promise<{ size: number; flags: number; replies: OptionReply[] }> {
    if (opts.structured ?? true) {
      if (!this.structured) {
        this.sendOption(W.NBD_OPT_STRUCTURED_REPLY);
        const r = await this.optionReply();
        if (r.type !== W.NBD_REP_ACK) throw new Error(`STRUCTURED_REPLY: ${r.type}`);
        this.structured = true;
      }
      if (opts.meta ?? true) {
        this.sendOption(W.NBD_OPT_SET_META_CONTEXT, metaData(name, [W.BASE_ALLOCATION]));
        const rs = await this.optionReplies();
        if (rs[rs.length - 1].type !== W.NBD_REP_ACK) throw new Error(`SET_META_CONTEXT: ${rs[rs.length - 1].type}`);
      }
    }
    this.sendOption(W.NBD_OPT_GO, goData(name, [W.NBD_INFO_BLOCK_SIZE]));
    const replies = await this.optionReplies();
    const last = replies[replies.length - 1];
    if (last.type !== W.NBD_REP_ACK) throw new Error(`GO failed: 0x${last.type.toString(16)} ${last.data.toString()}`);
    const exp = replies.find((r) => r.type === W.NBD_REP_INFO && r.data.readUInt16BE(0) === W.NBD_INFO_EXPORT) as OptionReply;
    return { size: Number(exp.data.readBigUInt64BE(2)), flags: exp.data.readUInt16BE(10), replies };
  }

  // ---- transmission ----

  request(type: number, opts: { flags?: number; cookie?: bigint; offset?: number | bigint; length?: number; data?: Buffer; magic?: number } = {}): bigint {
    const cookie = opts.cookie ?? nextCookie();
    const length = opts.length ?? opts.data?.length ?? 0;
    const h = Buffer.alloc(28);
    h.writeUInt32BE(opts.magic ?? W.NBD_REQUEST_MAGIC, 0);
    h.writeUInt16BE(opts.flags ?? 0, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(cookie, 8);
    h.writeBigUInt64BE(BigInt(opts.offset ?? 0), 16);
    h.writeUInt32BE(length >>> 0, 24);
    if (type === W.NBD_CMD_READ && !this.structured) this.simpleReadBytes.set(cookie, length);
    this.write(opts.data ? Buffer.concat([h, opts.data]) : h);
    return cookie;
  }

  /** The next reply message (one simple reply or one structured chunk). */
  async reply(): Promise<ReplyMessage> {
    const magic = (await this.bytes(4)).readUInt32BE(0);
    if (magic === W.NBD_SIMPLE_REPLY_MAGIC) {
      const h = await this.bytes(12);
      const error = h.readUInt32BE(0);
      const cookie = h.readBigUInt64BE(4);
      const readBytes = this.simpleReadBytes.get(cookie);
      this.simpleReadBytes.delete(cookie);
      const payload = readBytes !== undefined && error === 0 ? await this.bytes(readBytes) : Buffer.alloc(0);
      return { structured: false, cookie, error, flags: 0, type: 0, payload, message: '' };
    }
    if (magic !== W.NBD_STRUCTURED_REPLY_MAGIC) throw new Error(`bad reply magic 0x${magic.toString(16)}`);
    const h = await this.bytes(16);
    const flags = h.readUInt16BE(0);
    const type = h.readUInt16BE(2);
    const cookie = h.readBigUInt64BE(4);
    const payload = await this.bytes(h.readUInt32BE(12));
    const isError = (type & 0x8000) !== 0;
    const error = isError ? payload.readUInt32BE(0) : 0;
    const message = isError ? payload.subarray(6, 6 + payload.readUInt16BE(4)).toString('utf8') : '';
    return { structured: true, cookie, error, flags, type, payload, message };
  }

  /** Every message of one reply (a simple reply, or chunks up to the DONE one). */
  async replyTo(): Promise<ReplyMessage[]> {
    const out: ReplyMessage[] = [];
    for (;;) {
      const m = await this.reply();
      out.push(m);
      if (!m.structured || (m.flags & W.NBD_REPLY_FLAG_DONE) !== 0) return out;
    }
  }

  /** A READ's data reassembled from its reply (holes as zeros); throws on an error reply. */
  async read(offset: number, length: number, flags = 0): Promise<Buffer> {
    const cookie = this.request(W.NBD_CMD_READ, { offset, length, flags });
    const msgs = await this.replyTo();
    return assembleRead(msgs, cookie, offset, length);
  }

  /** A command without reply data: its error value (0 = success). */
  async command(type: number, opts: Parameters<RawNbd['request']>[1] = {}): Promise<{ error: number; message: string }> {
    this.request(type, opts);
    const msgs = await this.replyTo();
    const err = msgs.find((m) => m.error !== 0);
    return { error: err?.error ?? 0, message: err?.message ?? '' };
  }
}

let cookieSeq = 1n;
function nextCookie(): bigint {
  return cookieSeq++;
}

export function assembleRead(msgs: ReplyMessage[], cookie: bigint, offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (const m of msgs) {
    if (m.cookie !== cookie) throw new Error(`reply for cookie ${m.cookie}, expected ${cookie}`);
    if (m.error !== 0) throw new Error(`read failed: ${m.error} ${m.message}`);
    if (!m.structured) return m.payload;
    if (m.type === W.NBD_REPLY_TYPE_OFFSET_DATA) m.payload.copy(out, Number(m.payload.readBigUInt64BE(0)) - offset, 8);
  }
  return out;
}

export function goData(name: string, infos: number[] = []): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((t, i) => b.writeUInt16BE(t, 6 + n.length + 2 * i));
  return b;
}

export function metaData(name: string, queries: string[]): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    return b;
  };
  const n = Buffer.from(name, 'utf8');
  parts.push(u32(n.length), n, u32(queries.length));
  for (const q of queries) {
    const qb = Buffer.from(q, 'utf8');
    parts.push(u32(qb.length), qb);
  }
  return Buffer.concat(parts);
}

export interface NbdFixture extends DaxVolume {
  nbd: NbdServer;
  connect(): Promise<RawNbd>;
  stop(): Promise<void>;
}

/** An in-process daxd engine (MemoryStorage) with an NBD server on 127.0.0.1:0. */
export async function nbdFixture(options: Partial<Omit<NbdServerOptions, 'fs' | 'dax' | 'log' | 'address'>> = {}, volumeBytes = 64 * MiB): Promise<NbdFixture> {
  const v = await freshDax(volumeBytes);
  const nbd = await NbdServer.start({ fs: v.fs, dax: v.dax, log: pino({ level: 'silent' }), address: '127.0.0.1:0', ...options });
  const clients: RawNbd[] = [];
  return {
    ...v, nbd,
    connect: async () => {
      const c = await RawNbd.connect(nbd.address);
      clients.push(c);
      return c;
    },
    stop: async () => {
      for (const c of clients) c.end();
      await nbd.stop(1000);
      v.dax.failpoints.releaseAll();
    },
  };
}
