/**
 * Raw TLS clients for the transport tests: a grpc-js Files stub with chosen credentials
 * (CA, client certificate) and an https GET, each reduced to "ok" or the failure it saw.
 */
import * as grpc from '@grpc/grpc-js';
import https from 'node:https';
import { CLIENT_CHANNEL_OPTIONS, loadDaxdProto } from '../../client';
import type { FilesClient } from '../../wire/generated/daxd/v1/Files';
import type { CertPair } from './certs';

export interface ClientIdentity {
  /** The CA the client trusts (null: a plaintext client). */
  ca: CertPair | null;
  /** The client certificate it presents (none when absent). */
  client?: CertPair;
}

const CALL_DEADLINE_MS = 5_000;

export function tlsFiles(address: string, who: ClientIdentity): FilesClient {
  const credentials = who.ca === null
    ? grpc.credentials.createInsecure()
    : grpc.credentials.createSsl(who.ca.certPem, who.client?.keyPem ?? null, who.client?.certPem ?? null);
  // A fresh channel per client: grpc-js would otherwise share one subchannel among
  // clients with equal credentials, and a test must see its own handshake.
  return new (loadDaxdProto().daxd.v1.Files)(address, credentials, { ...CLIENT_CHANNEL_OPTIONS, 'grpc.use_local_subchannel_pool': 1 });
}

/** Files.StatVolume over a fresh connection as `who`: 'ok' or the grpc status name of the failure. */
export async function statVolumeAs(address: string, who: ClientIdentity): Promise<string> {
  const files = tlsFiles(address, who);
  try {
    return await new Promise<string>((resolve) => {
      files.StatVolume({}, { deadline: Date.now() + CALL_DEADLINE_MS }, (err) => resolve(err ? grpc.status[err.code] : 'ok'));
    });
  } finally {
    files.close();
  }
}

/** GET https://address/path as `who`: the status code, or the error code of a failed connection. */
export function httpsGet(address: string, path: string, who: ClientIdentity): Promise<number | string> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve) => {
    const request = https.get({
      host, port, path, ca: who.ca?.certPem, cert: who.client?.certPem, key: who.client?.keyPem, agent: false, timeout: CALL_DEADLINE_MS,
    }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode ?? 0));
    });
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}
