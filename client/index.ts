/** The daxd client SDK. */
export { DaxClient, CLIENT_CHANNEL_OPTIONS } from './dax-client';
export type { DaxTlsOptions, Pem } from './credentials';
export type { DaxClientOptions, FileInfo, VolumeInfo, WriteOutcome, FallocateMode, LayoutBreak } from './dax-client';
export { DaxSession } from './session';
export type { OpenSessionOptions, InvalidateEvent, SessionStubs } from './session';
export { MappedFile } from './mapped-file';
export type { MmapOptions, MappedFileStats } from './mapped-file';
export type { ClientPte, FaultKind } from './mapping-rpc';
export { DmaPin, PinRevokedError } from './dma-pin';
export type { DmaPinState, PinOptions, RecallHandler } from './dma-pin';
export { DaxClientError, SigbusError, type ReceivedReason } from './errors';
export { DaxAuthError, DaxQuotaError, AUTH_REASONS, type AuthReason } from './errors';
export { REASON_METADATA_KEY, REQUEST_ID_METADATA_KEY } from '../wire/metadata';
export { REASON_NAMES, isReason, type Reason } from '../wire/reasons';
export { loadDaxdProto, PROTO_PATH, PROTO_LOADER_OPTIONS } from '../wire/proto';
export * as limits from './limits';
export { readChunks, writeChunks } from './file-transfer';
export type { ReadChunksOptions } from './file-transfer';
