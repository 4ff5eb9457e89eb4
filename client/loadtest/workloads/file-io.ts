/**
 * Read(2)/write(2)-like I/O through the SDK's pipelined Files streams: randread,
 * randwrite, randrw (--mix % reads), seqread, seqwrite. Random requests go to --bs aligned
 * slots of a random file; sequential ones walk each worker's own share of one file (as
 * fio's jobs, one stream per worker) and wrap around at its end.
 */
import { PAGE_BYTES } from '../block-header';
import type { LoadOptions } from '../load-options';
import type { LoadFile, Worker, WorkerLoop, Workload } from '../run-context';

function pageAligned(o: LoadOptions): string | null {
  if (o.verify && o.bsBytes % PAGE_BYTES !== 0) return `--verify needs --bs to be a multiple of ${PAGE_BYTES}`;
  if (o.bsBytes > o.sizeBytes) return `--bs (${o.bsBytes}) is larger than --size (${o.sizeBytes})`;
  return null;
}

/** A random --bs aligned slot of a random file. */
export function randomSlot(w: Worker, bs: number): { file: LoadFile; offset: number } {
  const file = w.rng.pick(w.run.files);
  const slots = Math.floor(file.sizeBytes / bs);
  return { file, offset: w.rng.int(slots) * bs };
}

export function readAt(w: Worker, file: LoadFile, offset: number, length: number, kind = 'read'): Promise<Buffer> {
  return w.run.timedRead(kind, 'Files.read', file, offset, length, () => w.client.read(file.ino, offset, length));
}

export function writeAt(w: Worker, file: LoadFile, offset: number, length: number, kind = 'write'): Promise<void> {
  return w.run.timedWrite(kind, file, offset, length, w.id, async (data) => {
    await w.client.write(file.ino, offset, data);
  });
}

function randomWorkload(name: string, summary: string, readPct: (o: LoadOptions) => number): Workload {
  return {
    name, summary, files: 'written', validate: pageAligned,
    async createWorker(w: Worker): Promise<WorkerLoop> {
      const bs = w.run.options.bsBytes;
      const pct = readPct(w.run.options);
      return {
        async step() {
          const { file, offset } = randomSlot(w, bs);
          if (pct >= 100 || (pct > 0 && w.rng.percent(pct))) await readAt(w, file, offset, bs);
          else await writeAt(w, file, offset, bs);
        },
      };
    },
  };
}

function sequentialWorkload(name: string, summary: string, reads: boolean): Workload {
  return {
    name, summary, files: 'written', validate: pageAligned,
    async createWorker(w: Worker): Promise<WorkerLoop> {
      const bs = w.run.options.bsBytes;
      const { file, first, count } = w.region(Math.floor(w.run.files[0].sizeBytes / bs));
      let next = 0;
      return {
        async step() {
          const offset = (first + next) * bs;
          next = (next + 1) % count;
          if (reads) await readAt(w, file, offset, bs);
          else await writeAt(w, file, offset, bs);
        },
      };
    },
  };
}

export const fileIoWorkloads: Workload[] = [
  randomWorkload('randread', 'random --bs reads of laid-out files (Files.ReadStream)', () => 100),
  randomWorkload('randwrite', 'random --bs overwrites (Files.WriteStream)', () => 0),
  randomWorkload('randrw', 'random reads and writes, --mix % reads', (o) => o.mixPct),
  sequentialWorkload('seqread', 'sequential --bs reads, each worker streaming its share of a file', true),
  sequentialWorkload('seqwrite', 'sequential --bs writes, each worker streaming its share of a file', false),
];
