/**
 * The bounded SIGKILL crash campaign of npm test (kill-harness.ts): DAXD_CRASH_POINTS
 * (default 200) kill points over DAXD_CRASH_LANES (default 2) volumes, replayable with
 * DAXD_CRASH_SEED. Some kills are aimed at truncates and collapses in flight. The long
 * version is `npm run soak:crash` (soak-crash.ts).
 */
import assert from 'node:assert/strict';
import { formatStats, runKillCampaign } from './kill-harness';

const CRASH_POINTS = Number(process.env.DAXD_CRASH_POINTS ?? '200');
const LANES = Number(process.env.DAXD_CRASH_LANES ?? '2');
const SEED = Number(process.env.DAXD_CRASH_SEED ?? String(Math.floor(Math.random() * 2 ** 31)));

describe('crash: SIGKILL of a process writing a real volume file', function () {
  this.timeout(Math.max(300_000, CRASH_POINTS * 3_000));

  it(`${CRASH_POINTS} crash points (truncate and collapse among those in flight): replay, fsck clean, acknowledged bytes intact, no stale or canary bytes`, async () => {
    const stats = await runKillCampaign({ points: CRASH_POINTS, lanes: LANES, seed: SEED });
    process.stdout.write(`      ${formatStats(SEED, stats).split('\n').join('\n      ')}\n`);
    assert.deepEqual(stats.problems, [], `DAXD_CRASH_SEED=${SEED}`);
    assert.equal(stats.lostBytes, 0);
    assert.equal(stats.staleBytes, 0);
    assert.equal(stats.crashes, CRASH_POINTS);
    assert.ok(stats.acks > 0 && stats.guardedBytes > 0, 'nothing was acknowledged before a crash: nothing was checked');
    const shrink = stats.inFlight['truncate-shrink'] ?? 0;
    const grow = stats.inFlight['truncate-grow'] ?? 0;
    assert.ok(shrink + grow > 0, `no kill landed during a truncate (DAXD_CRASH_SEED=${SEED})`);
    assert.ok((stats.inFlight.COLLAPSE_RANGE ?? 0) > 0, `no kill landed during a collapse (DAXD_CRASH_SEED=${SEED})`);
  });
});
