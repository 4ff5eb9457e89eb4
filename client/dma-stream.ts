/**
 * DmaStream (`client.dma`): pins and DMA pipelined over Dma.Stream (op-pipeline.ts), so
 * many pin / DMA / unpin ops share each gRPC message, and one op may do all three:
 *
 *   const data = await client.dma.readCycle(session, ino, 8, 4, { page: 0, offset: 0, length: 16384 });
 *   await client.dma.writeCycle(session, ino, 8, 1, { page: 0, offset: 0, data });
 *   const r = await client.dma.op(session, { pinId: pin.id, read: { page: 0, offset: 100, length: 9000 } });
 *
 * A DMA may span the pages of its pin, up to DMA_OP_BYTES_MAX (4 MiB) per op. Errors are
 * the unary calls' (DaxClientError and its typed subclasses; PIN_REVOKED is
 * PinRevokedError). A pin an op takes and keeps (no unpin) comes back as a bare id: its
 * lease is not renewed here; take long-lived pins with client.pin() (DmaPin), whose
 * streamRead / streamWrite use this stream.
 *
 * Ops are not retried: a DMA or an unpin whose stream died may have run (the pipeline's
 * rule for writes). A pin an op took and kept whose result arrives after the op's deadline
 * (the caller got DEADLINE_EXCEEDED) is unpinned here, best effort (an unpin op on the
 * same stream; its failure is ignored: the pin's lease ends it anyway).
 */
import { DaxClientError } from './errors';
import { PinRevokedError } from './dma-pin';
import { OpPipeline } from './op-pipeline';
import { DMA_OP_BYTES_MAX } from '../wire/limits';
import type { DaxSession } from './session';
import type { DmaClient } from '../wire/generated/daxd/v1/Dma';
import type { DmaOp } from '../wire/generated/daxd/v1/DmaOp';
import type { DmaResult__Output } from '../wire/generated/daxd/v1/DmaResult';
import type { DmaStreamRequest } from '../wire/generated/daxd/v1/DmaStreamRequest';
import type { DmaStreamResponse__Output } from '../wire/generated/daxd/v1/DmaStreamResponse';

/** Bytes one Dma.Stream op may move (wire/limits.ts). */
export { DMA_OP_BYTES_MAX };

export interface DmaPinSpec {
  ino: number;
  firstPgoff: number;
  npages: number;
  writable?: boolean;
}

export interface DmaRange {
  /** Index into the pin's pages. */
  page: number;
  /** Byte offset inside that page (< 4096); the range may run on into the next pages. */
  offset: number;
}

/** One op: pin (or use pinId), then read or write (or neither), then unpin if asked. */
export interface DmaStreamOp {
  pin?: DmaPinSpec;
  pinId?: string;
  read?: DmaRange & { length: number };
  write?: DmaRange & { data: Uint8Array };
  unpin?: boolean;
}

export interface DmaStreamOutcome {
  /** The pin the op took and kept (null if it took none, or unpinned it). */
  pinId: string | null;
  pfns: number[];
  leaseMs: number;
  /** A read's bytes (empty otherwise). */
  data: Buffer;
}

function assertIndex(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${what} must be a non-negative safe integer, got ${value}`);
}

/** A uint32 field on the wire: a larger value would wrap (2^32 + k arrives as k). */
function assertUint32(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > 0xffff_ffff) throw new RangeError(`${what} must be an integer in [0, 2^32), got ${value}`);
}

export class DmaStream {
  private readonly pipeline: OpPipeline<DmaOp, DmaStreamRequest, DmaStreamResponse__Output, DmaResult__Output>;

  constructor(dma: DmaClient, private readonly deadlineMs: number) {
    this.pipeline = new OpPipeline<DmaOp, DmaStreamRequest, DmaStreamResponse__Output, DmaResult__Output>({
      open: () => dma.Stream(),
      request: (ops) => ({ ops }),
      results: (response) => response.results,
      error: (result) => {
        const err = DaxClientError.fromOpError(result.error as NonNullable<DmaResult__Output['error']>);
        // A PIN_REVOKED answer names the pin when the op took it itself.
        return err.reason === 'PIN_REVOKED' ? new PinRevokedError(result.pin_id, err.details) : err;
      },
      late: (op, result) => {
        if ((result.error !== null && result.error !== undefined) || result.pin_id === '') return;
        // The op took a pin and kept it, but its caller has given up: nobody else knows of it.
        this.pipeline.submit((id) => ({ id, session_id: op.session_id, pin_id: result.pin_id, unpin: true }), 0, this.deadlineMs).catch(() => undefined);
      },
    });
  }

  /** Runs one op in `session`; see DmaStreamOp. */
  async op(session: DaxSession, op: DmaStreamOp): Promise<DmaStreamOutcome> {
    const wire = toWire(session.id, op);
    const bytes = op.read?.length ?? op.write?.data.length ?? 0;
    let result: DmaResult__Output;
    try {
      result = await this.pipeline.submit((id) => ({ ...wire, id }), bytes, this.deadlineMs);
    } catch (err) {
      if (err instanceof PinRevokedError && op.pinId === undefined) throw err; // names the pin the op took
      if (err instanceof DaxClientError && err.reason === 'PIN_REVOKED') throw new PinRevokedError(op.pinId ?? '', err.details);
      throw err;
    }
    return { pinId: result.pin_id === '' ? null : result.pin_id, pfns: result.pfns.map(Number), leaseMs: Number(result.lease_ms), data: result.data };
  }

  /** Pin read-only, read, unpin: one op. */
  async readCycle(session: DaxSession, ino: number, firstPgoff: number, npages: number, read: DmaRange & { length: number }): Promise<Buffer> {
    return (await this.op(session, { pin: { ino, firstPgoff, npages, writable: false }, read, unpin: true })).data;
  }

  /** Pin writable (allocating holes), write, unpin: one op. */
  async writeCycle(session: DaxSession, ino: number, firstPgoff: number, npages: number, write: DmaRange & { data: Uint8Array }): Promise<void> {
    await this.op(session, { pin: { ino, firstPgoff, npages, writable: true }, write, unpin: true });
  }

  /** Fail what is in flight and close the stream. */
  close(): void {
    this.pipeline.close();
  }
}

function toWire(sessionId: string, op: DmaStreamOp): Omit<DmaOp, 'id'> {
  if (op.read !== undefined && op.write !== undefined) throw new RangeError('an op reads or writes, not both');
  if ((op.pin === undefined) === (op.pinId === undefined)) throw new RangeError('an op needs exactly one of pin and pinId');
  const wire: Omit<DmaOp, 'id'> = { session_id: sessionId, unpin: op.unpin ?? false };
  if (op.pin !== undefined) {
    assertIndex(op.pin.ino, 'ino');
    assertIndex(op.pin.firstPgoff, 'firstPgoff');
    assertUint32(op.pin.npages, 'npages');
    wire.pin = { ino: op.pin.ino, first_pgoff: op.pin.firstPgoff, npages: op.pin.npages, writable: op.pin.writable ?? false };
  } else {
    wire.pin_id = op.pinId;
  }
  const range = op.read ?? op.write;
  if (range !== undefined) {
    assertUint32(range.page, 'page');
    assertIndex(range.offset, 'offset');
    wire.page = range.page;
    wire.offset = range.offset;
  }
  if (op.read !== undefined) {
    assertIndex(op.read.length, 'length');
    if (op.read.length > DMA_OP_BYTES_MAX) throw new RangeError(`a DMA op moves at most ${DMA_OP_BYTES_MAX} bytes, asked ${op.read.length}`);
    wire.access = 'READ';
    wire.length = op.read.length;
  } else if (op.write !== undefined) {
    if (op.write.data.length > DMA_OP_BYTES_MAX) throw new RangeError(`a DMA op moves at most ${DMA_OP_BYTES_MAX} bytes, given ${op.write.data.length}`);
    wire.access = 'WRITE';
    wire.data = op.write.data;
  }
  return wire;
}
