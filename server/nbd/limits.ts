/**
 * The NBD server's limits (server/nbd). Each is enforced where named and documented in
 * README.md's Limits table (the lint step checks this file too).
 */

/** TCP connections served at once; one more is accepted and closed at once (hard disconnect). */
export const NBD_CONNECTIONS_MAX = 32;

/**
 * Requests one connection has received and not yet answered. At the bound the server stops
 * reading the socket (backpressure) until one is answered: never an error.
 */
export const NBD_REQUESTS_IN_FLIGHT_MAX = 128;

/**
 * Bytes one connection holds in server memory: the data of WRITE requests not yet written
 * plus READ replies not yet handed to the kernel. At the bound no request is admitted and
 * the socket is not read until replies drain (backpressure, never an error). A connection
 * holding nothing always admits one request, so one NBD_REQUEST_BYTES_MAX request fits.
 */
export const NBD_CONNECTION_BYTES_BUFFERED_MAX = 64 * 1024 * 1024;

/**
 * Largest READ or WRITE payload (the maximum payload of NBD_INFO_BLOCK_SIZE; the spec asks
 * servers to accept 32 MiB). Longer: NBD_EINVAL (a WRITE's payload is read and discarded).
 * TRIM, WRITE_ZEROES and CACHE have no payload and are not bounded by it.
 */
export const NBD_REQUEST_BYTES_MAX = 32 * 1024 * 1024;

/**
 * The handshake waits this long for each of the client's steps: from TCP accept to its
 * first option, and from each option's answer to the next option complete (after
 * STARTTLS's answer: to the end of the TLS handshake). Past it the
 * connection is closed. Per step, not in total: libnbd's `nbdinfo --list` sends part of each
 * metadata-context query with MSG_MORE, which the kernel holds ~200 ms, so listing 300
 * exports takes a minute. The total is bounded by NBD_OPTIONS_MAX steps.
 */
export const NBD_HANDSHAKE_MS_MAX = 10_000;

/**
 * Options one connection may send during the handshake; one more closes it (a hard
 * disconnect). Options are read one at a time; a reply is short (LIST, the long one, waits
 * for the socket to drain), so replies a client leaves unread stay in the low MiB. High
 * enough for `nbdinfo --list`, which spends about three options per export: ~5,000 exports
 * in one handshake.
 */
export const NBD_OPTIONS_MAX = 16_384;

/** Data of one option; longer option data is discarded unread and answered NBD_REP_ERR_TOO_BIG. */
export const NBD_OPTION_BYTES_MAX = 16 * 1024;

/**
 * TRIM and WRITE_ZEROES over a pinned page with --nbd-layout-break WAIT (or RECALL, whose
 * holder did not unpin) wait for the pin at most this long, then fail with NBD_EIO and
 * the file unchanged.
 */
export const NBD_LAYOUT_BREAK_TIMEOUT_MS = 10_000;

/** BLOCK_STATUS answers at most this many bytes of the export per request (the spec lets a server answer less). */
export const NBD_BLOCK_STATUS_BYTES_MAX = 1024 * 1024 * 1024;

/**
 * Idle READ-reply and WRITE-payload buffers the server keeps for reuse (all connections
 * together), and the largest one it keeps (server/nbd/buffer-pool.ts).
 */
export const NBD_REPLY_POOL_BYTES_MAX = 32 * 1024 * 1024;
export const NBD_POOLED_BUFFER_BYTES_MAX = 4 * 1024 * 1024;
