/**
 * The ceiling for bench:rpc: a bare grpc-js server speaking daxd's Files wire format with
 * no engine, no validation and no pipeline behind it. Read returns `length` bytes of a
 * static buffer, Write returns the length it got, StatVolume daxd's data-path limits;
 * ReadStream/WriteStream answer each
 * incoming batch at once with one batch of results. It uses daxd's server options and
 * flow-control windows, and daxd's tuned bulk path: the hand-written codecs of the
 * data-carrying messages (wire/bulk-service.ts, no strict walk: the echo checks nothing)
 * and replies framed in place (wire/frame-in-place.ts). So it is the tuned transport
 * ceiling, and the only difference from daxd is daxd itself.
 *
 * Run as a child process: prints {"echo": "127.0.0.1:PORT"} on stdout, exits on SIGTERM.
 */
import * as grpc from '@grpc/grpc-js';
import { loadDaxdProto } from '../../wire/proto';
import type { FilesHandlers } from '../../wire/generated/daxd/v1/Files';
import type { ReadStreamRequest__Output } from '../../wire/generated/daxd/v1/ReadStreamRequest';
import type { WriteStreamRequest__Output } from '../../wire/generated/daxd/v1/WriteStreamRequest';
import { raiseConnectionWindow, raiseStreamWindow, SERVER_OPTIONS } from '../../server/rpc/flow-control';
import { RPC_IO_BYTES_MAX } from '../../server/rpc/limits';
import { MESSAGE_BYTES_MAX } from '../../wire/limits';
import { BULK_REQUEST_DECODERS, withBulkResponseEncoders } from '../../wire/bulk-service';
import { frameRepliesInPlace } from '../../wire/frame-in-place';

const PAYLOAD = Buffer.alloc(RPC_IO_BYTES_MAX, 0xab);

function unimplemented(_call: unknown, callback: grpc.sendUnaryData<never>): void {
  callback({ code: grpc.status.UNIMPLEMENTED, details: 'echo server' });
}

const handlers: FilesHandlers = {
  Read: (call, callback) => callback(null, { data: PAYLOAD.subarray(0, Number(call.request.length)) }),
  Write: (call, callback) => callback(null, { written: call.request.data.length, size: call.request.data.length }),
  ReadStream: (call) => {
    call.on('data', (req: ReadStreamRequest__Output) => call.write({ results: req.ops.map((op) => ({ id: op.id, data: PAYLOAD.subarray(0, Number(op.length)) })) }));
    call.on('end', () => call.end());
  },
  WriteStream: (call) => {
    call.on('data', (req: WriteStreamRequest__Output) => call.write({ results: req.ops.map((op) => ({ id: op.id, written: op.data.length, size: op.data.length })) }));
    call.on('end', () => call.end());
  },
  Create: unimplemented, Lookup: unimplemented, Stat: unimplemented, List: unimplemented, Unlink: unimplemented,
  Fsync: unimplemented, Truncate: unimplemented, Fallocate: unimplemented,
  // daxd's data-path limits, as daxd reports them: the SDK fetches them once. Unanswered,
  // it would ask again before every I/O (an extra call per op that daxd does not cost).
  StatVolume: (_call, callback) => callback(null, { block_size: 4096, max_io_bytes: RPC_IO_BYTES_MAX, max_message_bytes: MESSAGE_BYTES_MAX }),
};

/** The Files service with daxd's bulk codecs on both sides of the server. */
function bulkCodecs(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, def] of Object.entries(withBulkResponseEncoders(service))) {
    const decode = BULK_REQUEST_DECODERS[def.path];
    out[name] = decode === undefined ? def : { ...def, requestDeserialize: decode };
  }
  return out as grpc.ServiceDefinition;
}

export async function startEchoServer(address = '127.0.0.1:0'): Promise<{ address: string; server: grpc.Server }> {
  const server = new grpc.Server(SERVER_OPTIONS);
  raiseStreamWindow(server);
  frameRepliesInPlace();
  server.addService(bulkCodecs(loadDaxdProto().daxd.v1.Files.service), handlers);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  raiseConnectionWindow(server);
  return { address: `127.0.0.1:${port}`, server };
}

if (require.main === module) {
  void startEchoServer().then(({ address, server }) => {
    process.stdout.write(`${JSON.stringify({ echo: address })}\n`);
    process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
  });
}
