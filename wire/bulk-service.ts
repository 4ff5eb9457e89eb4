/**
 * Where the hand-written codecs of bulk-codec.ts plug in: the service definitions of the
 * contract (as @grpc/proto-loader builds them) with the (de)serializers of the
 * data-carrying messages replaced, for the server (replies it encodes) and for the SDK
 * (requests it encodes, replies it decodes). The server's request side goes through its
 * strict decoding first (server/rpc/strict-decode.ts uses BULK_REQUEST_DECODERS after its
 * walk). Every other RPC keeps proto-loader's protobufjs codecs.
 */
import type * as grpc from '@grpc/grpc-js';
import {
  decodeReadResponse, decodeReadStreamResponse, decodeWriteRequest, decodeWriteStreamRequest,
  encodeReadResponse, encodeReadStreamResponse, encodeWriteRequest, encodeWriteStreamRequest, type Serialize,
} from './bulk-codec';

type Encoder = (value: unknown, fallback: Serialize) => Buffer;
type Decoder = (bytes: Buffer) => unknown;

/** Requests the SDK encodes and the server decodes by hand, by RPC path. */
export const BULK_REQUEST_ENCODERS: Readonly<Record<string, Encoder>> = {
  '/daxd.v1.Files/Write': encodeWriteRequest,
  '/daxd.v1.Files/WriteStream': encodeWriteStreamRequest,
};
export const BULK_REQUEST_DECODERS: Readonly<Record<string, Decoder>> = {
  '/daxd.v1.Files/Write': decodeWriteRequest,
  '/daxd.v1.Files/WriteStream': decodeWriteStreamRequest,
};

/** Replies the server encodes and the SDK decodes by hand, by RPC path. */
export const BULK_RESPONSE_ENCODERS: Readonly<Record<string, Encoder>> = {
  '/daxd.v1.Files/Read': encodeReadResponse,
  '/daxd.v1.Files/ReadStream': encodeReadStreamResponse,
};
export const BULK_RESPONSE_DECODERS: Readonly<Record<string, Decoder>> = {
  '/daxd.v1.Files/Read': decodeReadResponse,
  '/daxd.v1.Files/ReadStream': decodeReadStreamResponse,
};

function mapMethods(service: grpc.ServiceDefinition, change: (def: grpc.MethodDefinition<unknown, unknown>) => grpc.MethodDefinition<unknown, unknown>): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, def] of Object.entries(service)) out[name] = change(def as grpc.MethodDefinition<unknown, unknown>);
  return out as grpc.ServiceDefinition;
}

/** The server's side: replies of Read and ReadStream encoded by hand (requests: strict-decode.ts). */
export function withBulkResponseEncoders(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return mapMethods(service, (def) => {
    const encode = BULK_RESPONSE_ENCODERS[def.path];
    if (encode === undefined) return def;
    const fallback = def.responseSerialize as Serialize;
    return { ...def, responseSerialize: (value: unknown) => encode(value, fallback) };
  });
}

/** The SDK's side: Write/WriteStream requests encoded, Read/ReadStream replies decoded by hand. */
export function withBulkClientCodecs(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return mapMethods(service, (def) => {
    const encode = BULK_REQUEST_ENCODERS[def.path];
    const decode = BULK_RESPONSE_DECODERS[def.path];
    if (encode === undefined && decode === undefined) return def;
    const fallback = def.requestSerialize as Serialize;
    return {
      ...def,
      ...(encode === undefined ? {} : { requestSerialize: (value: unknown) => encode(value, fallback) }),
      ...(decode === undefined ? {} : { responseDeserialize: decode }),
    };
  });
}
