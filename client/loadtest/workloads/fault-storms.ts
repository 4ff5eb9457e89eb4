/**
 * Fault storms: page faults as fast as the server takes them.
 *
 * - fault-read-hole: READ faults (Mapping.FaultBatch, --batch pages per call) on sparse
 *   files: every fault maps the shared zero page. Verify: every PTE has pfn 0.
 * - fault-write-allocate: WRITE faults on holes: every fault allocates a zeroed block
 *   (S2). Verify: distinct non-zero pfns, and every page loads as zeros.
 * - fault-mapped: first touches through the SDK's MappedFile (fault + load per page,
 *   batched into rounds by the SDK) on laid-out files. Verify: each page's header.
 *
 * Each worker walks its own share of a file in batches. At the end of its share it
 * unmaps it (and fault-write-allocate punches it back into holes), untimed except as the
 * secondary kinds 'unmap' and 'punch', and starts over: PTEs never pile up.
 */
import assert from 'node:assert';
import { DEADLINE_MS_DEFAULT, RETRIES_MAX } from '../../limits';
import { MappingRpc, type FaultKind } from '../../mapping-rpc';
import { PAGE_BYTES } from '../block-header';
import type { Worker, WorkerLoop, Workload } from '../run-context';

async function stormWorker(w: Worker, kind: Extract<FaultKind, 'READ' | 'WRITE'>): Promise<WorkerLoop> {
  const run = w.run;
  const session = await run.clientSession(w.clientIndex);
  const rpc = new MappingRpc(w.client.raw.mapping, session.id, { deadlineMs: DEADLINE_MS_DEFAULT, retries: RETRIES_MAX });
  const { file, first, count } = w.region(Math.floor(run.files[0].sizeBytes / PAGE_BYTES));
  const batch = Math.min(run.options.batch, count);
  let next = 0;
  const wrap = async () => {
    let t0 = performance.now();
    await rpc.unmap(file.ino, first, first + count - 1);
    run.recorder.record('unmap', 1, 0, (performance.now() - t0) * 1e6, false);
    if (kind === 'WRITE') {
      t0 = performance.now();
      await w.client.fallocate(file.ino, 'PUNCH_HOLE', first * PAGE_BYTES, count * PAGE_BYTES);
      run.recorder.record('punch', 1, 0, (performance.now() - t0) * 1e6, false);
    }
    next = 0;
  };
  return {
    async step() {
      if (next >= count) await wrap();
      const n = Math.min(batch, count - next);
      const ops = Array.from({ length: n }, (_, i) => ({ pgoff: first + next + i, kind }));
      next += n;
      const t0 = performance.now();
      const outcomes = await rpc.faultBatch(file.ino, ops);
      run.recorder.record(kind === 'READ' ? 'fault-read' : 'fault-write', n, 0, (performance.now() - t0) * 1e6);
      const failed = outcomes.find((o) => !o.ok);
      if (failed && !failed.ok) throw failed.error;
      if (run.book) await checkStorm(w, rpc, kind, ops.map((o) => o.pgoff), outcomes.map((o) => (o.ok ? o.pte : null)), file.index);
    },
    async close() {
      await rpc.unmap(file.ino, first, first + count - 1);
    },
  };
}

/** Verify mode: what the PTEs of a storm must be, and (S2) that allocated pages read as zeros. */
async function checkStorm(
  w: Worker, rpc: MappingRpc, kind: 'READ' | 'WRITE', pages: number[],
  ptes: Array<{ pfn: number; token: string } | null>, fileIndex: number,
): Promise<void> {
  const book = w.run.book;
  assert(book);
  const seen = new Set<number>();
  const zeros = { runTag: book.runTag, file: fileIndex, genMin: 0, genMax: 0 };
  for (let i = 0; i < pages.length; i++) {
    const pte = ptes[i];
    const bad = pte === null || (kind === 'READ' ? pte.pfn !== 0 : pte.pfn === 0 || seen.has(pte.pfn));
    if (bad) {
      book.checkOne(Buffer.alloc(PAGE_BYTES, 0xee), { ...zeros, page: pages[i] }, `${kind} fault: pfn ${pte?.pfn} (${kind === 'READ' ? 'zero page expected' : 'a fresh block expected'})`);
    }
    if (pte) seen.add(pte.pfn);
  }
  if (kind !== 'WRITE') return;
  const loads = await rpc.accessBatch(ptes.map((pte) => ({ store: false as const, token: pte?.token ?? '', offset: 0, length: PAGE_BYTES })));
  loads.forEach((o, i) => {
    if (!o.ok) throw o.error;
    book.checkOne(o.data, { ...zeros, page: pages[i] }, 'load after WRITE fault (S2: blocks reach a mapping zeroed)');
  });
}

async function mappedWorker(w: Worker): Promise<WorkerLoop> {
  const run = w.run;
  const session = await run.clientSession(w.clientIndex);
  const { file, first, count } = w.region(Math.floor(run.files[0].sizeBytes / PAGE_BYTES));
  const batch = Math.min(run.options.batch, count);
  const length = run.book ? PAGE_BYTES : 64;
  let map = session.mmap(file.ino, { shared: true });
  let next = 0;
  return {
    async step() {
      if (next >= count) {
        const t0 = performance.now();
        await map.unmap();
        run.recorder.record('unmap', 1, 0, (performance.now() - t0) * 1e6, false);
        map = session.mmap(file.ino, { shared: true });
        next = 0;
      }
      const n = Math.min(batch, count - next);
      const start = first + next;
      next += n;
      const genMins = run.book?.snapshot(file.index, start, n);
      const t0 = performance.now();
      const pages = await Promise.all(Array.from({ length: n }, (_, i) => map.read((start + i) * PAGE_BYTES, length)));
      run.recorder.record('fault-mapped', n, n * length, (performance.now() - t0) * 1e6);
      if (run.book && genMins) run.book.check(Buffer.concat(pages), file.index, start, genMins, 'MappedFile.read (first touch)');
    },
    async close() {
      await map.unmap();
    },
  };
}

export const faultStormWorkloads: Workload[] = [
  { name: 'fault-read-hole', summary: 'READ fault storm on holes (zero page), --batch pages per FaultBatch', files: 'sparse', createWorker: (w) => stormWorker(w, 'READ') },
  { name: 'fault-write-allocate', summary: 'WRITE fault storm on holes: each fault allocates a zeroed block', files: 'sparse', createWorker: (w) => stormWorker(w, 'WRITE') },
  { name: 'fault-mapped', summary: 'first touches through MappedFile (fault + load, batched by the SDK)', files: 'written', createWorker: mappedWorker },
];
