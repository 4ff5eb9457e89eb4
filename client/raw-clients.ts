/**
 * The generated gRPC stubs of the four services, sharing one channel.
 */
import * as grpc from '@grpc/grpc-js';
import type { ProtoGrpcType } from '../wire/generated/daxd';
import type { DmaClient } from '../wire/generated/daxd/v1/Dma';
import type { FilesClient } from '../wire/generated/daxd/v1/Files';
import type { MappingClient } from '../wire/generated/daxd/v1/Mapping';
import type { SessionClient } from '../wire/generated/daxd/v1/Session';

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

  constructor(proto: ProtoGrpcType, address: string, channelOptions: grpc.ChannelOptions) {
    const v1 = proto.daxd.v1;
    const credentials = grpc.credentials.createInsecure();
    this.files = new v1.Files(address, credentials, channelOptions);
    // The other stubs ride on the same channel: one connection per client.
    const channelOverride = this.files.getChannel();
    this.session = new v1.Session(address, credentials, { ...channelOptions, channelOverride });
    this.mapping = new v1.Mapping(address, credentials, { ...channelOptions, channelOverride });
    this.dma = new v1.Dma(address, credentials, { ...channelOptions, channelOverride });
  }

  close(): void {
    this.files.close();
  }
}
