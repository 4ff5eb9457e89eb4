/**
 * Limits of the cluster side (`daxd serve --etcd`), units last. README.md "Limits" has a
 * row for each (checked by `npm run lint`).
 */

/** --node-ttl-s bounds and default: the etcd lease of a node's registration, seconds. */
export const NODE_TTL_S_MIN = 2;
export const NODE_TTL_S_MAX = 300;
export const NODE_TTL_S_DEFAULT = 10;

/** --etcd: at most this many endpoint URLs. */
export const ETCD_ENDPOINTS_MAX = 16;

/** --node-name: 1..NODE_NAME_BYTES_MAX characters of [A-Za-z0-9._-]. */
export const NODE_NAME_BYTES_MAX = 63;

/** --etcd-prefix: at most this many bytes ("/" then [A-Za-z0-9._/-]). */
export const ETCD_PREFIX_BYTES_MAX = 128;

/** Deadline of every unary etcd call (get, put, txn, lease grant). */
export const ETCD_CALL_MS = 5_000;

/**
 * Keys per page of a read of a whole prefix (the watch cache's snapshot, reconcile):
 * grpc-js refuses replies over 4 MiB, so the pages are read one after the other at one
 * revision (a page that still is too big, with foreign large values, is halved).
 */
export const ETCD_RANGE_PAGE_KEYS = 1_000;

/**
 * A record read from etcd (node or placement JSON) larger than this is ignored as
 * foreign (logged): the cache holds only what daxd itself writes.
 */
export const ETCD_RECORD_BYTES_MAX = 4096;

/** A Watch stream whose client lets this many events queue up is ended (ELIMIT). */
export const CLUSTER_WATCH_EVENTS_BUFFERED_MAX = 100_000;

/** How long a node whose previous registration (same name, same volume) is still leased waits for it to expire at start: this many TTLs. */
export const PREVIOUS_LEASE_WAIT_TTLS = 1.5;

/** Drain: bytes read from the source and written to the target per Write call. */
export const DRAIN_COPY_CHUNK_BYTES = 1024 * 1024;

/** Drain: a progress message is streamed at least per this many bytes copied (and per file). */
export const DRAIN_PROGRESS_BYTES = 4 * 1024 * 1024;

/** Drain: how long one file's switch may wait for its pins (WAIT, or RECALL's grace); then the file is left in place (failed). */
export const DRAIN_SWITCH_WAIT_MS = 30_000;

/** Drain: deadline of each call of the draining node to the target node. */
export const DRAIN_PEER_CALL_MS = 30_000;
