/**
 * Limits of the network layer, named once (README "Limits" lists them). Hitting one is a
 * coded error saying "(actual vs. max)": ELIMIT (RESOURCE_EXHAUSTED) for sizes and
 * counts, EINVAL for malformed values. The limits the SDK must agree on (message and I/O
 * size, ops per message or batch, the flow-control window) are the wire's (wire/limits.ts),
 * re-exported here so the server names all of its limits in one place.
 */
export {
  DMA_OP_BYTES_MAX, FLOW_CONTROL_WINDOW_BYTES, MAPPING_BATCH_OPS_MAX, MESSAGE_BYTES_MAX, RPC_IO_BYTES_MAX, STREAM_OPS_PER_MESSAGE_MAX,
} from '../../wire/limits';

/**
 * Work one stream may have running at once. At the bound the server stops reading the
 * stream (HTTP/2 flow control then pushes back on the client): never an error.
 */
export const STREAM_OPS_IN_FLIGHT_MAX = 1024;

/**
 * Data bytes the op streams may hold in server memory: an op's bytes count from its start
 * until its reply has been handed to HTTP/2 (a read's data, a write's input until the
 * engine is done with it). Per stream, per connection and for the whole server
 * (stream-memory.ts). A stream at any bound starts no op and reads no request until
 * bytes are sent: a client that stops reading stalls its own stream (and, at the shared
 * bounds, waits with others), never grows the heap. Each is >= RPC_IO_BYTES_MAX, so one
 * op always fits an empty stream; the per-stream bound is above FLOW_CONTROL_WINDOW_BYTES
 * so a reader that keeps up always has a full window of replies ready.
 */
export const STREAM_BYTES_BUFFERED_MAX = 32 * 1024 * 1024;
export const CONNECTION_BYTES_BUFFERED_MAX = 64 * 1024 * 1024;
export const SERVER_BYTES_BUFFERED_MAX = 256 * 1024 * 1024;

/** A reply batch is sent once it holds this many data bytes (or at the end of the tick). */
export const STREAM_REPLY_FLUSH_BYTES = 1024 * 1024;

/**
 * Calls open at once on one connection (HTTP/2 MAX_CONCURRENT_STREAMS): a client past it
 * waits for a stream to end (grpc-js queues the call), it is not refused.
 */
export const STREAMS_PER_CONNECTION_MAX = 1024;

/** List page size: 0 means the default; larger requests are served this many (AIP-158). */
export const LIST_PAGE_ENTRIES_DEFAULT = 100;
export const LIST_PAGE_ENTRIES_MAX = 1000;

/** Free-text client names (sessions), bytes of UTF-8. */
export const CLIENT_NAME_BYTES_MAX = 255;

/** Graceful shutdown: in-flight calls get this long to finish before they are cancelled. */
export const SHUTDOWN_GRACE_MS = 10_000;

/**
 * Session ids, PTE tokens, pin ids and request ids: longer is EINVAL before any lookup
 * (the ids daxd issues are 22 to 32 characters; a client's request id up to 64).
 */
export const ID_BYTES_MAX = 64;

/**
 * A List page_token: base64url of a file name, so at most 340 characters (255 bytes).
 * Longer, or anything that does not decode to a valid name, is EINVAL.
 */
export const PAGE_TOKEN_BYTES_MAX = 340;

/**
 * Status messages (grpc-message) are cut to this many bytes of UTF-8, so a status and its
 * trailers always fit the peer's HTTP/2 header limit (64 KiB by default): a trailer over
 * it never reaches the client, whose call then hangs.
 */
export const STATUS_DETAILS_BYTES_MAX = 1024;

/** Each custom trailer or header value daxd sends is at most this long (else dropped and logged). */
export const METADATA_VALUE_BYTES_MAX = 256;

/**
 * Shutdown, after SHUTDOWN_GRACE_MS: the cancelled calls' connections get this long to
 * close, then their sockets are destroyed; a server whose event loop still does not
 * drain after unmounting exits this long after the unmount. So SIGTERM ends daxd within
 * SHUTDOWN_GRACE_MS + SHUTDOWN_FORCE_MS plus the unmount.
 */
export const SHUTDOWN_FORCE_MS = 1_000;

/**
 * A client cancels its call when its own deadline passes, and that RST_STREAM can reach us
 * a little before our copy of the deadline (which starts when the request arrived). A
 * cancel this close to the deadline is counted as the timeout it is (ETIMEDOUT), not as a
 * client cancel.
 */
export const DEADLINE_CANCEL_SLACK_MS = 250;

/**
 * grpc.health.v1.Health Watch calls open at once (standard-services.ts); one more is
 * ELIMIT. Probes use Check; a watcher is a load balancer or a sidecar, a few per client.
 */
export const HEALTH_WATCHES_MAX = 1024;
