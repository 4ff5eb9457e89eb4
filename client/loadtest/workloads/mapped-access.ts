/**
 * Loads and stores through mappings (MappedFile over Mapping.FaultBatch / AccessBatch):
 * random --bs slots of laid-out files, through one shared writable mapping per (client,
 * file), so that the accesses of a client's workers join the same rounds. After the
 * first touch of a page its PTE is cached: the steady state is AccessBatch only, except
 * for stores after writeback (none here) or invalidation.
 */
import { PAGE_BYTES } from '../block-header';
import type { LoadOptions } from '../load-options';
import type { LoadFile, Worker, WorkerLoop, Workload } from '../run-context';
import { randomSlot } from './file-io';

function validate(o: LoadOptions): string | null {
  if (o.verify && o.bsBytes % PAGE_BYTES !== 0) return `--verify needs --bs to be a multiple of ${PAGE_BYTES}`;
  if (o.bsBytes > o.sizeBytes) return `--bs (${o.bsBytes}) is larger than --size (${o.sizeBytes})`;
  return null;
}

export async function mappedLoad(w: Worker, file: LoadFile, offset: number, length: number): Promise<void> {
  const map = await w.run.sharedMap(w.clientIndex, file);
  await w.run.timedRead('load', 'MappedFile.read', file, offset, length, () => map.read(offset, length));
}

export async function mappedStore(w: Worker, file: LoadFile, offset: number, length: number): Promise<void> {
  const map = await w.run.sharedMap(w.clientIndex, file);
  await w.run.timedWrite('store', file, offset, length, w.id, (data) => map.write(offset, data));
}

function mappedWorkload(name: string, summary: string, loadPct: (o: LoadOptions) => number): Workload {
  return {
    name, summary, files: 'written', validate,
    async createWorker(w: Worker): Promise<WorkerLoop> {
      const bs = w.run.options.bsBytes;
      const pct = loadPct(w.run.options);
      return {
        async step() {
          const { file, offset } = randomSlot(w, bs);
          if (pct >= 100 || (pct > 0 && w.rng.percent(pct))) await mappedLoad(w, file, offset, bs);
          else await mappedStore(w, file, offset, bs);
        },
      };
    },
  };
}

export const mappedWorkloads: Workload[] = [
  mappedWorkload('mapped-load', 'random --bs loads through a shared mapping (PTEs cached after first touch)', () => 100),
  mappedWorkload('mapped-store', 'random --bs stores through a shared writable mapping', () => 0),
  mappedWorkload('mapped-rw', 'random loads and stores through a mapping, --mix % loads', (o) => o.mixPct),
];
