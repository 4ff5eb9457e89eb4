/**
 * daxd-fsx's progress bar (cli-progress, on stderr, as daxd-load's): how far the run is
 * (ops done of --ops, or time of --duration, whichever is further), ops done and the op
 * rate. On a terminal it redraws in place; otherwise (CI logs, pipes) it prints one line
 * per PLAIN_LINE_MS and a last one when the run ends.
 */
import { Presets, SingleBar } from 'cli-progress';

const PLAIN_LINE_MS = 2000;
const STEPS = 1000;

export class FsxProgress {
  private readonly bar: SingleBar;
  private started = false;

  constructor(private readonly opsMax: number, private readonly durationMs: number, stream: NodeJS.WritableStream = process.stderr) {
    this.bar = new SingleBar({
      format: 'daxd-fsx [{bar}] {percentage}% | {done}/{opsMax} ops | {elapsed} s | {rate} ops/s',
      stream: stream as NodeJS.WriteStream, hideCursor: true, barsize: 24, fps: 5, noTTYOutput: true, notTTYSchedule: PLAIN_LINE_MS,
      clearOnComplete: false, stopOnComplete: false,
    }, Presets.shades_classic);
  }

  /** After each op: `done` ops in `elapsedMs`. */
  update(done: number, elapsedMs: number): void {
    const fraction = Math.min(1, Math.max(done / this.opsMax, elapsedMs / this.durationMs));
    const payload = { done, opsMax: this.opsMax, elapsed: (elapsedMs / 1000).toFixed(1), rate: elapsedMs > 0 ? Math.round((done * 1000) / elapsedMs) : 0 };
    if (!this.started) {
      this.started = true;
      this.bar.start(STEPS, 0, payload);
    }
    this.bar.update(Math.round(fraction * STEPS), payload);
  }

  /** The run ended: draws the last state once more and leaves it on screen. */
  stop(): void {
    if (this.started) this.bar.stop();
    this.started = false;
  }
}
