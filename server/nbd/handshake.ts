/**
 * The fixed newstyle handshake: greeting, client flags, then option haggling until
 * NBD_OPT_GO / NBD_OPT_EXPORT_NAME picks an export (or the client aborts).
 *
 * Bounds: at most NBD_OPTIONS_MAX options (one more: hard disconnect, the spec's answer
 * to a client that will not stop), option data at most NBD_OPTION_BYTES_MAX (longer data
 * is discarded unread and answered NBD_REP_ERR_TOO_BIG); the caller bounds the whole
 * wait for each of the client's steps in time (NBD_HANDSHAKE_MS_MAX), so the whole handshake
 * is bounded by NBD_OPTIONS_MAX x NBD_HANDSHAKE_MS_MAX.
 *
 * Malformed input: a bad option magic or unknown client flags end the connection (the
 * spec's hard disconnect); an unknown option is NBD_REP_ERR_UNSUP; a known option with a
 * malformed body is NBD_REP_ERR_INVALID.
 *
 * TLS (starttls.ts has the modes): STARTTLS is NBD_REP_ERR_POLICY when TLS is off, else
 * NBD_REP_ACK and the upgrade, after which haggling goes on over TLS with the state of the
 * plaintext part forgotten (structured replies, the metadata context: a man in the middle
 * could have injected them before TLS). STARTTLS again after the upgrade is
 * NBD_REP_ERR_INVALID; bytes sent after STARTTLS before the ACK are a hard disconnect
 * (they came in plaintext and must not be read as if they came over TLS). Until TLS is on,
 * a connection that must use it (mode require, or a peer that is not loopback) gets
 * NBD_REP_ERR_TLS_REQD for every option but STARTTLS and ABORT; EXPORT_NAME, which cannot
 * be answered with an error, is a hard disconnect.
 */
import { DaxError } from '../errors';
import type { FileInfo } from '../fs/types';
import type { ExportInfo } from './exports';
import { NBD_REQUEST_BYTES_MAX } from './limits';
import {
  BASE_ALLOCATION, BASE_ALLOCATION_ID, CLIENT_FLAGS_KNOWN, exportNameReply, IHAVEOPT, infoBlockSize, infoExport, infoString,
  NBD_FLAG_C_NO_ZEROES, NBD_INFO_DESCRIPTION, NBD_INFO_NAME, NBD_OPT_ABORT, NBD_OPT_EXPORT_NAME, NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT, NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY, NBD_REP_ERR_SHUTDOWN, NBD_REP_ERR_TLS_REQD, NBD_REP_ERR_TOO_BIG, NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_UNSUP, NBD_REP_INFO, NBD_REP_META_CONTEXT,
  NBD_REP_SERVER, NBD_STRING_BYTES_MAX, optionError, optionReply, repMetaContext, repServer, serverGreeting,
} from './wire-format';

/** Block sizes advertised: any byte alignment works, 4096 is the page, the max is the request limit. */
export const BLOCK_SIZE_MIN = 1;
export const BLOCK_SIZE_PREFERRED = 4096;

/** The connection's side of the handshake: reads that wait for bytes, and replies. */
export interface HandshakeIo {
  /** The next n bytes; rejects when the connection closes. */
  read(n: number): Promise<Buffer>;
  /** Discards the next n bytes as they arrive. */
  skip(n: number): Promise<void>;
  send(b: Buffer): void;
  /** Resolves once the replies sent so far are (mostly) handed to the kernel. */
  drained(): Promise<void>;
  /** An option was answered: the client's next step gets a fresh NBD_HANDSHAKE_MS_MAX. */
  answered(): void;
}

export interface HandshakeContext {
  exports: {
    /** The export a name means (INFO, META_CONTEXT); throws a DaxError. */
    resolve(name: string): ExportInfo;
    /** resolve, and hold the export for the transmission phase (GO, EXPORT_NAME). */
    open(name: string): ExportInfo;
    /** Every export, page by page (LIST). */
    all(): AsyncIterable<FileInfo[]>;
  };
  /** Transmission flags for an export (SEND_DF only with structured replies; READ_ONLY for a principal that may not write). */
  transmissionFlags(structured: boolean): number;
  /** Whether STARTTLS is offered (false: NBD_REP_ERR_POLICY). */
  tlsOffered: boolean;
  /** Before TLS: why this connection may not negotiate without it (answered NBD_REP_ERR_TLS_REQD), or null: it may. */
  plaintextRefused(): string | null;
  /**
   * Sends NBD_REP_ACK for STARTTLS and upgrades the connection; resolves once TLS is on.
   * Throws HardDisconnect when the client sent data ahead or the handshake failed.
   */
  startTls(ack: Buffer): Promise<void>;
  shuttingDown(): boolean;
  optionsMax: number;
  optionBytesMax: number;
}

export interface Negotiated {
  export: ExportInfo;
  structured: boolean;
  /** base:allocation was selected for this very export: BLOCK_STATUS is allowed. */
  blockStatus: boolean;
  flags: number;
}

/** The peer broke a MUST of the handshake: the connection is closed without a reply. */
export class HardDisconnect extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HardDisconnect';
  }
}

/** A known option whose body is malformed: answered NBD_REP_ERR_INVALID. */
class InvalidOption extends Error {}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Returns the negotiated export, or null when the client sent NBD_OPT_ABORT. */
export async function negotiate(io: HandshakeIo, ctx: HandshakeContext): Promise<Negotiated | null> {
  io.send(serverGreeting());
  const clientFlags = (await io.read(4)).readUInt32BE(0);
  if ((clientFlags & ~CLIENT_FLAGS_KNOWN) !== 0) throw new HardDisconnect(`unknown client flags 0x${clientFlags.toString(16)}`);
  const noZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0;
  let structured = false;
  /** The canonical export name base:allocation was last selected for (null: none selected). */
  let metaExport: string | null = null;
  let tlsOn = false;
  for (let count = 1; ; count++) {
    if (count > 1) io.answered();
    const header = await io.read(16);
    if (count > ctx.optionsMax) throw new HardDisconnect(`more than ${ctx.optionsMax} options (NBD_OPTIONS_MAX)`);
    if (header.readBigUInt64BE(0) !== IHAVEOPT) throw new HardDisconnect('bad option magic');
    const option = header.readUInt32BE(8);
    const length = header.readUInt32BE(12);
    if (length > ctx.optionBytesMax) {
      if (option === NBD_OPT_EXPORT_NAME) throw new HardDisconnect(`NBD_OPT_EXPORT_NAME with ${length} bytes of data (vs. max ${ctx.optionBytesMax})`);
      await io.skip(length);
      io.send(optionError(option, NBD_REP_ERR_TOO_BIG, `option data is ${length} bytes (${length} vs. max ${ctx.optionBytesMax}, NBD_OPTION_BYTES_MAX)`));
      continue;
    }
    const data = await io.read(length);
    if (ctx.shuttingDown() && option !== NBD_OPT_ABORT) {
      if (option === NBD_OPT_EXPORT_NAME) throw new HardDisconnect('server shutting down');
      io.send(optionError(option, NBD_REP_ERR_SHUTDOWN, 'the server is shutting down'));
      continue;
    }
    const tlsRequired = tlsOn || option === NBD_OPT_STARTTLS || option === NBD_OPT_ABORT ? null : ctx.plaintextRefused();
    if (tlsRequired !== null) {
      if (option === NBD_OPT_EXPORT_NAME) throw new HardDisconnect(`NBD_OPT_EXPORT_NAME without TLS: ${tlsRequired}`);
      io.send(optionError(option, NBD_REP_ERR_TLS_REQD, tlsRequired));
      continue;
    }
    try {
      switch (option) {
        case NBD_OPT_EXPORT_NAME: {
          // No way to answer an error here: the spec's answer is to close the connection.
          let exp: ExportInfo;
          try {
            exp = ctx.exports.open(utf8(data, 'export name'));
          } catch (err) {
            throw new HardDisconnect(`NBD_OPT_EXPORT_NAME: ${err instanceof Error ? err.message : String(err)}`);
          }
          const flags = ctx.transmissionFlags(structured);
          io.send(exportNameReply(exp.sizeBytes, flags, noZeroes));
          return { export: exp, structured, blockStatus: structured && metaExport === exp.name, flags };
        }
        case NBD_OPT_ABORT:
          io.send(optionReply(option, NBD_REP_ACK));
          return null;
        case NBD_OPT_LIST:
          if (length !== 0) throw new InvalidOption('NBD_OPT_LIST takes no data');
          for await (const files of ctx.exports.all()) {
            for (const f of files) io.send(optionReply(option, NBD_REP_SERVER, repServer(f.name)));
            await io.drained();
          }
          io.send(optionReply(option, NBD_REP_ACK));
          break;
        case NBD_OPT_STARTTLS:
          if (!ctx.tlsOffered) {
            io.send(optionError(option, NBD_REP_ERR_POLICY, 'TLS is off on this daxd (--nbd-tls off): connect without TLS'));
            break;
          }
          if (length !== 0) throw new InvalidOption('NBD_OPT_STARTTLS takes no data');
          if (tlsOn) throw new InvalidOption('TLS is already on');
          await ctx.startTls(optionReply(option, NBD_REP_ACK));
          tlsOn = true;
          // Nothing negotiated in plaintext carries over (see the top of the file).
          structured = false;
          metaExport = null;
          break;
        case NBD_OPT_INFO:
        case NBD_OPT_GO: {
          const name = parseInfoRequest(data);
          const exp = resolveOrReply(io, option, () => (option === NBD_OPT_GO ? ctx.exports.open(name) : ctx.exports.resolve(name)));
          if (exp === null) break;
          const flags = ctx.transmissionFlags(structured);
          io.send(optionReply(option, NBD_REP_INFO, infoExport(exp.sizeBytes, flags)));
          io.send(optionReply(option, NBD_REP_INFO, infoBlockSize(BLOCK_SIZE_MIN, BLOCK_SIZE_PREFERRED, NBD_REQUEST_BYTES_MAX)));
          io.send(optionReply(option, NBD_REP_INFO, infoString(NBD_INFO_NAME, exp.name)));
          io.send(optionReply(option, NBD_REP_INFO, infoString(NBD_INFO_DESCRIPTION, exp.description)));
          io.send(optionReply(option, NBD_REP_ACK));
          if (option === NBD_OPT_GO) return { export: exp, structured, blockStatus: structured && metaExport === exp.name, flags };
          break;
        }
        case NBD_OPT_STRUCTURED_REPLY:
          if (length !== 0) throw new InvalidOption('NBD_OPT_STRUCTURED_REPLY takes no data');
          if (structured) throw new InvalidOption('structured replies are already negotiated');
          structured = true;
          io.send(optionReply(option, NBD_REP_ACK));
          break;
        case NBD_OPT_LIST_META_CONTEXT:
        case NBD_OPT_SET_META_CONTEXT: {
          const set = option === NBD_OPT_SET_META_CONTEXT;
          // SET replaces the selection, also when it fails.
          if (set) metaExport = null;
          if (!structured) throw new InvalidOption('negotiate NBD_OPT_STRUCTURED_REPLY before metadata contexts');
          const { name, queries } = parseMetaRequest(data);
          const exp = resolveOrReply(io, option, () => ctx.exports.resolve(name));
          if (exp === null) break;
          const matches = set
            ? queries.includes(BASE_ALLOCATION)
            : queries.length === 0 || queries.some((q) => q === 'base:' || q === BASE_ALLOCATION);
          if (matches) io.send(optionReply(option, NBD_REP_META_CONTEXT, repMetaContext(set ? BASE_ALLOCATION_ID : 0, BASE_ALLOCATION)));
          if (set && matches) metaExport = exp.name;
          io.send(optionReply(option, NBD_REP_ACK));
          break;
        }
        default:
          io.send(optionError(option, NBD_REP_ERR_UNSUP, `option ${option} is not supported by daxd`));
      }
    } catch (err) {
      if (!(err instanceof InvalidOption)) throw err;
      io.send(optionError(option, NBD_REP_ERR_INVALID, err.message));
    }
  }
}

/** The export for INFO/GO/META options, or null after answering why there is none. */
function resolveOrReply(io: HandshakeIo, option: number, resolve: () => ExportInfo): ExportInfo | null {
  try {
    return resolve();
  } catch (err) {
    if (!(err instanceof DaxError)) throw err;
    io.send(optionError(option, err.code === 'ENOENT' ? NBD_REP_ERR_UNKNOWN : NBD_REP_ERR_INVALID, err.message));
    return null;
  }
}

function utf8(b: Buffer, what: string): string {
  if (b.length > NBD_STRING_BYTES_MAX) throw new InvalidOption(`${what} is ${b.length} bytes (${b.length} vs. max ${NBD_STRING_BYTES_MAX})`);
  try {
    return UTF8.decode(b);
  } catch {
    throw new InvalidOption(`${what} is not valid UTF-8`);
  }
}

/** INFO/GO data: u32 name length, name, u16 count, count x u16 info requests. */
function parseInfoRequest(data: Buffer): string {
  if (data.length < 6) throw new InvalidOption(`option data is ${data.length} bytes, at least 6 needed`);
  const nameBytes = data.readUInt32BE(0);
  if (nameBytes > data.length - 6) throw new InvalidOption(`name length ${nameBytes} overruns the option data (${data.length} bytes)`);
  const count = data.readUInt16BE(4 + nameBytes);
  if (data.length !== 6 + nameBytes + 2 * count) throw new InvalidOption(`option data is ${data.length} bytes, but name and ${count} info requests need ${6 + nameBytes + 2 * count}`);
  return utf8(data.subarray(4, 4 + nameBytes), 'export name');
}

/** META_CONTEXT data: u32 name length, name, u32 count, count x (u32 length, query). */
function parseMetaRequest(data: Buffer): { name: string; queries: string[] } {
  const field = (at: number, what: string) => {
    if (at + 4 > data.length) throw new InvalidOption(`${what} overruns the option data (${data.length} bytes)`);
    return data.readUInt32BE(at);
  };
  const nameBytes = field(0, 'export name length');
  if (4 + nameBytes > data.length) throw new InvalidOption(`name length ${nameBytes} overruns the option data (${data.length} bytes)`);
  const name = utf8(data.subarray(4, 4 + nameBytes), 'export name');
  let at = 4 + nameBytes;
  const count = field(at, 'query count');
  at += 4;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    const n = field(at, `query ${i} length`);
    at += 4;
    if (at + n > data.length) throw new InvalidOption(`query ${i} length ${n} overruns the option data (${data.length} bytes)`);
    queries.push(utf8(data.subarray(at, at + n), `query ${i}`));
    at += n;
  }
  if (at !== data.length) throw new InvalidOption(`${data.length - at} bytes after the last query`);
  return { name, queries };
}
