/**
 * Limits of the HTTP side (README "Limits" lists them; the lint step checks they stay in
 * sync). Every admin list is bounded: a volume of a million files or a session with
 * thousands of pins answers a page, never the whole table.
 */

/** /api/v1/files page size when none is asked, and the most one page holds. */
export const ADMIN_FILES_PAGE_DEFAULT = 100;
export const ADMIN_FILES_PAGE_MAX = 1000;

/** Rows /api/v1/pins and /api/v1/locks return at most (oldest first); `total` counts them all. */
export const ADMIN_ROWS_DEFAULT = 100;
export const ADMIN_ROWS_MAX = 1000;

/** Hex digits of a session or pin id the admin API shows: ids are capabilities (S7), never served whole. */
export const ADMIN_ID_PREFIX_CHARS = 8;
