/**
 * Why a PMD (2 MiB) fault fell back to 4 KiB pages. A leaf module: the counters, the
 * observer and the wire name these reasons; pmd.ts decides them.
 */
export const PMD_FALLBACK_REASONS = [
  /** The 2 MiB range reaches past EOF (the size rounded up to a page). */
  'CROSSES_EOF',
  /** The file's blocks for the range are not one aligned contiguous extent of one kind. */
  'NOT_CONTIGUOUS',
  /** 4 KiB entries exist in the range. */
  'PTE_ENTRIES',
  /** One of them is locked: the fault does not wait on it (the 5.3 missed-wakeup bug). */
  'PTE_LOCKED',
  /** A private (copy-on-write) fault: always 4 KiB, as the kernel's private write faults. */
  'COW',
  /** A write fault over holes found no free aligned 2 MiB run. */
  'NO_ALIGNED_SPACE',
] as const;

export type PmdFallbackReason = (typeof PMD_FALLBACK_REASONS)[number];
