/**
 * The CLI's progress bar for put/get (cli-progress, on a terminal): the bar, the
 * percentage, and bytes done of bytes total, both in bytes units (formatBytes).
 */
import { Presets, SingleBar } from 'cli-progress';
import { formatBytes } from './args';

export interface ByteProgress {
  update(doneBytes: number): void;
  stop(): void;
}

/** A bar over `totalBytes` drawn on `stream`. */
export function byteProgressBar(totalBytes: number, stream: NodeJS.WritableStream = process.stderr): ByteProgress {
  // {total} and {value} are cli-progress's own tokens (the raw numbers): a payload named
  // `total` never shows, so the formatted sizes go by names of their own.
  const bar = new SingleBar({ stream, format: ' {bar} {percentage}% | {doneBytes} / {totalBytes}' }, Presets.shades_classic);
  bar.start(totalBytes, 0, { doneBytes: formatBytes(0), totalBytes: formatBytes(totalBytes) });
  return {
    update: (doneBytes) => bar.update(doneBytes, { doneBytes: formatBytes(doneBytes) }),
    stop: () => bar.stop(),
  };
}
