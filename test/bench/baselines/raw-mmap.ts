/**
 * Baseline: the memory limit. Copies into (and out of) a MAP_SHARED mapping of a file of
 * the same size as daxd's bench file, through the native addon daxd itself maps its
 * volume with: 4 KiB at random aligned offsets and 1 MiB sequentially, after every page
 * was touched once. And first-touch page faults of a fresh sparse file's mapping, read
 * (the kernel maps holes to the zero page) and write (the filesystem allocates): what the
 * fault storms compare with. Each measurement runs for `seconds` (checked every 64 copies).
 */
import fs from 'node:fs';
import { native } from '../../../server/native';
import { PAGE } from '../../support/units';

export interface RawMmapFigures {
  copyIn4kOpsPerSec: number;
  copyOut4kOpsPerSec: number;
  copyIn1mBytesPerSec: number;
  copyOut1mBytesPerSec: number;
  readFaultsPerSec: number;
  writeFaultsPerSec: number;
}

function timed(seconds: number, body: (i: number) => void): number {
  const endAt = performance.now() + seconds * 1000;
  const t0 = performance.now();
  let n = 0;
  while (performance.now() < endAt) for (let k = 0; k < 64; k++) body(n++);
  return n / ((performance.now() - t0) / 1000);
}

/** First touch of every page of a fresh sparse mapping; pages/s (at most `pages`, at most `seconds`). */
function faults(dir: string, name: string, pages: number, seconds: number, write: boolean): number {
  const file = `${dir}/${name}`;
  const fd = native.open(file, 'create', pages * PAGE);
  const map = native.mmap(fd, 0, pages * PAGE);
  try {
    const view = new Uint8Array(map);
    const endAt = performance.now() + seconds * 1000;
    const t0 = performance.now();
    let sink = 0;
    let n = 0;
    for (; n < pages && (n % 256 !== 0 || performance.now() < endAt); n++) {
      if (write) view[n * PAGE] = 1;
      else sink += view[n * PAGE];
    }
    if (sink !== 0) throw new Error('a hole read non-zero');
    return n / ((performance.now() - t0) / 1000);
  } finally {
    native.munmap(map);
    native.close(fd);
    fs.rmSync(file, { force: true });
  }
}

export function measureRawMmap(dir: string, fileBytes: number, seconds: number): RawMmapFigures {
  const file = `${dir}/raw-mmap.img`;
  const fd = native.open(file, 'create', fileBytes);
  const map = native.mmap(fd, 0, fileBytes);
  try {
    const view = Buffer.from(map);
    view.fill(0xa5); // every page touched (allocated and resident) before timing
    const src4k = Buffer.alloc(PAGE, 0x3c);
    const dst4k = Buffer.alloc(PAGE);
    const src1m = Buffer.alloc(1024 * 1024, 0x3c);
    const dst1m = Buffer.alloc(1024 * 1024);
    const slots = fileBytes / PAGE;
    const big = fileBytes / src1m.length;
    let x = 12345;
    const rand = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) % slots) * PAGE;
    const figures: RawMmapFigures = {
      copyIn4kOpsPerSec: timed(seconds, () => { src4k.copy(view, rand()); }),
      copyOut4kOpsPerSec: timed(seconds, () => { const at = rand(); view.copy(dst4k, 0, at, at + PAGE); }),
      copyIn1mBytesPerSec: timed(seconds, (i) => { src1m.copy(view, (i % big) * src1m.length); }) * src1m.length,
      copyOut1mBytesPerSec: timed(seconds, (i) => { const at = (i % big) * src1m.length; view.copy(dst1m, 0, at, at + src1m.length); }) * src1m.length,
      readFaultsPerSec: faults(dir, 'raw-faults-read.img', 65536, seconds, false),
      writeFaultsPerSec: faults(dir, 'raw-faults-write.img', 65536, seconds, true),
    };
    return figures;
  } finally {
    native.munmap(map);
    native.close(fd);
    fs.rmSync(file, { force: true });
  }
}
