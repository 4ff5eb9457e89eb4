/**
 * The live progress bar of daxd-load (cli-progress, on stderr): how far the run is, and
 * the last sample's IOPS, bandwidth and p99. On a terminal it redraws in place; otherwise
 * (CI logs, tests) it prints one line per PLAIN_LINE_MS.
 */
import { Presets, SingleBar } from 'cli-progress';
import type { SeriesPoint } from './recorder';
import { formatCount, formatRate, formatUs } from './summary';

const PLAIN_LINE_MS = 2000;
const STEPS = 1000;

export class ProgressBar {
  private readonly bar: SingleBar;
  private started = false;

  constructor(label: string, stream: NodeJS.WriteStream = process.stderr) {
    this.bar = new SingleBar({
      format: `${label} [{bar}] {percentage}% | {elapsed}s | {iops} ops/s | {bw} | p99 {p99} | errors {errors}`,
      stream, hideCursor: true, barsize: 24, fps: 5, noTTYOutput: true, notTTYSchedule: PLAIN_LINE_MS,
      clearOnComplete: false, stopOnComplete: false,
    }, Presets.shades_classic);
  }

  start(): void {
    this.started = true;
    this.bar.start(STEPS, 0, { elapsed: '0.0', iops: '-', bw: '-', p99: '-', errors: 0 });
  }

  update(point: SeriesPoint, fraction: number, errors: number): void {
    if (!this.started) this.start();
    this.bar.update(Math.round(fraction * STEPS), {
      elapsed: point.t.toFixed(1), iops: formatCount(point.opsPerSec), bw: formatRate(point.bytesPerSec),
      p99: point.p99Us > 0 ? formatUs(point.p99Us) : '-', errors,
    });
  }

  stop(): void {
    if (this.started) this.bar.stop();
    this.started = false;
  }
}
