/**
 * The SDK's sizes and bounds. The message limit mirrors the server's documented one
 * (README "Limits"); the rest are the SDK's own choices.
 */

/** Largest gRPC message the SDK sends or accepts: the server's 4 MiB data limit + 64 KiB framing. */
export const MESSAGE_MAX_BYTES = 4 * 1024 * 1024 + 64 * 1024;

/** Reads and writes larger than this are split into pipelined ops of this size. */
export const CHUNK_BYTES = 1024 * 1024;

/** Ops and bytes one op stream keeps in flight; more wait in the SDK (not in memory of the server). */
export const PIPELINE_OPS_IN_FLIGHT_MAX = 1024;
export const PIPELINE_BYTES_IN_FLIGHT_MAX = 64 * 1024 * 1024;

/** One stream message carries at most this many ops (the server's limit) ... */
export const BATCH_OPS_MAX = 1024;
/** ... and is sent as soon as its data reaches this many bytes (else at the end of the tick) ... */
export const BATCH_FLUSH_BYTES = 1024 * 1024;
/** ... and never holds more data than the server takes per message (its 4 MiB I/O limit). */
export const BATCH_BYTES_MAX = 4 * 1024 * 1024;

/** HTTP/2 flow-control window the client advertises (per stream and per connection). */
export const FLOW_CONTROL_WINDOW_BYTES = 16 * 1024 * 1024;

/** Default deadline of a call, and of each op in a stream. */
export const DEFAULT_DEADLINE_MS = 30_000;

/** Attempts of an idempotent call that fails with UNAVAILABLE, and the first backoff. */
export const RETRIES_MAX = 3;
export const RETRY_BACKOFF_MS = 50;

/** An op stream with nothing in flight for this long is half-closed (it reopens on demand). */
export const STREAM_IDLE_CLOSE_MS = 2_000;

/** Chunks read ahead (or written behind) by the streaming helpers readChunks/writeChunks. */
export const STREAM_WINDOW_CHUNKS = 8;

// ---- mappings (MappedFile) ----------------------------------------------------

/** Ops in one FaultBatch / AccessBatch call: the server's MAPPING_BATCH_OPS_MAX. */
export const MAPPING_BATCH_OPS_MAX = 1024;

/** Rounds (fault batch, then access batch) one MappedFile keeps in flight; more ops wait queued. */
export const MAPPING_ROUNDS_IN_FLIGHT_MAX = 4;

/** Page ops one round takes from the queue (4 MiB of page-sized accesses). */
export const MAPPING_ROUND_OPS_MAX = 4 * MAPPING_BATCH_OPS_MAX;

/**
 * Times one access re-faults after PTE_STALE (or after its PTE was dropped by an
 * Invalidate) before it fails with that PTE_STALE: only a page invalidated this often
 * while the access is in flight gets there.
 */
export const MAPPING_STALE_RETRIES_MAX = 16;

/**
 * PTEs one MappedFile caches (4 GiB of pages); past it the oldest are forgotten (the
 * server keeps them until unmap or the session's end: forgetting one costs a re-fault).
 */
export const MAPPING_PTES_CACHED_MAX = 1024 * 1024;

/** Private (COW) pages one MappedFile keeps (1 GiB): a write that needs more is ELIMIT. */
export const MAPPING_PRIVATE_PAGES_MAX = 256 * 1024;

/** Page size of a mapping (the volume's block size). */
export const PAGE_BYTES = 4096;
