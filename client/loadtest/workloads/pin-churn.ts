/**
 * pin-churn: pin -> DMA -> unpin cycles (DmaPin over Dma.Pin / Read / Write / Unpin) on
 * random --bs slots of laid-out files. A cycle is a read cycle (read-only pin, a DMA read
 * of every page) with probability --mix %, else a write cycle (writable pin, a DMA write
 * of every page). The pages of one pin are DMAed concurrently. Each worker pins in a
 * session of its own (the server allows 64 pins per session).
 *
 * Recorded: 'pin-cycle' (primary: the whole cycle, bytes = pages DMAed), and the calls
 * inside it as 'pin', 'dma-read' / 'dma-write' and 'unpin'.
 *
 * pin-stream: the same cycles, each one Dma.Stream op (client.dma.readCycle / writeCycle:
 * pin, one DMA over all the pages, unpin), pipelined with the worker's other ops.
 * Recorded: 'pin-cycle' only.
 */
import { PAGE_BYTES } from '../block-header';
import { PIN_PAGES_MAX, type LoadOptions } from '../load-options';
import type { LoadFile, Worker, WorkerLoop, Workload } from '../run-context';
import { randomSlot } from './file-io';

export function validatePins(o: LoadOptions): string | null {
  if (o.bsBytes % PAGE_BYTES !== 0) return `pins need --bs to be a multiple of ${PAGE_BYTES}`;
  if (o.bsBytes / PAGE_BYTES > PIN_PAGES_MAX) return `a pin holds at most ${PIN_PAGES_MAX} pages (--bs ${o.bsBytes} is ${o.bsBytes / PAGE_BYTES})`;
  if (o.bsBytes > o.sizeBytes) return `--bs (${o.bsBytes}) is larger than --size (${o.sizeBytes})`;
  return null;
}

/** One pin cycle over [offset, offset + length) of file. */
export async function pinCycle(w: Worker, file: LoadFile, offset: number, length: number, reads: boolean): Promise<void> {
  const run = w.run;
  const rec = run.recorder;
  const session = await w.session();
  const first = offset / PAGE_BYTES;
  const n = length / PAGE_BYTES;
  const release = !reads && run.book ? await run.book.locks.lock(file.index, first, n) : null;
  try {
    const genMins = reads ? run.book?.snapshot(file.index, first, n) : undefined;
    const gens = !reads && run.book ? run.book.beginWrite(file.index, first, n) : null;
    let data: Buffer | null = null;
    if (!reads) {
      data = run.book ? Buffer.allocUnsafe(length) : run.payload.subarray(0, length);
      if (gens && run.book) run.book.stamp(data, file.index, first, gens, w.id);
    }
    const t0 = performance.now();
    const pin = await w.client.pin(file.ino, first, n, { writable: !reads, session });
    const t1 = performance.now();
    rec.record('pin', 1, 0, (t1 - t0) * 1e6, false);
    let pages: Buffer[] = [];
    try {
      pages = await Promise.all(Array.from({ length: n }, async (_, i) => {
        const d0 = performance.now();
        if (reads) {
          const page = await pin.dmaRead(i, 0, PAGE_BYTES);
          rec.record('dma-read', 1, PAGE_BYTES, (performance.now() - d0) * 1e6, false);
          return page;
        }
        await pin.dmaWrite(i, 0, (data as Buffer).subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES));
        rec.record('dma-write', 1, PAGE_BYTES, (performance.now() - d0) * 1e6, false);
        return null as unknown as Buffer;
      }));
    } finally {
      const u0 = performance.now();
      await pin.unpin();
      rec.record('unpin', 1, 0, (performance.now() - u0) * 1e6, false);
    }
    rec.record('pin-cycle', 1, length, (performance.now() - t0) * 1e6);
    if (gens && run.book) run.book.endWrite(file.index, first, gens);
    if (reads && genMins && run.book) run.book.check(Buffer.concat(pages), file.index, first, genMins, 'DmaPin.dmaRead');
  } finally {
    release?.();
  }
}

/** One pin cycle as one Dma.Stream op (pin + DMA of every page + unpin). */
export async function pinStreamCycle(w: Worker, file: LoadFile, offset: number, length: number, reads: boolean): Promise<void> {
  const run = w.run;
  const session = await w.session();
  const first = offset / PAGE_BYTES;
  const n = length / PAGE_BYTES;
  const release = !reads && run.book ? await run.book.locks.lock(file.index, first, n) : null;
  try {
    const genMins = reads ? run.book?.snapshot(file.index, first, n) : undefined;
    const gens = !reads && run.book ? run.book.beginWrite(file.index, first, n) : null;
    const t0 = performance.now();
    if (reads) {
      const data = await w.client.dma.readCycle(session, file.ino, first, n, { page: 0, offset: 0, length });
      run.recorder.record('pin-cycle', 1, length, (performance.now() - t0) * 1e6);
      if (genMins && run.book) run.book.check(data, file.index, first, genMins, 'DmaStream.readCycle');
    } else {
      const data = run.book ? Buffer.allocUnsafe(length) : run.payload.subarray(0, length);
      if (gens && run.book) run.book.stamp(data, file.index, first, gens, w.id);
      await w.client.dma.writeCycle(session, file.ino, first, n, { page: 0, offset: 0, data });
      run.recorder.record('pin-cycle', 1, length, (performance.now() - t0) * 1e6);
      if (gens && run.book) run.book.endWrite(file.index, first, gens);
    }
  } finally {
    release?.();
  }
}

/** A pin workload: `cycle` runs over random --bs slots, --mix % of them read cycles. */
function pinWorkload(name: string, summary: string, cycle: typeof pinCycle): Workload {
  return {
    name,
    summary,
    files: 'written',
    validate: validatePins,
    async createWorker(w: Worker): Promise<WorkerLoop> {
      const bs = w.run.options.bsBytes;
      return {
        async step() {
          const { file, offset } = randomSlot(w, bs);
          await cycle(w, file, offset, bs, w.rng.percent(w.run.options.mixPct));
        },
      };
    },
  };
}

export const pinStreamWorkload = pinWorkload('pin-stream', 'as pin-churn, each cycle one Dma.Stream op (pin + DMA of --bs + unpin)', pinStreamCycle);

export const pinChurnWorkload = pinWorkload('pin-churn', 'pin -> DMA every page -> unpin cycles of --bs; --mix % read cycles', pinCycle);
