/**
 * Byte ranges of the volume that may cross a storage chunk, split into views that do not.
 */
import type { BlockStorage } from './storage';

export function forEachView(storage: BlockStorage, offsetBytes: number, lengthBytes: number, fn: (view: Uint8Array, doneBytes: number) => void): void {
  let done = 0;
  while (done < lengthBytes) {
    const off = offsetBytes + done;
    const inChunk = storage.chunkBytes - (off % storage.chunkBytes);
    const n = Math.min(inChunk, lengthBytes - done);
    fn(storage.view(off, n), done);
    done += n;
  }
}

export function fillRange(storage: BlockStorage, offsetBytes: number, lengthBytes: number, byte: number): void {
  forEachView(storage, offsetBytes, lengthBytes, (v) => v.fill(byte));
}
