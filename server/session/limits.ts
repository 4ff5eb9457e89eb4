/**
 * Limits of the session layer (README "Limits" lists them; S7: sessions bound every
 * resource, so every session resource is bounded here).
 */

/** Leases a client may ask for. lease_ms = 0 asks for the default. */
export const LEASE_MS_MIN = 100;
export const LEASE_MS_MAX = 120_000;
export const LEASE_MS_DEFAULT = 30_000;

/** Sessions open at once; the next Open gets ELIMIT (RESOURCE_EXHAUSTED). */
export const SESSIONS_MAX = 1024;

/**
 * Events queued for a session's Events stream while its reader falls behind. Past it,
 * events are dropped and the stream gets one EventsLost{count}; with no stream attached
 * nothing is queued. Never ends the session: the token check is the fence (S7).
 */
export const SESSION_EVENTS_QUEUED_MAX = 4096;

/** Resources (PTEs, pins, ...) one session may hold at once. */
export const SESSION_RESOURCES_MAX = 1 << 20;

/**
 * Ended sessions remembered so a late call on one gets SESSION_EXPIRED rather than
 * SESSION_UNKNOWN. Oldest forgotten first.
 */
export const SESSION_TOMBSTONES_MAX = 4096;
