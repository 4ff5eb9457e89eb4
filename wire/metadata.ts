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
