/**
 * Every limit of daxd, named once. Hitting one is a coded error saying "(actual vs. max)".
 * README.md's "Limits" table lists these; a lint step checks they stay in sync.
 */
export const BLOCK_SIZE = 4096;
/** A PMD (2 MiB) mapping entry: order 9, PMD_PAGES pages on PMD_PAGES contiguous, aligned blocks. */
export const PMD_ORDER = 9;
export const PMD_PAGES = 1 << PMD_ORDER;
export const PMD_BYTES = PMD_PAGES * BLOCK_SIZE;
export const BLOCK_SHIFT = 12;

/** File names: 1..255 bytes of UTF-8, no NUL (as Linux NAME_MAX). */
export const NAME_BYTES_MAX = 255;

/** Smallest and largest volume mkfs accepts. The volume file is sparse: size is not written. */
export const VOLUME_BYTES_MIN = 16 * 1024 * 1024;
export const VOLUME_BYTES_MAX = 1024 * 1024 * 1024 * 1024;

/**
 * Largest file: the block map is a radix tree of 1024-entry map blocks, depth <= 3,
 * which reaches 4 TiB; we cap at 1 TiB, the largest volume.
 */
export const FILE_BYTES_MAX = VOLUME_BYTES_MAX;

/** Largest single read or write the engine serves in one call (the rpc layer's per-message cap is lower). */
export const IO_BYTES_MAX = 64 * 1024 * 1024;

/** Pages a long layout change (truncate, punch, collapse, unlink) handles per journal step. */
export const LAYOUT_STEP_PAGES = 1 << 18;

/**
 * Blocks freed by a change (unlink, truncate, punch, collapse) are reusable, and counted
 * free by StatVolume, once their transaction commits; a commit runs at most this long
 * after the first pending free, even if nothing else commits.
 */
export const FREE_COMMIT_DELAY_MS = 1_000;

/** Pins one session may hold at once (S7); more is ELIMIT. */
export const PINS_PER_SESSION_MAX = 64;

/** Pages one pin may cover (4 MiB); more is ELIMIT. */
export const PIN_PAGES_MAX = 1024;

/** Longest pin lease; a pin not renewed (Dma.Renew) within it is revoked (S4: pins are transient). */
export const PIN_LEASE_MS_MAX = 30_000;

/** RECALL: time a pin holder has, after PinRecall, to unpin before the pin is revoked. */
export const PIN_RECALL_GRACE_MS = 1_000;

/** Characters of user input an error message quotes (server/excerpt.ts); the rest becomes "…". */
export const ECHO_CHARS_MAX = 64;
