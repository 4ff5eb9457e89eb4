/**
 * npm run soak:crash: the long SIGKILL crash soak (kill-harness.ts), not part of npm test.
 *
 *   npm run soak:crash [-- --points N --lanes L --seed S]
 *   (or DAXD_SOAK_POINTS, DAXD_SOAK_LANES, DAXD_SOAK_SEED; defaults 1000, 2, random)
 *
 * The child runs the engine (file layer and dax layer) over a real volume file with a
 * workload mixing sync writes, write+fsync, mapped stores+msync, MAP_SYNC faults, pins
 * with DMA writes+fsync, truncate (shrink and grow), punch, zero range and collapse; every
 * acknowledgement is logged on its pipe as it happens. After each kill: fsck clean before
 * and after mount, every acknowledged byte intact, no byte the file never wrote. Prints
 * rounds, kill points by operation in flight, lost and stale bytes, wall time; exits 1 on
 * any problem. Replay a run with its printed seed.
 */
import { formatStats, runKillCampaign } from './kill-harness';

function arg(name: string, env: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const raw = i >= 0 ? process.argv[i + 1] : process.env[env];
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} / ${env}: ${raw} is not a non-negative integer`);
  return n;
}

async function main(): Promise<number> {
  const points = arg('points', 'DAXD_SOAK_POINTS', 1000);
  const lanes = arg('lanes', 'DAXD_SOAK_LANES', 2);
  const seed = arg('seed', 'DAXD_SOAK_SEED', Math.floor(Math.random() * 2 ** 31));
  const t0 = Date.now();
  process.stdout.write(`soak:crash: ${points} kill points, ${lanes} lanes, seed ${seed} (replay: --seed ${seed})\n`);
  let last = 0;
  const stats = await runKillCampaign({
    points, lanes, seed,
    onRound: (s) => {
      if (s.crashes - last >= 50) {
        last = s.crashes;
        process.stdout.write(`  ${s.crashes}/${points} rounds, ${Math.round((Date.now() - t0) / 1000)} s, lost ${s.lostBytes}, stale ${s.staleBytes}\n`);
      }
    },
  });
  process.stdout.write(`${formatStats(seed, stats)}\nrounds ${stats.crashes}, wall time ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  for (const p of stats.problems) process.stdout.write(`PROBLEM ${p}\n`);
  return stats.problems.length === 0 && stats.lostBytes === 0 && stats.staleBytes === 0 && stats.crashes === points ? 0 : 1;
}

main().then((code) => { process.exitCode = code; }, (err: unknown) => {
  process.stderr.write(`soak:crash failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
