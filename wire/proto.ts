/**
 * The wire contract, loaded at run time from proto/daxd/v1/daxd.proto (the SDK and the
 * server load it the same way; the types come from wire/generated, derived from the
 * same file by `npm run gen:proto`).
 *
 * The decoding options are part of the contract's safety: uint64 fields decode as exact
 * decimal strings (`longs: String`), never as doubles that round above 2^53; enums decode
 * as value names, or as the bare number when the peer used a value this side does not
 * know; defaults are filled in, so a missing field reads as its zero value.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/daxd';

const PROTO_RELATIVE_PATH = path.join('proto', 'daxd', 'v1', 'daxd.proto');

/** The package root holding proto/: found upwards from here (source tree or dist/). */
function findProto(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, PROTO_RELATIVE_PATH);
    if (fs.existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`${PROTO_RELATIVE_PATH} not found above ${__dirname}`);
  }
}

export const PROTO_PATH = findProto();

export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

let loaded: ProtoGrpcType | null = null;

/** The daxd.v1 package: service definitions (for servers) and client constructors. */
export function loadDaxdProto(): ProtoGrpcType {
  if (loaded === null) {
    const definition = protoLoader.loadSync(PROTO_PATH, PROTO_LOADER_OPTIONS);
    loaded = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
  }
  return loaded;
}
