/**
 * gRPC channel options of the server: explicit message limits and HTTP/2 flow-control
 * windows large enough for 1 MiB messages (measured: a 64 KiB window makes bulk
 * transfers crawl).
 *
 * grpc-js has a client option for the window ('grpc-node.flow_control_window') but none
 * for servers, so raiseServerFlowControlWindow reaches into two private fields of
 * grpc.Server (pinned to @grpc/grpc-js 1.14): the options its HTTP/2 servers are created
 * with (per-stream window), and its HTTP/2 servers, to raise each new connection's
 * window. If those fields move, it says so and the server runs with default windows:
 * slower, never incorrect.
 */
import type http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';
import { FLOW_CONTROL_WINDOW_BYTES, MESSAGE_BYTES_MAX, STREAMS_PER_CONNECTION_MAX } from './limits';

/**
 * Tried and not set (README "Performance of bulk I/O, and tuning"): a larger HTTP/2
 * maxFrameSize (no CPU gain per MiB), grpc-node.max_session_memory (grpc-js leaves it
 * unbounded; stream-memory.ts bounds what daxd holds).
 */
export const SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.max_receive_message_length': MESSAGE_BYTES_MAX,
  'grpc.max_send_message_length': MESSAGE_BYTES_MAX,
  'grpc.max_concurrent_streams': STREAMS_PER_CONNECTION_MAX,
};

interface GrpcServerInternals {
  commonServerOptions?: http2.ServerOptions;
  http2Servers?: Map<http2.Http2Server, unknown>;
}

/** Before bindAsync: every HTTP/2 stream of the server advertises windowBytes. */
export function raiseStreamWindow(server: grpc.Server, windowBytes = FLOW_CONTROL_WINDOW_BYTES): boolean {
  const internals = server as unknown as GrpcServerInternals;
  const options = internals.commonServerOptions;
  if (options === undefined || typeof options !== 'object') return false;
  options.settings = { ...options.settings, initialWindowSize: windowBytes };
  return true;
}

/** After bindAsync: every new connection gets a windowBytes connection-level window. */
export function raiseConnectionWindow(server: grpc.Server, windowBytes = FLOW_CONTROL_WINDOW_BYTES): boolean {
  const servers = (server as unknown as GrpcServerInternals).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) return false;
  for (const http2Server of servers.keys()) {
    http2Server.on('session', (session: http2.ServerHttp2Session) => {
      session.setLocalWindowSize(windowBytes);
    });
  }
  return true;
}
