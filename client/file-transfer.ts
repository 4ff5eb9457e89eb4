/**
 * Whole-file transfers with bounded memory: a file read as an ordered sequence of chunks
 * (read-ahead window), a sequence of chunks written at consecutive offsets (write-behind
 * window). Both keep STREAM_WINDOW_CHUNKS chunks in flight, which the op pipeline sends
 * together.
 */
import type { DaxClient, WriteOutcome } from './dax-client';
import { CHUNK_BYTES, STREAM_WINDOW_CHUNKS } from './limits';

export interface ReadChunksOptions {
  offset?: number;
  /** Bytes to read; stops early at end of file. */
  length: number;
  chunkBytes?: number;
}

/** The bytes of [offset, offset + length), in order, CHUNK_BYTES at a time. */
export async function* readChunks(client: DaxClient, ino: number, options: ReadChunksOptions): AsyncGenerator<Buffer> {
  const chunkBytes = options.chunkBytes ?? CHUNK_BYTES;
  const start = options.offset ?? 0;
  const end = start + options.length;
  const ahead: Promise<Buffer>[] = [];
  let next = start;
  const fill = () => {
    while (ahead.length < STREAM_WINDOW_CHUNKS && next < end) {
      const length = Math.min(chunkBytes, end - next);
      ahead.push(client.read(ino, next, length));
      next += length;
    }
  };
  try {
    for (fill(); ahead.length > 0; fill()) {
      const chunk = await (ahead.shift() as Promise<Buffer>);
      if (chunk.length > 0) yield chunk;
      if (chunk.length < chunkBytes) return; // end of file
    }
  } finally {
    // Abandoned (consumer stopped or a read failed): let the read-ahead settle quietly.
    for (const p of ahead) p.catch(() => undefined);
  }
}

/**
 * Write chunks of `source` at consecutive offsets from `offset`. Resolves once all are
 * written; on the first failure, waits for the writes in flight and rethrows it.
 */
export async function writeChunks(
  client: DaxClient, ino: number, source: AsyncIterable<Uint8Array>,
  options: { offset?: number; sync?: boolean; onProgress?: (writtenBytes: number) => void } = {},
): Promise<WriteOutcome> {
  let offset = options.offset ?? 0;
  let written = 0;
  let size = 0;
  const inFlight = new Set<Promise<void>>();
  let failure: unknown = null;
  const track = (chunk: Uint8Array, at: number) => {
    const p: Promise<void> = client.write(ino, at, chunk, { sync: options.sync }).then(
      (outcome) => {
        written += outcome.written;
        size = Math.max(size, outcome.size);
        options.onProgress?.(written);
      },
      (err: unknown) => {
        failure ??= err;
      },
    ).finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  for await (const chunk of source) {
    if (failure !== null) break;
    track(chunk, offset);
    offset += chunk.length;
    while (inFlight.size >= STREAM_WINDOW_CHUNKS) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failure !== null) throw failure;
  return { written, size };
}
