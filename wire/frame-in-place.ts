/**
 * grpc-js frames every message by copying it behind a 5-byte prefix into a new Buffer:
 * on the server in BaseServerInterceptingCall.serializeMessage, on the client in
 * CompressionFilter.sendMessage (identity encoding). For a 1 MiB read or write that is a
 * full extra copy (and a 1 MiB allocation for the GC). The bulk encoders
 * (wire/bulk-codec.ts) leave room for the prefix in front of the messages they build;
 * these hooks frame exactly those messages in place (framedInPlace) and leave every other
 * message to grpc-js's own code, unchanged.
 *
 * Both hooks patch a prototype of grpc-js internals, as server/rpc/flow-control.ts reaches
 * into grpc.Server. They install only on the grpc-js minor release they were written and
 * tested against (GRPC_JS_FRAMED_MINOR), and only if the shape they rely on is there;
 * otherwise they report false and daxd runs with grpc-js's own copy (slower, never
 * incorrect). Idempotent.
 *
 * Ownership: the framed Buffer is the encoder's own memory (a headroom buffer nothing
 * else writes to once encoded); grpc-js hands it to the HTTP/2 stream and drops it when
 * written, as it does with its own copy.
 */
import * as serverInterceptors from '@grpc/grpc-js/build/src/server-interceptors';
import * as compressionFilter from '@grpc/grpc-js/build/src/compression-filter';
import { framedInPlace } from './bulk-codec';

interface ServerCallInternals {
  handler?: { serialize?: (value: unknown) => Buffer };
  serializeMessage(value: unknown): Buffer;
}

interface ClientFilterInternals {
  maxSendMessageLength?: number;
  sendCompression?: { constructor: { name: string } };
  sendMessage(message: Promise<{ message: Buffer; flags?: number }>): Promise<{ message: Buffer; flags?: number }>;
}

const PATCHED = Symbol('daxd.framedInPlace');

/** The grpc-js release line whose internals the hooks replace (see the top of this file). */
export const GRPC_JS_FRAMED_MINOR = '1.14.';

/** Is the grpc-js this process loads one the hooks were written for? */
function grpcJsMatches(): boolean {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- its package.json, read once
    const { version } = require('@grpc/grpc-js/package.json') as { version?: unknown };
    return typeof version === 'string' && version.startsWith(GRPC_JS_FRAMED_MINOR);
  } catch {
    return false;
  }
}

/** Server replies: see the top of this file. False if grpc-js's internals moved. */
export function frameRepliesInPlace(): boolean {
  if (!grpcJsMatches()) return false;
  const proto = (serverInterceptors as unknown as { BaseServerInterceptingCall?: { prototype: ServerCallInternals & { [PATCHED]?: true } } }).BaseServerInterceptingCall?.prototype;
  if (proto === undefined || typeof proto.serializeMessage !== 'function') return false;
  if (proto[PATCHED]) return true;
  const original = proto.serializeMessage;
  proto.serializeMessage = function serializeMessage(this: ServerCallInternals, value: unknown): Buffer {
    const serialize = this.handler?.serialize;
    if (typeof serialize !== 'function') return original.call(this, value);
    const message = serialize(value);
    const framed = framedInPlace(message);
    if (framed !== null) return framed;
    // grpc-js's own framing (the body of the method replaced here).
    const output = Buffer.allocUnsafe(message.byteLength + 5);
    output.writeUInt8(0, 0);
    output.writeUInt32BE(message.byteLength, 1);
    message.copy(output, 5);
    return output;
  };
  proto[PATCHED] = true;
  return true;
}

/** Client requests: see the top of this file. False if grpc-js's internals moved. */
export function frameRequestsInPlace(): boolean {
  if (!grpcJsMatches()) return false;
  const proto = (compressionFilter as unknown as { CompressionFilter?: { prototype: ClientFilterInternals & { [PATCHED]?: true } } }).CompressionFilter?.prototype;
  if (proto === undefined || typeof proto.sendMessage !== 'function') return false;
  if (proto[PATCHED]) return true;
  const original = proto.sendMessage;
  proto.sendMessage = async function sendMessage(this: ClientFilterInternals, message) {
    const resolved = await message;
    const max = this.maxSendMessageLength;
    // Only the identity encoding (what daxd uses), and never past the send limit: grpc-js
    // refuses those with its own status.
    if (this.sendCompression?.constructor.name === 'IdentityHandler' && typeof max === 'number' && (max === -1 || resolved.message.length <= max)) {
      const framed = framedInPlace(resolved.message);
      if (framed !== null) return { message: framed, flags: resolved.flags };
    }
    return original.call(this, Promise.resolve(resolved));
  };
  proto[PATCHED] = true;
  return true;
}
