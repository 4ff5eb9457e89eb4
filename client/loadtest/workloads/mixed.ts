/**
 * mixed: every data path at once on the same files, so that verify mode checks them
 * against each other (a write through Files read back through a mapping or DMA, a store
 * read back through Files, ...). Each step picks one of MIX by weight: --bs reads and
 * writes, 1 MiB reads and writes, loads and stores through the client's shared mapping,
 * pin cycles of --bs, and fsync.
 */
import { PAGE_BYTES } from '../block-header';
import type { LoadOptions } from '../load-options';
import type { Worker, WorkerLoop, Workload } from '../run-context';
import { randomSlot, readAt, writeAt } from './file-io';
import { mappedLoad, mappedStore } from './mapped-access';
import { pinCycle, validatePins } from './pin-churn';

const BIG_BYTES = 1024 * 1024;

type Step = (w: Worker) => Promise<void>;

const MIX: Array<{ weight: number; step: Step }> = [
  { weight: 30, step: (w) => { const s = randomSlot(w, w.run.options.bsBytes); return readAt(w, s.file, s.offset, w.run.options.bsBytes).then(() => undefined); } },
  { weight: 20, step: (w) => { const s = randomSlot(w, w.run.options.bsBytes); return writeAt(w, s.file, s.offset, w.run.options.bsBytes); } },
  { weight: 4, step: (w) => { const s = randomSlot(w, BIG_BYTES); return readAt(w, s.file, s.offset, BIG_BYTES, 'read-1m').then(() => undefined); } },
  { weight: 4, step: (w) => { const s = randomSlot(w, BIG_BYTES); return writeAt(w, s.file, s.offset, BIG_BYTES, 'write-1m'); } },
  { weight: 15, step: (w) => { const s = randomSlot(w, w.run.options.bsBytes); return mappedLoad(w, s.file, s.offset, w.run.options.bsBytes); } },
  { weight: 12, step: (w) => { const s = randomSlot(w, w.run.options.bsBytes); return mappedStore(w, s.file, s.offset, w.run.options.bsBytes); } },
  { weight: 10, step: (w) => { const s = randomSlot(w, w.run.options.bsBytes); return pinCycle(w, s.file, s.offset, w.run.options.bsBytes, w.rng.percent(50)); } },
  {
    weight: 5,
    step: async (w) => {
      const file = w.rng.pick(w.run.files);
      const t0 = performance.now();
      await w.client.fsync(file.ino);
      w.run.recorder.record('fsync', 1, 0, (performance.now() - t0) * 1e6);
    },
  },
];
const WEIGHTS = MIX.map((m) => m.weight);

function validate(o: LoadOptions): string | null {
  if (o.sizeBytes < BIG_BYTES) return `mixed needs --size of at least ${BIG_BYTES} (it makes 1 MiB requests)`;
  if (o.bsBytes % PAGE_BYTES !== 0) return `mixed needs --bs to be a multiple of ${PAGE_BYTES}`;
  return validatePins(o);
}

export const mixedWorkload: Workload = {
  name: 'mixed',
  summary: 'reads, writes, 1 MiB I/O, mapped loads/stores, pin cycles and fsync on the same files',
  files: 'written',
  validate,
  async createWorker(w: Worker): Promise<WorkerLoop> {
    return { step: () => MIX[w.rng.weighted(WEIGHTS)].step(w) };
  },
};
