/**
 * The SDK's own sizes and bounds. The limits it must agree on with the server (message and
 * I/O size, ops per message or batch, page size, flow-control window) are the wire's
 * (wire/limits.ts): defaults until the server's VolumeInfo says otherwise.
 */
import { MAPPING_BATCH_OPS_MAX } from '../wire/limits';

const MiB = 1024 * 1024;

export {
  FLOW_CONTROL_WINDOW_BYTES, MAPPING_BATCH_OPS_MAX, MESSAGE_BYTES_MAX, PAGE_BYTES, PMD_BYTES, PMD_PAGES, RPC_IO_BYTES_MAX, STREAM_OPS_PER_MESSAGE_MAX,
} from '../wire/limits';

/** Reads and writes larger than this are split into pipelined ops of this size. */
export const CHUNK_BYTES = 1 * MiB;

/** Chunks read ahead (or written behind) by the streaming helpers readChunks/writeChunks. */
export const STREAM_WINDOW_CHUNKS = 8;

/** Ops and bytes one op stream keeps in flight; more wait in the SDK (not in memory of the server). */
export const PIPELINE_OPS_IN_FLIGHT_MAX = 1024;
export const PIPELINE_BYTES_IN_FLIGHT_MAX = 64 * MiB;

/**
 * One stream message is sent as soon as its data reaches this many bytes (else at the end
 * of the tick); it never carries more than the wire's STREAM_OPS_PER_MESSAGE_MAX ops nor
 * more data than the server's max_io_bytes.
 */
export const BATCH_FLUSH_BYTES = 1 * MiB;

/** An op stream with nothing in flight for this long is half-closed (it reopens on demand). */
export const STREAM_IDLE_CLOSE_MS = 2_000;

/** Default deadline of a call, and of each op in a stream. */
export const DEADLINE_MS_DEFAULT = 30_000;

/** Attempts of an idempotent call that fails with UNAVAILABLE, and the first backoff. */
export const RETRIES_MAX = 3;
export const RETRY_BACKOFF_MS = 50;

// ---- mappings (MappedFile) ----------------------------------------------------

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
export const MAPPING_PTES_CACHED_MAX = 1 << 20;

/** Private (COW) pages one MappedFile keeps (1 GiB): a write that needs more is ELIMIT. */
export const MAPPING_PRIVATE_PAGES_MAX = 256 * 1024;
