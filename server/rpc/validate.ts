/**
 * Input validation: done once, here, for every field the network hands to the engine.
 * Below server/rpc, arguments are asserted, not re-checked: the engine (server/fs,
 * server/dax) refuses with a coded error only what depends on its state (a range against
 * end of file, a page against a pin's length, a token's validity).
 *
 * The checks that matter to every front end take plain numbers and return the checked
 * request the engine takes (CheckedFallocate, CheckedPin, CheckedAccess), so an
 * in-process caller (the NBD export, tests) runs the same rules as the gRPC services.
 *
 * uint64 fields arrive as decimal strings (wire/proto.ts decodes `longs: String`). A
 * value that is not a safe integer (>= 2^53) is refused with EINVAL: nothing in daxd is
 * that large (files stop at 1 TiB), and rounding it would silently address the wrong byte.
 */
import { FileTooBigError, InvalidArgumentError, LeaseTooLongError, LimitError } from '../errors';
import type { CheckedAccess, CheckedFallocate, CheckedPin, CheckedRange } from '../checked-requests';
import { FALLOCATE_MODE_RULES, FALLOCATE_MODES, type FallocateMode } from '../fs/types';
import { excerpt } from '../excerpt';
import { validateName } from '../fs/namespace';
import { BLOCK_SIZE, FILE_BYTES_MAX, PIN_PAGES_MAX, PMD_BYTES } from '../limits';
import { LEASE_MS_DEFAULT, LEASE_MS_MAX, LEASE_MS_MIN } from '../session/limits';
import { CLIENT_NAME_BYTES_MAX, DMA_OP_BYTES_MAX, ID_BYTES_MAX, RPC_IO_BYTES_MAX } from './limits';

export type { CheckedAccess, CheckedFallocate, CheckedPin, CheckedRange };

/**
 * `true` when two string unions hold the same names, else a compile error where a `true`
 * is assigned to it: pins the engine's lists (fallocate modes, invalidate reasons) to
 * the proto's enums, which use the same names.
 */
export type SameNames<A extends string, B extends string> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;

/** Decimal digits of a uint64 below 10^16 (2^53 has 16 digits; longer is out of range anyway). */
const U64_DIGITS = /^(?:0|[1-9][0-9]{0,15})$/;

/** A uint64 field as a safe integer, or EINVAL. */
export function u64(value: string | number, field: string): number {
  // Decoded uint64s are canonical decimal strings; anything else (e.g. hand-built) is refused.
  const n = typeof value === 'number' ? value : U64_DIGITS.test(value) ? Number(value) : NaN;
  // Number() of a decimal string below 2^53 is exact; anything larger is >= 2^53 and fails.
  if (!Number.isSafeInteger(n) || n < 0) {
    const shown = excerpt(String(value));
    throw new InvalidArgumentError(`${field} ${shown} is out of range (${shown} vs. max ${Number.MAX_SAFE_INTEGER})`);
  }
  return n;
}

/**
 * An inode number. The engine numbers inodes from 0, so a missing `ino` (which reads as
 * 0) cannot be told from inode 0: it reaches the engine, which answers ENOENT if inode 0
 * is free.
 */
export function ino(value: string | number): number {
  return u64(value, 'ino');
}

/**
 * A file name (the engine's rule: 1..255 bytes of UTF-8, no NUL, well formed), plus:
 * no U+FFFD. protobufjs decodes invalid UTF-8 by replacing each bad sequence with U+FFFD,
 * so after decoding a name that was not UTF-8 is indistinguishable from one holding a real
 * U+FFFD; both are refused, so a bad name never reaches the volume as a mangled one.
 */
export function fileName(value: string): string {
  validateName(value);
  if (value.includes('\uFFFD')) throw new InvalidArgumentError('name is not valid UTF-8 (or holds U+FFFD, which daxd refuses for that reason)');
  return value;
}

/** A List prefix: empty (all names), or held to the same rules as a name. */
export function namePrefix(value: string): string {
  return value === '' ? value : fileName(value);
}

/** Bytes of data one call moves: at most RPC_IO_BYTES_MAX. */
export function ioLength(lengthBytes: number, what: string): number {
  if (lengthBytes > RPC_IO_BYTES_MAX) throw new LimitError(`${what} bytes per call`, lengthBytes, RPC_IO_BYTES_MAX);
  return lengthBytes;
}

/** A range that makes the file at least offset + length long: EFBIG past the max file size. */
export function fileEnd(offsetBytes: number, lengthBytes: number): number {
  const end = offsetBytes + lengthBytes;
  if (end > FILE_BYTES_MAX) throw new FileTooBigError(end, FILE_BYTES_MAX);
  return end;
}

/**
 * An enum field decoded with `enums: String`: a known value name, or EINVAL. Unknown
 * numbers (a newer client's values) arrive as numbers and are refused here.
 */
export function enumValue<T extends string>(value: string | number, allowed: readonly T[], field: string): T {
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw new InvalidArgumentError(`${field} ${excerpt(String(value))} is not one of ${allowed.join(', ')}`);
}

/** A requested lease: 0 = default; otherwise within [LEASE_MS_MIN, LEASE_MS_MAX]. */
export function leaseMs(value: string): number {
  const n = u64(value, 'lease_ms');
  if (n === 0) return LEASE_MS_DEFAULT;
  if (n > LEASE_MS_MAX) throw new LeaseTooLongError(n, LEASE_MS_MAX);
  if (n < LEASE_MS_MIN) throw new InvalidArgumentError(`lease_ms ${n} is too short (${n} vs. min ${LEASE_MS_MIN})`);
  return n;
}

/**
 * An id or token the server issued (session id, PTE token, pin id) or a client's request
 * id: at most ID_BYTES_MAX bytes, checked before any lookup, so no table is searched with,
 * and no message quotes, an unbounded string. The message never echoes the value.
 */
export function idLength(value: string, field: string): string {
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > ID_BYTES_MAX) throw new InvalidArgumentError(`${field} is too long (${bytes} vs. max ${ID_BYTES_MAX} bytes: ID_BYTES_MAX)`);
  return value;
}

/** A session id: required, at most ID_BYTES_MAX; whether it exists is the session table's answer. */
export function sessionId(value: string): string {
  if (value === '') throw new InvalidArgumentError('session_id is required');
  return idLength(value, 'session_id');
}

/** Free text naming a client: at most CLIENT_NAME_BYTES_MAX. */
export function clientName(value: string): string {
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > CLIENT_NAME_BYTES_MAX) throw new InvalidArgumentError(`client_name is too long (${bytes} vs. max ${CLIENT_NAME_BYTES_MAX})`);
  return value;
}

/** Read: offset past the largest possible file is EFBIG (as the engine has it); length <= RPC_IO_BYTES_MAX. */
export function readArgs(inoField: string | number, offsetField: string | number, lengthField: string | number): { ino: number; offset: number; length: number } {
  const file = ino(inoField);
  const offset = u64(offsetField, 'offset');
  const length = ioLength(u64(lengthField, 'length'), 'read');
  fileEnd(offset, 0);
  return { ino: file, offset, length };
}

/** Write: data <= RPC_IO_BYTES_MAX, and the file may not grow past FILE_BYTES_MAX (EFBIG). */
export function writeArgs(inoField: string | number, offsetField: string | number, data: Uint8Array): { ino: number; offset: number } {
  const file = ino(inoField);
  const offset = u64(offsetField, 'offset');
  ioLength(data.length, 'write');
  fileEnd(offset, data.length);
  return { ino: file, offset };
}

/** An offset field and a byte count inside one page (Load/Store, DMA): EINVAL otherwise. */
function inPage(offsetField: string | number, lengthBytes: number, what: string): number {
  const offset = u64(offsetField, 'offset');
  if (offset >= BLOCK_SIZE || lengthBytes > BLOCK_SIZE - offset) {
    throw new InvalidArgumentError(`${what} [${offset}, ${offset + lengthBytes}) is not inside one page (${BLOCK_SIZE} bytes)`);
  }
  return offset;
}

/**
 * A range inside one page (DMA through a pin's page): it stays inside the page, or it
 * would reach the neighbouring block, which may belong to another file (S7). `length` is
 * the byte count (a read's field, a write's data length).
 */
export function pageAccess(offsetField: string | number, length: number, what = 'access'): CheckedRange {
  const len = u64(length, 'length');
  return { offset: inPage(offsetField, len, what), length: len };
}

/**
 * A load or store through a PTE token (Mapping.Load/Store/AccessBatch): the range stays
 * inside the largest thing a token maps, a PMD (offset + length <= PMD_BYTES), EINVAL
 * past it. The edge cannot know the token's size; the engine holds the range to it (a
 * PAGE token: offset + length <= BLOCK_SIZE, else EINVAL), so no access reaches a block
 * the token does not map (S7).
 */
export function mappingAccess(offsetField: string | number, length: number): CheckedRange {
  const len = u64(length, 'length');
  const offset = u64(offsetField, 'offset');
  if (offset >= PMD_BYTES || len > PMD_BYTES - offset) {
    throw new InvalidArgumentError(`access [${offset}, ${offset + len}) is not inside one PMD (${PMD_BYTES} bytes), the most a token maps`);
  }
  return { offset, length: len };
}

/** A DMA through a pin: the page index into the pin and the range inside that page. */
export function dmaAccess(page: number, offsetField: string | number, length: number): CheckedAccess {
  const range = pageAccess(offsetField, length, 'DMA');
  return { page: u64(page, 'page'), ...range };
}

/**
 * A Dma.Stream access: from byte `offset` (< BLOCK_SIZE) of pin page `page`, `length`
 * bytes that may run on into the following pages (checked against the pin by the engine),
 * at most DMA_OP_BYTES_MAX.
 */
export function dmaRange(page: number, offsetField: string | number, lengthField: string | number): CheckedAccess {
  const offset = u64(offsetField, 'offset');
  const length = u64(lengthField, 'length');
  if (offset >= BLOCK_SIZE) throw new InvalidArgumentError(`offset ${offset} is not inside a page (${BLOCK_SIZE} bytes)`);
  if (length > DMA_OP_BYTES_MAX) throw new LimitError('bytes per DMA op', length, DMA_OP_BYTES_MAX);
  return { page: u64(page, 'page'), offset, length };
}

/** A pin request: 1..PIN_PAGES_MAX pages from firstPgoff (past EOF is the engine's SIGBUS). */
export function pinRequest(inoField: string | number, firstPgoffField: string | number, npages: number, writable: boolean): CheckedPin {
  const file = ino(inoField);
  const firstPgoff = u64(firstPgoffField, 'first_pgoff');
  if (!Number.isSafeInteger(npages) || npages < 1) throw new InvalidArgumentError('npages must be >= 1');
  if (npages > PIN_PAGES_MAX) throw new LimitError('pages per pin', npages, PIN_PAGES_MAX);
  return { ino: file, firstPgoff, npages, writable };
}

/**
 * A fallocate: length > 0, offset + length within the maximum file size (EFBIG), and
 * aligned to BLOCK_SIZE where the mode needs it (FALLOCATE_MODE_RULES.pageAligned).
 * Whether a collapse ends before EOF depends on the file: the engine's check.
 */
export function fallocateRequest(mode: FallocateMode, offsetField: string | number, lengthField: string | number): CheckedFallocate {
  const offset = u64(offsetField, 'offset');
  const length = u64(lengthField, 'length');
  if (length === 0) throw new InvalidArgumentError('length must be > 0');
  fileEnd(offset, length);
  if (FALLOCATE_MODE_RULES[mode].pageAligned && (offset % BLOCK_SIZE !== 0 || length % BLOCK_SIZE !== 0)) {
    throw new InvalidArgumentError(`${mode} needs offset and length aligned to ${BLOCK_SIZE} (offset ${offset}, length ${length})`);
  }
  return { mode, offset, length };
}

/** Files.Fallocate's mode field: required, and one of FALLOCATE_MODES (the proto's names). */
export function fallocateMode(value: string | number): FallocateMode {
  if (value === 'MODE_UNSPECIFIED') throw new InvalidArgumentError('mode is required');
  return enumValue(value, FALLOCATE_MODES, 'mode');
}
