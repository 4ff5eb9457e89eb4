/**
 * A layout-break wait is recorded (counter, metric and the "met pinned pages" warn line,
 * all through the observer) only when a layout change met a pinned page (issue 10,
 * defect 7). A change whose deadline had passed before it ran (it queued behind another
 * change) gives up with ETIMEDOUT, and a cancelled one with ECANCELED, without any wait:
 * nothing is recorded then. One that did wait is still recorded.
 */
import assert from 'node:assert/strict';
import { CancelledError, TimedOutError, type DaxError } from '../../server/errors';
import { Dax } from '../../server/dax/dax';
import type { DaxObserver, LayoutBreakOutcome } from '../../server/dax/observer';
import { FileSystem } from '../../server/fs/filesystem';
import { mkfs } from '../../server/fs/mkfs';
import { MemoryStorage } from '../../server/media/memory-storage';
import { MiB, PAGE } from '../support/units';
import { TestOwner } from '../support/test-owner';
import { until } from '../support/until';
import { writtenFile, type DaxVolume } from '../support/dax-volume';

function recorder(): { observer: DaxObserver; waits: Array<{ outcome: LayoutBreakOutcome; waitedMs: number }> } {
  const waits: Array<{ outcome: LayoutBreakOutcome; waitedMs: number }> = [];
  return {
    waits,
    observer: {
      entryLockWaitStarted: () => undefined,
      entryLockWaited: () => undefined,
      layoutBreakWaited: (_ino, _change, _opts, outcome, waitedMs) => waits.push({ outcome, waitedMs }),
      pmdFallback: () => undefined,
    },
  };
}

function aborted(code: 'ETIMEDOUT' | 'ECANCELED'): AbortSignal {
  const c = new AbortController();
  c.abort(code === 'ETIMEDOUT' ? new TimedOutError(`test: ${code}`) : new CancelledError(`test: ${code}`));
  return c.signal;
}

describe('dma: layout-break waits are recorded only when one happened', function () {
  let v: DaxVolume;
  let rec: ReturnType<typeof recorder>;

  beforeEach(async function () {
    const storage = new MemoryStorage(16 * MiB);
    await mkfs(storage);
    const fs = await FileSystem.mount(storage);
    rec = recorder();
    v = { storage, fs, dax: new Dax(fs, { failpoints: true, observer: rec.observer }) };
  });

  for (const code of ['ETIMEDOUT', 'ECANCELED'] as const) {
    it(`a truncate whose signal had already fired (${code}), nothing pinned: fails, records no wait`, async function () {
      const ino = await writtenFile(v, 'f', 4, () => 0x11);
      const before = { ...v.dax.counters().layoutBreakWaits };
      await assert.rejects(v.fs.truncate(ino, PAGE, { policy: 'WAIT', signal: aborted(code) }), (err: DaxError) => err.code === code);
      assert.deepEqual(v.dax.counters().layoutBreakWaits, before, 'a wait was counted');
      assert.deepEqual(rec.waits, [], 'a wait was reported to the observer (metric and warn line)');
      assert.equal(v.fs.stat(ino).sizeBytes, 4 * PAGE, 'the late truncate changed the file');
    });
  }

  it('a punch that met a pin and waited until its deadline: one timedout wait recorded', async function () {
    const ino = await writtenFile(v, 'g', 4, () => 0x22);
    const owner = new TestOwner('pinner');
    const pin = await v.dax.pin(owner, { ino, firstPgoff: 1, npages: 1, writable: false, leaseMs: 0 });
    const c = new AbortController();
    const punching = v.fs.fallocate(ino, 'PUNCH_HOLE', 0, 4 * PAGE, { policy: 'WAIT', signal: c.signal });
    await until(() => (v.dax.spaceStats(ino)?.layoutBreaksWaiting ?? 0) > 0, 'the punch waiting for the pin');
    c.abort(new TimedOutError('test deadline'));
    await assert.rejects(punching, (err: DaxError) => err.code === 'ETIMEDOUT');
    assert.equal(v.dax.counters().layoutBreakWaits.timedout, 1);
    assert.deepEqual(rec.waits.map((w) => w.outcome), ['timedout']);
    v.dax.unpin(owner, pin.id);
  });
});
