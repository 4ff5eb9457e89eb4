/**
 * The reasons daxd reports (the `daxd-reason` trailer, OpError.reason): the one TypeScript
 * list of their names. It is read off the proto's `enum Reason` (through the generated
 * types), so the proto is where a reason is added; server/errors.ts maps each to its
 * status and doc and fails to compile if a name is missing or extra there.
 */
import { Reason as ProtoReason } from './generated/daxd/v1/Reason';

/** A reason name, e.g. 'ENOENT' (REASON_UNSPECIFIED, the proto's zero value, is never sent). */
export type Reason = Exclude<keyof typeof ProtoReason, 'REASON_UNSPECIFIED'>;

/** Every reason, in the proto's order. */
export const REASON_NAMES: readonly Reason[] = Object.freeze(
  Object.keys(ProtoReason).filter((name): name is Reason => name !== 'REASON_UNSPECIFIED'),
);

const KNOWN: ReadonlySet<string> = new Set(REASON_NAMES);

/** Is `name` a reason this side knows? (A newer peer may send one it does not.) */
export function isReason(name: string): name is Reason {
  return KNOWN.has(name);
}
