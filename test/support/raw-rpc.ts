/**
 * Raw gRPC access for tests that must send what the SDK never would: the generated stubs
 * with no send limit (so oversized messages reach the server), hand-encoded message
 * bytes, and promise wrappers that surface status + daxd-reason as DaxClientError.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { CLIENT_CHANNEL_OPTIONS, DaxClientError, loadDaxdProto } from '../../client';
import { RawClients } from '../../client/raw-clients';

export function rawClients(address: string): RawClients {
  return new RawClients(loadDaxdProto(), address, { ...CLIENT_CHANNEL_OPTIONS, 'grpc.max_send_message_length': -1 });
}

/** A unary call as a promise: (callback) => stub.Method(request, callback). */
export function call<Res>(invoke: (callback: grpc.requestCallback<Res>) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    invoke((err, response) => (err ? reject(DaxClientError.fromServiceError(err)) : resolve(response as Res)));
  });
}

/** Send pre-encoded request bytes to a unary method (e.g. '/daxd.v1.Files/Lookup'). */
export function callBytes(client: grpc.Client, method: string, request: Buffer, options: grpc.CallOptions = {}): Promise<Buffer> {
  return call<Buffer>((cb) => client.makeUnaryRequest(method, (b: Buffer) => b, (b: Buffer) => b, request, options, cb));
}

/** The protobuf encoding of a message whose field 1 is a string given as raw bytes. */
export function stringField1(bytes: number[]): Buffer {
  assert.ok(bytes.length < 128, 'single-byte length prefix only');
  return Buffer.from([0x0a, bytes.length, ...bytes]);
}

/** Await a promise that must fail; returns its DaxClientError. */
export async function failure(promise: Promise<unknown>): Promise<DaxClientError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof DaxClientError, `expected a DaxClientError, got ${String(err)}`);
    return err;
  }
  assert.fail('the call succeeded; it was expected to fail');
}

/** The status a server stream ends with (error or OK), and the messages it delivered. */
export function streamOutcome<T>(stream: grpc.ClientReadableStream<T> | grpc.ClientDuplexStream<unknown, T>): Promise<{ messages: T[]; error: DaxClientError | null }> {
  const messages: T[] = [];
  return new Promise((resolve) => {
    stream.on('data', (m: T) => messages.push(m));
    stream.on('error', (err: grpc.ServiceError) => resolve({ messages, error: DaxClientError.fromServiceError(err) }));
    stream.on('end', () => resolve({ messages, error: null }));
  });
}
