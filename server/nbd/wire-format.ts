/**
 * The NBD wire format (fixed newstyle handshake, simple and structured replies): the
 * protocol's constants and the encoders of what the server sends. All integers are
 * big-endian. Names follow the protocol document (NetworkBlockDevice/nbd doc/proto.md).
 */

// ---- handshake -------------------------------------------------------------------

export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;

/** Handshake flags (server). */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
/** Client flags: anything else makes the server drop the connection (spec: MUST). */
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;
export const CLIENT_FLAGS_KNOWN = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;

export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
const REP_ERR = 0x80000000;
export const NBD_REP_ERR_UNSUP = REP_ERR + 1;
export const NBD_REP_ERR_POLICY = REP_ERR + 2;
export const NBD_REP_ERR_INVALID = REP_ERR + 3;
export const NBD_REP_ERR_UNKNOWN = REP_ERR + 6;
export const NBD_REP_ERR_TLS_REQD = REP_ERR + 5;
export const NBD_REP_ERR_SHUTDOWN = REP_ERR + 7;
export const NBD_REP_ERR_TOO_BIG = REP_ERR + 9;

export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

/** Transmission flags. */
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

/** The one metadata context served, and the id it gets. */
export const BASE_ALLOCATION = 'base:allocation';
export const BASE_ALLOCATION_ID = 1;
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;

/** Strings in the protocol are at most 4096 bytes (names, queries, messages). */
export const NBD_STRING_BYTES_MAX = 4096;

// ---- transmission ------------------------------------------------------------------

export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;
export const REQUEST_HEADER_BYTES = 28;
export const SIMPLE_REPLY_BYTES = 16;
export const CHUNK_HEADER_BYTES = 20;

export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;

export const COMMAND_NAMES = ['READ', 'WRITE', 'DISC', 'FLUSH', 'TRIM', 'CACHE', 'WRITE_ZEROES', 'BLOCK_STATUS'] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR = (1 << 15) + 1;

/** Error values (the only ones the protocol allows). */
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

/** One request header, decoded. Offsets are numbers: anything past 2^53 is out of range anyway. */
export interface Request {
  flags: number;
  type: number;
  /** The client's opaque cookie, echoed as is (two halves: no BigInt per request). */
  cookieHi: number;
  cookieLo: number;
  offset: number;
  length: number;
}

/** null: bad magic (the caller hard-disconnects). */
export function decodeRequest(b: Buffer, at: number): Request | null {
  if (b.readUInt32BE(at) !== NBD_REQUEST_MAGIC) return null;
  const hi = b.readUInt32BE(at + 16);
  const lo = b.readUInt32BE(at + 20);
  // An offset >= 2^53 is past any export: keep it as a number that fails every range check.
  const offset = hi >= 0x200000 ? Number.MAX_SAFE_INTEGER : hi * 0x100000000 + lo;
  return {
    flags: b.readUInt16BE(at + 4), type: b.readUInt16BE(at + 6), cookieHi: b.readUInt32BE(at + 8), cookieLo: b.readUInt32BE(at + 12), offset, length: b.readUInt32BE(at + 24),
  };
}

// ---- encoders: handshake -------------------------------------------------------------

export function serverGreeting(): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(NBDMAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 16);
  return b;
}

export function optionReply(option: number, type: number, data: Buffer = EMPTY): Buffer {
  const b = Buffer.allocUnsafe(20 + data.length);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

/** An error reply: its data is a message for a human. */
export function optionError(option: number, type: number, message: string): Buffer {
  return optionReply(option, type, utf8Bounded(message));
}

export function infoExport(sizeBytes: number, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(NBD_INFO_EXPORT, 0);
  b.writeBigUInt64BE(BigInt(sizeBytes), 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

export function infoBlockSize(min: number, preferred: number, max: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
  b.writeUInt32BE(min, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(max, 10);
  return b;
}

export function infoString(type: typeof NBD_INFO_NAME | typeof NBD_INFO_DESCRIPTION, text: string): Buffer {
  const s = utf8Bounded(text);
  const b = Buffer.allocUnsafe(2 + s.length);
  b.writeUInt16BE(type, 0);
  s.copy(b, 2);
  return b;
}

export function repServer(name: string): Buffer {
  const s = Buffer.from(name, 'utf8');
  const b = Buffer.allocUnsafe(4 + s.length);
  b.writeUInt32BE(s.length, 0);
  s.copy(b, 4);
  return b;
}

export function repMetaContext(id: number, name: string): Buffer {
  const s = Buffer.from(name, 'utf8');
  const b = Buffer.allocUnsafe(4 + s.length);
  b.writeUInt32BE(id, 0);
  s.copy(b, 4);
  return b;
}

/** NBD_OPT_EXPORT_NAME's reply: size, flags, and 124 zero bytes unless NO_ZEROES was agreed. */
export function exportNameReply(sizeBytes: number, flags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(BigInt(sizeBytes), 0);
  b.writeUInt16BE(flags, 8);
  return b;
}

// ---- encoders: transmission ------------------------------------------------------------
// Replies are written in place into the connection's output buffer: each writer takes the
// buffer and offset, writes exactly the bytes its *_BYTES constant (or size function) says.

export const OFFSET_DATA_HEADER_BYTES = CHUNK_HEADER_BYTES + 8;
export const OFFSET_HOLE_BYTES = CHUNK_HEADER_BYTES + 12;

function writeU64(b: Buffer, at: number, v: number): void {
  b.writeUInt32BE(Math.floor(v / 0x100000000), at);
  b.writeUInt32BE(v % 0x100000000, at + 4);
}

export function writeSimpleReply(b: Buffer, at: number, req: Request, error: number): void {
  b.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, at);
  b.writeUInt32BE(error, at + 4);
  b.writeUInt32BE(req.cookieHi, at + 8);
  b.writeUInt32BE(req.cookieLo, at + 12);
}

export function writeChunkHeader(b: Buffer, at: number, req: Request, flags: number, type: number, payloadBytes: number): void {
  b.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, at);
  b.writeUInt16BE(flags, at + 4);
  b.writeUInt16BE(type, at + 6);
  b.writeUInt32BE(req.cookieHi, at + 8);
  b.writeUInt32BE(req.cookieLo, at + 12);
  b.writeUInt32BE(payloadBytes, at + 16);
}

/** OFFSET_DATA's header; its dataBytes of data follow at at + OFFSET_DATA_HEADER_BYTES. */
export function writeOffsetDataHeader(b: Buffer, at: number, req: Request, flags: number, offset: number, dataBytes: number): void {
  writeChunkHeader(b, at, req, flags, NBD_REPLY_TYPE_OFFSET_DATA, 8 + dataBytes);
  writeU64(b, at + CHUNK_HEADER_BYTES, offset);
}

export function writeOffsetHole(b: Buffer, at: number, req: Request, flags: number, offset: number, holeBytes: number): void {
  writeChunkHeader(b, at, req, flags, NBD_REPLY_TYPE_OFFSET_HOLE, 12);
  writeU64(b, at + CHUNK_HEADER_BYTES, offset);
  b.writeUInt32BE(holeBytes, at + CHUNK_HEADER_BYTES + 8);
}

export function writeNoneDone(b: Buffer, at: number, req: Request): void {
  writeChunkHeader(b, at, req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0);
}

export function errorChunkBytes(message: Buffer): number {
  return CHUNK_HEADER_BYTES + 6 + message.length;
}

/** NBD_REPLY_TYPE_ERROR, final; `message` from utf8Bounded. */
export function writeErrorChunk(b: Buffer, at: number, req: Request, error: number, message: Buffer): void {
  writeChunkHeader(b, at, req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, 6 + message.length);
  b.writeUInt32BE(error, at + CHUNK_HEADER_BYTES);
  b.writeUInt16BE(message.length, at + CHUNK_HEADER_BYTES + 4);
  message.copy(b, at + CHUNK_HEADER_BYTES + 6);
}

export function blockStatusBytes(extents: number): number {
  return CHUNK_HEADER_BYTES + 4 + 8 * extents;
}

/** NBD_REPLY_TYPE_BLOCK_STATUS, final: `extents` as length, flags, length, flags, ... */
export function writeBlockStatus(b: Buffer, at: number, req: Request, contextId: number, extents: readonly number[]): void {
  writeChunkHeader(b, at, req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, 4 + 4 * extents.length);
  b.writeUInt32BE(contextId, at + CHUNK_HEADER_BYTES);
  let p = at + CHUNK_HEADER_BYTES + 4;
  for (const v of extents) {
    b.writeUInt32BE(v, p);
    p += 4;
  }
}

const EMPTY = Buffer.alloc(0);

/** UTF-8 of `text`, cut at a character boundary to NBD_STRING_BYTES_MAX bytes. */
export function utf8Bounded(text: string): Buffer {
  const b = Buffer.from(text, 'utf8');
  if (b.length <= NBD_STRING_BYTES_MAX) return b;
  let end = NBD_STRING_BYTES_MAX;
  while (end > 0 && (b[end] & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}
