/**
 * A draining node's client of the target node (drain.ts): the Files calls of one copy,
 * over the wire module's generated client (server/ does not import client/). Each call
 * carries the Drain caller's `authorization` (the target admits it as it admitted the
 * Drain) and DRAIN_SOURCE_METADATA_KEY naming this node, and has a deadline of
 * DRAIN_PEER_CALL_MS. Credentials: this node's TLS material (its CA as trust, its
 * certificate and key as the client certificate) when TLS is on, else plain (loopback).
 */
import * as grpc from '@grpc/grpc-js';
import { loadDaxdProto } from '../../wire/proto';
import { DRAIN_SOURCE_METADATA_KEY, REASON_METADATA_KEY } from '../../wire/metadata';
import type { FilesClient } from '../../wire/generated/daxd/v1/Files';
import { DRAIN_PEER_CALL_MS } from './limits';

export interface DrainPeer {
  /** Creates (or opens: a rerun's partial copy) the name on the target; its inode. */
  create(name: string): Promise<number>;
  truncate(ino: number, sizeBytes: number): Promise<void>;
  write(ino: number, offsetBytes: number, data: Buffer): Promise<void>;
  fsync(ino: number): Promise<void>;
  unlink(name: string): Promise<void>;
  close(): void;
}

/** A failed call to the target: names the node, the call and the target's status and reason. */
export class PeerCallError extends Error {
  constructor(node: string, method: string, err: grpc.ServiceError) {
    const reason = err.metadata?.get(REASON_METADATA_KEY)[0];
    super(`node ${node}: ${method}: ${grpc.status[err.code] ?? err.code}${typeof reason === 'string' ? ` / ${reason}` : ''}: ${err.details}`);
    this.name = 'PeerCallError';
  }
}

export function drainPeer(self: string, node: string, address: string, credentials: grpc.ChannelCredentials, authorization: string | null): DrainPeer {
  const Files = loadDaxdProto().daxd.v1.Files;
  const client = new Files(address, credentials) as unknown as FilesClient;
  const metadata = () => {
    const md = new grpc.Metadata();
    md.set(DRAIN_SOURCE_METADATA_KEY, self);
    if (authorization !== null) md.set('authorization', authorization);
    return md;
  };
  const call = <Res>(method: string, invoke: (md: grpc.Metadata, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => unknown) =>
    new Promise<Res>((resolve, reject) => {
      invoke(metadata(), { deadline: Date.now() + DRAIN_PEER_CALL_MS }, (err, res) => {
        if (err !== null) reject(new PeerCallError(node, method, err));
        else resolve(res as Res);
      });
    });
  return {
    create: async (name) => Number((await call<{ ino?: string }>('Create', (md, o, cb) => client.Create({ name, exclusive: false }, md, o, cb))).ino ?? 0),
    truncate: async (ino, size) => { await call('Truncate', (md, o, cb) => client.Truncate({ ino, size, layout_break: 'WAIT' }, md, o, cb)); },
    write: async (ino, offset, data) => { await call('Write', (md, o, cb) => client.Write({ ino, offset, data, sync: false }, md, o, cb)); },
    fsync: async (ino) => { await call('Fsync', (md, o, cb) => client.Fsync({ ino, datasync: false }, md, o, cb)); },
    unlink: async (name) => { await call('Unlink', (md, o, cb) => client.Unlink({ name }, md, o, cb)); },
    close: () => client.close(),
  };
}

/** This node's client credentials for calls to other nodes: its TLS material (CA as trust, certificate and key as client certificate), or plain without TLS. */
export function peerCredentials(tls: { readonly current: { readonly options: { cert: Buffer; key: Buffer; ca?: Buffer } } } | null): grpc.ChannelCredentials {
  if (tls === null) return grpc.credentials.createInsecure();
  const { cert, key, ca } = tls.current.options;
  return grpc.credentials.createSsl(ca ?? null, key, cert);
}
