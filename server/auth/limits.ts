/**
 * Limits of authentication (README.md "Limits"). Units last.
 */

/** The --auth file is read whole at start: larger is refused (a principals file is small). */
export const AUTH_FILE_BYTES_MAX = 1024 * 1024;
/** Principals one --auth file may declare. */
export const PRINCIPALS_MAX = 10_000;
/** A principal's name: 1..PRINCIPAL_NAME_BYTES_MAX bytes of [A-Za-z0-9._@-]. */
export const PRINCIPAL_NAME_BYTES_MAX = 128;
/** A bearer token as sent: TOKEN_BYTES_MIN..TOKEN_BYTES_MAX printable ASCII. Longer is refused before hashing. */
export const TOKEN_BYTES_MIN = 16;
export const TOKEN_BYTES_MAX = 512;
/** Failed authentications one peer address may make per AUTH_FAILURE_WINDOW_MS before it is refused outright. */
export const AUTH_FAILURES_PER_WINDOW_MAX = 20;
export const AUTH_FAILURE_WINDOW_MS = 60_000;
/** Peer addresses whose failures are remembered at once; the least recently failing one is forgotten first. */
export const AUTH_FAILURE_PEERS_MAX = 4096;
