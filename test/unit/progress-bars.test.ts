/**
 * The progress bars as a terminal shows them: a fake TTY stream collects what cli-progress
 * draws. The CLI's put/get bar says bytes done and bytes total in the same units.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { byteProgressBar } from '../../cli/byte-progress';
import { FsxProgress } from '../../client/loadtest/fsx/fsx-progress';
import { MiB } from '../support/units';

/** A Writable that says it is a 200-column terminal and keeps what is written. */
export class FakeTty extends Writable {
  readonly isTTY = true;
  readonly columns = 200;
  text = '';

  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString('utf8');
    done();
  }

  /** What was drawn, without the terminal's escape sequences. */
  plain(): string {
    // eslint-disable-next-line no-control-regex
    return this.text.replace(/\x1b(\[[0-9;?]*[A-Za-z]|[78])/g, '');
  }
}

describe('progress bars', function () {
  it('daxd put/get: done and total are both in bytes units ("95 MiB / 95 MiB", not "95 MiB / 100000000")', function () {
    const tty = new FakeTty();
    const bar = byteProgressBar(100_000_000, tty as unknown as NodeJS.WritableStream);
    bar.update(95 * MiB);
    bar.stop();
    const drawn = tty.plain();
    assert.doesNotMatch(drawn, /100000000/, drawn);
    assert.match(drawn, /\| 95 MiB \/ 95 MiB/, drawn);
  });

  it('daxd-fsx on a terminal: ops done of --ops, or the time of --duration when that is further', function () {
    const tty = new FakeTty();
    const bar = new FsxProgress(1000, 10_000, tty as unknown as NodeJS.WritableStream);
    bar.update(100, 5_000); // 10% of the ops, 50% of the time
    bar.stop();
    assert.match(tty.plain(), /daxd-fsx \[[^\]]+\] 50% \| 100\/1000 ops \| 5\.0 s \| 20 ops\/s/, tty.plain());
  });
});
