/**
 * The generated gRPC stubs of the four services, sharing one channel.
 */
import * as grpc from '@grpc/grpc-js';
import type { ProtoGrpcType } from '../wire/generated/daxd';
import type { DmaClient } from '../wire/generated/daxd/v1/Dma';
import type { FilesClient } from '../wire/generated/daxd/v1/Files';
import type { MappingClient } from '../wire/generated/daxd/v1/Mapping';
import type { SessionClient } from '../wire/generated/daxd/v1/Session';
import { withBulkClientCodecs } from '../wire/bulk-service';
import { withFaultBatchDecoder } from '../wire/fault-codec';
import { frameRequestsInPlace } from '../wire/frame-in-place';

/**
 * The Files stub with the data-carrying messages (Write/WriteStream requests, Read/ReadStream
 * replies) encoded and decoded by hand (wire/bulk-codec.ts: the same bytes as protobufjs,
 * one copy of the data on the way out, replies' data as views of the received message).
 */
const filesClients = new WeakMap<ProtoGrpcType, grpc.ServiceClientConstructor>();
function filesClientOf(proto: ProtoGrpcType): grpc.ServiceClientConstructor {
  let ctor = filesClients.get(proto);
  if (ctor === undefined) {
    ctor = grpc.makeGenericClientConstructor(withBulkClientCodecs(proto.daxd.v1.Files.service), 'Files');
    filesClients.set(proto, ctor);
  }
  return ctor;
}

/** Mapping stubs whose FaultBatch replies are decoded by hand (pages as views, no protobufjs). */
const mappingClients = new WeakMap<object, grpc.ServiceClientConstructor>();
function mappingClient(proto: ProtoGrpcType): grpc.ServiceClientConstructor {
  const loaded = proto.daxd.v1.Mapping as unknown as grpc.ServiceClientConstructor;
  let ctor = mappingClients.get(loaded);
  if (ctor === undefined) {
    ctor = grpc.makeGenericClientConstructor(withFaultBatchDecoder(loaded.service), 'Mapping');
    mappingClients.set(loaded, ctor);
  }
  return ctor;
}

export interface DaxRawClients {
  readonly session: SessionClient;
  readonly files: FilesClient;
  readonly mapping: MappingClient;
  readonly dma: DmaClient;
}

export class RawClients implements DaxRawClients {
  readonly session: SessionClient;
  readonly files: FilesClient;
  readonly mapping: MappingClient;
  readonly dma: DmaClient;

  /**
   * `credentials`: plaintext or TLS (credentials.ts); `interceptors` run on every call of
   * every stub (the bearer token's).
   */
  constructor(proto: ProtoGrpcType, address: string, channelOptions: grpc.ChannelOptions,
    credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(), interceptors: grpc.Interceptor[] = []) {
    const v1 = proto.daxd.v1;
    frameRequestsInPlace(); // false if grpc-js moved: requests are then framed by copying, as before
    this.files = new (filesClientOf(proto))(address, credentials, { ...channelOptions, interceptors }) as unknown as FilesClient;
    // The other stubs ride on the same channel: one connection per client.
    const channelOverride = this.files.getChannel();
    this.session = new v1.Session(address, credentials, { ...channelOptions, channelOverride, interceptors });
    const Mapping = mappingClient(proto);
    this.mapping = new Mapping(address, credentials, { ...channelOptions, channelOverride, interceptors }) as unknown as MappingClient;
    this.dma = new v1.Dma(address, credentials, { ...channelOptions, channelOverride, interceptors });
  }

  close(): void {
    this.files.close();
  }
}
