/**
 * Dma.Stream: pins and DMA over the pipelined op stream (op-stream.ts), so a pin + DMA +
 * unpin cycle is one op in one message instead of three unary calls, and a DMA may span
 * the pages of its pin (up to DMA_OP_BYTES_MAX) instead of one page per call.
 *
 * One op = up to three steps, each with its unary twin's rules (dma-service.ts):
 *   1. pin (op.pin set): session ownership, prefix, pins / pinned-blocks quotas and, for a
 *      writable pin, the allocated-bytes quota (pinFor); or op.pin_id, a pin the op's
 *      session holds (another session's pin is ENOENT, as an unknown one: S7);
 *   2. DMA (access READ / WRITE) through the engine's dmaRead / dmaWrite: a revoked pin is
 *      PIN_REVOKED, and a pin's references are dropped only once no DMA on it is in flight,
 *      so no block under DMA is freed by a truncate meanwhile (S4);
 *   3. unpin (op.unpin), whether or not the DMA succeeded.
 * A pin taken in step 1 whose DMA fails is dropped before the op answers: a failed op
 * never leaves a pin its client was not told about (a PIN_REVOKED answer names it in
 * pin_id, so the client can tell which pin was revoked). Likewise a pin an op took and
 * kept whose result is never sent (the stream was cancelled or failed while the op ran)
 * is dropped then (discarded): nobody else could ever release it before its lease ends.
 *
 * Reply size: a result counts its data, its pin id and its pfns (up to PIN_PAGES_MAX of
 * 10 bytes each), so a message of many large pins stays within MESSAGE_BYTES_MAX; an op
 * charges the stream's memory account for its pfns as for its data.
 *
 * Role: the stream is admitted with the read rule (method-actions.ts); each op that
 * writes (a writable pin, a WRITE) is checked here against the principal's role, before
 * anything else of the op, so an `ro` principal's malformed write op is EACCES, as for the
 * unary calls. Every field is checked before the op pins anything.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { InvalidArgumentError, PermissionDeniedError, PinRevokedError } from '../errors';
import type { Dax } from '../dax/dax';
import type { Pin } from '../dax/pin-table';
import type { Principal } from '../auth/principal';
import { principalOf } from '../auth/call-principal';
import type { QuotaLedger } from '../auth/quota';
import type { Session } from '../session/session';
import type { SessionTable } from '../session/session-table';
import { statusName, type Metrics } from '../metrics';
import type { DmaOp__Output } from '../../wire/generated/daxd/v1/DmaOp';
import type { DmaResult } from '../../wire/generated/daxd/v1/DmaResult';
import type { DmaStreamRequest__Output } from '../../wire/generated/daxd/v1/DmaStreamRequest';
import type { DmaStreamResponse } from '../../wire/generated/daxd/v1/DmaStreamResponse';
import type { PrincipalFs } from '../auth/principal-fs';
import { OpStream, type OpKind } from './op-stream';
import type { OpStreamRegistry } from './files-streams';
import { DMA_OP_BYTES_MAX } from './limits';
import { PIN_PAGES_MAX } from '../limits';
import * as v from './validate';

const EMPTY: Buffer = Buffer.alloc(0);
/** Most bytes one pfn takes in a reply (a uint64 varint). */
const PFN_WIRE_BYTES_MAX = 10;
/** A result's framing in a reply (tag, length, id, lease, error's fields but its message). */
const RESULT_WIRE_BYTES = 16;
const ACCESSES = ['NONE', 'READ', 'WRITE'] as const;
type Access = (typeof ACCESSES)[number];

/** Pin for `owner` as its principal (prefix, quotas): shared by Dma.Pin and Dma.Stream. */
export async function pinFor(dax: Dax, quota: QuotaLedger, access: PrincipalFs, owner: Session, args: v.CheckedPin): Promise<Pin> {
  access.ino(args.ino);
  const pin = () => dax.pin(owner, { ...args, leaseMs: owner.leaseMs });
  return quota.withPin(access.principal, args.npages, () => (args.writable ? access.allocating(args.ino, args.firstPgoff, args.firstPgoff + args.npages - 1, pin) : pin()));
}

/** A pin id as the server issues it (32 hex digits), else EINVAL. */
export function pinId(value: string): string {
  v.idLength(value, 'pin_id');
  if (!/^[0-9a-f]{32}$/.test(value)) throw new InvalidArgumentError('pin_id is not a pin id (32 hex digits)');
  return value;
}

/** The access field; anything else (an unknown enum number) is EINVAL. */
function accessOf(value: string | number): Access {
  return v.enumValue(value, ACCESSES, 'access');
}

/** Does the op (writable pin or WRITE) change data? An invalid access counts as a write. */
function writesData(op: DmaOp__Output): boolean {
  const access = op.access as string;
  return (op.pin !== null && op.pin.writable) || (access !== 'NONE' && access !== 'READ');
}

/** An op that may change data needs a role that may write. */
function checkRole(principal: Principal, op: DmaOp__Output): void {
  const writes = writesData(op);
  if (writes && !principal.can('write')) {
    throw new PermissionDeniedError(`${principal.name} (role ${principal.role}) may not write through Dma.Stream (writable pin or WRITE op)`);
  }
}

/** The op's shape, checked before it pins anything: what to pin or use, what to move. */
interface CheckedDmaOp {
  pin: v.CheckedPin | null;
  pinId: string;
  access: Access;
  range: v.CheckedAccess | null;
}

function checkOp(op: DmaOp__Output): CheckedDmaOp {
  const access = accessOf(op.access);
  if (op.pin !== null && op.pin_id !== '') throw new InvalidArgumentError('pin and pin_id are exclusive: an op pins, or uses an existing pin');
  if (op.pin === null && op.pin_id === '') throw new InvalidArgumentError('an op needs pin (pin first) or pin_id (an existing pin)');
  const pin = op.pin === null ? null : v.pinRequest(op.pin.ino, op.pin.first_pgoff, op.pin.npages, op.pin.writable);
  const id = op.pin === null ? pinId(op.pin_id) : '';
  let range: v.CheckedAccess | null = null;
  if (access === 'READ') {
    if (op.data.length !== 0) throw new InvalidArgumentError('a READ op carries no data');
    range = v.dmaRange(op.page, op.offset, op.length);
  } else if (access === 'WRITE') {
    if (op.length !== '0') throw new InvalidArgumentError('a WRITE op has no length field: its length is its data\'s');
    range = v.dmaRange(op.page, op.offset, op.data.length);
  } else {
    if (op.data.length !== 0 || op.length !== '0' || op.offset !== '0' || op.page !== 0) {
      throw new InvalidArgumentError('an op without access (NONE) has no page, offset, length or data');
    }
    if (pin === null && !op.unpin) throw new InvalidArgumentError('an op on pin_id with no access and no unpin does nothing');
  }
  return { pin, pinId: id, access, range };
}

interface DmaStreamDeps {
  dax: Dax;
  sessions: SessionTable;
  fsOf: (call: object) => PrincipalFs;
  quota: QuotaLedger;
  metrics?: Metrics;
  /** A cluster node: throws FencedError while fenced (server/cluster); each op that writes asks. */
  fence?: () => void;
}

function dmaKind(deps: DmaStreamDeps, call: object): OpKind<DmaOp__Output, DmaResult> {
  const { dax, sessions, quota, metrics } = deps;
  const principal = principalOf(call);
  const fs = deps.fsOf(call);
  /** Who holds the pin a result carries, for discarded(); gone with the result. */
  const ownerOf = new WeakMap<DmaResult, Session>();
  /** The pin an op took that was revoked under its DMA, for failed() to name. */
  const revokedPinOf = new WeakMap<DmaOp__Output, string>();
  return {
    name: 'Dma.Stream',
    // What the op holds in flight: a read's reply (run() refuses more than DMA_OP_BYTES_MAX),
    // a write's data, and the pfns of a pin it takes (run() refuses more than PIN_PAGES_MAX).
    costBytes: (op) => (op.access === 'READ' ? Math.max(0, Math.min(Number(op.length) || 0, DMA_OP_BYTES_MAX)) : op.data.length)
      + (op.pin === null ? 0 : PFN_WIRE_BYTES_MAX * Math.max(0, Math.min(op.pin.npages, PIN_PAGES_MAX))),
    run: async (op) => {
      checkRole(principal, op);
      if (deps.fence !== undefined && writesData(op)) deps.fence();
      const checked = checkOp(op);
      const owner = sessions.get(v.sessionId(op.session_id), principal);
      const taken = checked.pin === null ? null : await pinFor(dax, quota, fs, owner, checked.pin);
      const id = taken === null ? checked.pinId : taken.id;
      let data: Buffer = EMPTY;
      try {
        if (checked.range !== null) {
          const { page, offset, length } = checked.range;
          if (checked.access === 'READ') {
            data = await dax.dmaRead(owner, id, page, offset, length);
            metrics?.io('dma', 'read', data.length);
          } else {
            await dax.dmaWrite(owner, id, page, offset, op.data);
            metrics?.io('dma', 'write', op.data.length);
          }
        }
      } catch (err) {
        // The DMA failed: a pin this op took is dropped (nobody knows its id); an existing
        // pin is unpinned if asked. The op answers with the DMA's error either way.
        if (taken !== null || op.unpin) unpinQuietly(dax, owner, id);
        if (taken !== null && err instanceof PinRevokedError) revokedPinOf.set(op, id);
        throw err;
      }
      if (op.unpin) {
        dax.unpin(owner, id);
        return { id: op.id, pin_id: '', pfns: [], lease_ms: 0, data };
      }
      if (taken === null) return { id: op.id, pin_id: '', pfns: [], lease_ms: 0, data };
      const kept: DmaResult = { id: op.id, pin_id: taken.id, pfns: taken.pfns, lease_ms: taken.leaseMs, data };
      ownerOf.set(kept, owner);
      return kept;
    },
    failed: (op, error) => {
      metrics?.streamOpFailed('Dma.Stream', statusName(error.code));
      return { id: op.id, pin_id: revokedPinOf.get(op) ?? '', pfns: [], lease_ms: 0, data: EMPTY, error };
    },
    replyBytes: (result) => (result.data as Buffer).length + PFN_WIRE_BYTES_MAX * (result.pfns?.length ?? 0)
      + (result.pin_id?.length ?? 0) + RESULT_WIRE_BYTES,
    // The client never learns of this pin: drop it now rather than at its lease's end.
    discarded: (result) => {
      const owner = ownerOf.get(result);
      if (owner !== undefined && result.pin_id !== undefined && result.pin_id !== '') unpinQuietly(dax, owner, result.pin_id);
    },
  };
}

/** Unpin after a failed DMA or for a discarded result; a pin already gone (unpinned meanwhile, revoked, session ended) is fine. */
function unpinQuietly(dax: Dax, owner: Session, id: string): void {
  try {
    dax.unpin(owner, id);
  } catch {
    // ENOENT: nothing left to give back.
  }
}

export function dmaStreamHandler(deps: DmaStreamDeps, log: Logger, streams: OpStreamRegistry): grpc.handleBidiStreamingCall<DmaStreamRequest__Output, DmaStreamResponse> {
  const batch = { opsOf: (req: DmaStreamRequest__Output) => req.ops, reply: (results: DmaResult[]) => ({ results }) };
  return (call) => {
    // One connection = one peer address (as Files streams: stream-memory.ts).
    const stream = new OpStream(call, dmaKind(deps, call), batch, log, (s) => streams.delete(s), streams.memory.open(call.getPeer()));
    streams.add(stream);
  };
}
