/**
 * The limits both ends of the wire must agree on (README "Limits", docs/PROTOCOL.md
 * "Limits both sides must agree on"). The server enforces them; the SDK sizes its
 * messages by them. Each side's own choices stay in its own limits file
 * (server/rpc/limits.ts, client/limits.ts).
 *
 * The server also reports the data-path pair in VolumeInfo (`max_io_bytes`,
 * `max_message_bytes`); the SDK uses the values here only until that answer arrives, so
 * a server may raise them in v1 without breaking clients (lowering one is a breaking
 * change).
 */

/**
 * Most data one Read/Write call (or one stream op, or one stream message) carries;
 * bigger transfers are chunked by the SDK. Below the engine's own IO_BYTES_MAX
 * (server/limits.ts) by design: a message should stay small next to the flow-control
 * window.
 */
export const RPC_IO_BYTES_MAX = 4 * 1024 * 1024;

/**
 * Largest gRPC message either end sends or accepts, set explicitly on server and client:
 * one full I/O plus room for framing (a stream batch of 1024 op headers is ~20 KiB).
 * Anything bigger is refused by grpc-js itself with RESOURCE_EXHAUSTED (no daxd-reason:
 * daxd never sees the message).
 */
export const MESSAGE_BYTES_MAX = RPC_IO_BYTES_MAX + 64 * 1024;

/**
 * Bytes one Dma.Stream op reads or writes (its range may span the pages of its pin, which
 * covers at most 1024 pages = 4 MiB); more is ELIMIT. One op's data fits one message, as
 * for the Files streams.
 */
export const DMA_OP_BYTES_MAX = RPC_IO_BYTES_MAX;

/** Ops one ReadStream/WriteStream message may carry, and results one reply carries. */
export const STREAM_OPS_PER_MESSAGE_MAX = 1024;

/** Ops in one Mapping.FaultBatch or Mapping.AccessBatch call; more is ELIMIT. */
export const MAPPING_BATCH_OPS_MAX = 1024;

/** A page of the protocol: `pgoff` = offset / PAGE_BYTES, and a PTE or pin page is this long. */
export const PAGE_BYTES = 4096;

/**
 * A PMD (huge) entry: PMD_PAGES pages, PMD_BYTES bytes, 2 MiB-aligned (a PMD PTE's pgoff
 * is a multiple of PMD_PAGES). A Load or Store through a PMD token addresses any byte of
 * its PMD_BYTES; through a PAGE token, of its PAGE_BYTES.
 */
export const PMD_PAGES = 512;
export const PMD_BYTES = PMD_PAGES * PAGE_BYTES;

/**
 * Read-reply buffers (1 MiB each, wire/bulk-codec.ts withHeadroom) kept for reuse once
 * their reply has been written: at most this many (16 MiB) sit idle in the pool; past
 * it a released buffer is left to the GC.
 */
export const REPLY_BUFFERS_POOLED_MAX = 16;

/**
 * HTTP/2 flow-control window (per stream and per connection) both ends advertise, so a
 * 1 MiB message does not crawl through the 64 KiB default window. Measured with
 * `npm run bench:bulk` (README "Performance of bulk I/O, and tuning"): 4 MiB was no
 * faster, 64 MiB cost more server CPU per MiB written; 16 MiB kept.
 */
export const FLOW_CONTROL_WINDOW_BYTES = 16 * 1024 * 1024;
