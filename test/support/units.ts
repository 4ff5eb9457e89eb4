/**
 * Size units of the tests, spelled once. PAGE is the volume's block size, which is also
 * the wire's page (a fault, a pin, a PTE cover one PAGE).
 */
import { BLOCK_SIZE } from '../../server/limits';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const PAGE = BLOCK_SIZE;
