/**
 * The metadata keys of the wire contract (docs/PROTOCOL.md "Errors and metadata"). Both
 * are part of v1 and never change.
 */

/** Trailer holding the stable reason of a failure daxd itself reports (ENOENT, ELIMIT, ...). */
export const REASON_METADATA_KEY = 'daxd-reason';

/**
 * A call's request id: a client may send one (1..64 characters of [A-Za-z0-9._:-]),
 * else the server makes one up; a failed call returns it in its trailers.
 */
export const REQUEST_ID_METADATA_KEY = 'daxd-request-id';

/** Cluster (NOT_OWNER): trailer with the gRPC address (host:port) of the node the file is placed on. */
export const OWNER_METADATA_KEY = 'daxd-owner';
/** Cluster (NOT_OWNER): trailer with that node's name. */
export const OWNER_NODE_METADATA_KEY = 'daxd-owner-node';
/**
 * Cluster: request metadata a client sets on a Create it sends where a NOT_OWNER pointed
 * it ("1"): a node that has no placement for the name then places it on itself instead of
 * redirecting again (two nodes with different views cannot bounce a Create forever).
 */
export const REDIRECTED_METADATA_KEY = 'daxd-redirected';
/**
 * Cluster (Drain): request metadata a draining node S sets on its calls to the target
 * node T (value: S's name). T then creates, writes and removes a name whose placement says
 * `{S, moving: T}` (the copy in flight); any other caller gets NOT_OWNER for it.
 */
export const DRAIN_SOURCE_METADATA_KEY = 'daxd-drain-source';
