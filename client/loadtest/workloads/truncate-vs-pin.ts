/**
 * truncate-vs-pin: layout changes racing DMA pins (S4), with every outcome checked.
 *
 * Workers are pinners, except every fourth (and the last, if there are fewer than four),
 * which is a breaker.
 * - A pinner pins a random --bs slot writable, DMA-writes every page (stamped in verify
 *   mode), holds the pin 0..HOLD_MS_MAX ms, DMA-reads every page back, unpins, then reads
 *   the slot through Files.
 * - A breaker punches 1..4 slots, or truncates the file down (page-aligned, to between
 *   half and all of --size) and back up, with layout_break WAIT, FAIL or RECALL at random
 *   and a LAYOUT_DEADLINE_MS deadline.
 *
 * What must hold (checked in verify mode):
 * - While a pin stands, its DMA reads return exactly what its DMA wrote: a pinned block is
 *   never freed, zeroed or replaced (S4), whatever the breakers do.
 * - After the unpin, each page holds what the pinner wrote or zeros (a layout change
 *   landed after the pin went), never anything else; if its DMA write failed, an older
 *   generation or zeros.
 * Expected outcomes, counted and not failures: EBUSY (FAIL met a pin), ETIMEDOUT (WAIT ran
 * out of deadline), PIN_REVOKED (RECALL took the pin), SIGBUS (a pin past a truncated EOF).
 */
import { setTimeout as delay } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { DaxClientError } from '../../errors';
import { callUnary } from '../../unary-call';
import type { DmaPin } from '../../dma-pin';
import { PAGE_BYTES } from '../block-header';
import type { LoadOptions } from '../load-options';
import { reasonOf, type LoadFile, type Worker, type WorkerLoop, type Workload } from '../run-context';
import { randomSlot } from './file-io';
import { validatePins } from './pin-churn';

const HOLD_MS_MAX = 20;
const LAYOUT_DEADLINE_MS = 3000;
const BREAKS = ['WAIT', 'FAIL', 'RECALL'] as const;
type Break = (typeof BREAKS)[number];
const EXPECTED_LAYOUT: Record<Break, string> = { WAIT: 'ETIMEDOUT', FAIL: 'EBUSY', RECALL: '' };

function validate(o: LoadOptions): string | null {
  if (o.clients * o.qd < 2) return 'truncate-vs-pin needs at least 2 workers (--clients x --qd): pinners and breakers';
  return validatePins(o);
}

function isBreaker(w: Worker): boolean {
  const n = w.run.workerCount;
  return w.id % 4 === 3 || (n < 4 && w.id === n - 1);
}

/** Expected failures of a pinner: counted, the cycle ends. */
function expectedPinFailure(err: unknown): string | null {
  const reason = reasonOf(err);
  return reason === 'PIN_REVOKED' || reason === 'SIGBUS' ? reason : null;
}

async function pinnerStep(w: Worker, file: LoadFile, offset: number, length: number): Promise<void> {
  const { book, recorder: rec } = w.run;
  const session = await w.session();
  const first = offset / PAGE_BYTES;
  const n = length / PAGE_BYTES;
  const release = book ? await book.locks.lock(file.index, first, n) : null;
  try {
    const gens = book ? book.beginWrite(file.index, first, n) : null;
    const data = book ? Buffer.allocUnsafe(length) : w.run.payload.subarray(0, length);
    if (book && gens) book.stamp(data, file.index, first, gens, w.id);
    const t0 = performance.now();
    let pin: DmaPin;
    try {
      pin = await w.client.pin(file.ino, first, n, { writable: true, session });
    } catch (err) {
      const expected = expectedPinFailure(err);
      if (expected === null) throw err;
      rec.expect(`pin: ${expected}`);
      return;
    }
    rec.record('pin', 1, 0, (performance.now() - t0) * 1e6, false);
    let wrote = false;
    try {
      await Promise.all(Array.from({ length: n }, (_, i) => pin.dmaWrite(i, 0, data.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES))));
      wrote = true;
      await delay(w.rng.int(HOLD_MS_MAX + 1));
      const pages = await Promise.all(Array.from({ length: n }, (_, i) => pin.dmaRead(i, 0, PAGE_BYTES)));
      if (book && gens) {
        // S4: the pinned blocks are the pinner's until unpin: exactly what it wrote.
        pages.forEach((page, i) => book.checkOne(page, { runTag: book.runTag, file: file.index, page: first + i, genMin: gens[i], genMax: gens[i] }, 'DMA read under an active pin'));
      }
    } catch (err) {
      const expected = expectedPinFailure(err);
      if (expected === null) throw err;
      rec.expect(`dma: ${expected}`);
    } finally {
      await pin.unpin().catch((err: unknown) => {
        if (expectedPinFailure(err) === null) throw err;
      });
    }
    rec.record('pin-cycle', 1, length, (performance.now() - t0) * 1e6);
    if (book && gens) await checkAfterUnpin(w, file, offset, length, gens, wrote);
  } finally {
    release?.();
  }
}

/** After the unpin: each page is the pinner's generation or zeros (or older, if its write failed). */
async function checkAfterUnpin(w: Worker, file: LoadFile, offset: number, length: number, gens: Uint32Array, wrote: boolean): Promise<void> {
  const book = w.run.book;
  if (!book) return;
  const read = await w.client.read(file.ino, offset, length);
  // Short at a truncated EOF: what is past it reads as zeros once the size comes back.
  const data = read.length === length ? read : Buffer.concat([read, Buffer.alloc(length - read.length)]);
  const first = offset / PAGE_BYTES;
  for (let i = 0; i < gens.length; i++) {
    book.checkOne(data.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES), {
      runTag: book.runTag, file: file.index, page: first + i, genMin: wrote ? gens[i] : 0, genMax: gens[i], allowZero: true,
    }, 'Files.read after unpin');
  }
}

function layoutCall(w: Worker, method: 'Truncate' | 'Fallocate', request: object): Promise<unknown> {
  const files = w.client.raw.files;
  return callUnary((req: object, md, opts, cb) => (files[method] as (...a: unknown[]) => never)(req, md, opts, cb), request, {
    deadlineMs: LAYOUT_DEADLINE_MS, idempotent: false, retries: 0, backoffMs: 0,
  });
}

/** FAIL meeting a pin is EBUSY; WAIT running out of deadline is ETIMEDOUT (or the client's own DEADLINE_EXCEEDED). */
function expectedLayoutFailure(err: unknown, mode: Break): boolean {
  if (!(err instanceof DaxClientError)) return false;
  if (mode === 'WAIT' && err.code === grpc.status.DEADLINE_EXCEEDED) return true;
  return EXPECTED_LAYOUT[mode] !== '' && err.reason === EXPECTED_LAYOUT[mode];
}

async function breakerStep(w: Worker): Promise<void> {
  const { rng, run } = w;
  const file = rng.pick(run.files);
  const mode = rng.pick(BREAKS);
  const punch = rng.percent(60);
  const bs = run.options.bsBytes;
  const t0 = performance.now();
  try {
    if (punch) {
      const slots = Math.floor(file.sizeBytes / bs);
      const k = 1 + rng.int(Math.min(4, slots));
      const offset = rng.int(slots - k + 1) * bs;
      await layoutCall(w, 'Fallocate', { ino: file.ino, mode: 'PUNCH_HOLE', offset, length: k * bs, layout_break: mode });
      run.recorder.record(`punch-${mode.toLowerCase()}`, 1, 0, (performance.now() - t0) * 1e6);
    } else {
      const pages = file.sizeBytes / PAGE_BYTES;
      const to = (Math.floor(pages / 2) + rng.int(Math.ceil(pages / 2))) * PAGE_BYTES;
      await layoutCall(w, 'Truncate', { ino: file.ino, size: to, layout_break: mode });
      // Growing back never meets a pin.
      await layoutCall(w, 'Truncate', { ino: file.ino, size: file.sizeBytes, layout_break: 'WAIT' });
      run.recorder.record(`truncate-${mode.toLowerCase()}`, 1, 0, (performance.now() - t0) * 1e6);
    }
  } catch (err) {
    if (!expectedLayoutFailure(err, mode)) throw err;
    run.recorder.expect(`${punch ? 'punch' : 'truncate'} ${mode}: ${EXPECTED_LAYOUT[mode]}`);
  }
}

export const truncateVsPinWorkload: Workload = {
  name: 'truncate-vs-pin',
  summary: 'pinners (pin, DMA, hold, check, unpin) racing punch/truncate with WAIT/FAIL/RECALL',
  files: 'written',
  validate,
  async createWorker(w: Worker): Promise<WorkerLoop> {
    const bs = w.run.options.bsBytes;
    if (isBreaker(w)) return { step: () => breakerStep(w) };
    return {
      async step() {
        const { file, offset } = randomSlot(w, bs);
        await pinnerStep(w, file, offset, bs);
      },
    };
  },
};
