/**
 * The HDR-style histogram of daxd-load: percentiles within one bucket of the exact ones
 * (relative error < 2^-SUB_BITS), exact min/max/count/mean, merge and JSON round trip,
 * constant memory whatever the number of samples.
 */
import assert from 'node:assert/strict';
import { bucketRange, indexOf, LatencyHistogram, SUB_BITS, VALUE_MAX } from '../../client/loadtest/histogram';
import { Rng } from '../../client/loadtest/rng';

const PRECISION = 2 ** -SUB_BITS;

/** The exact percentile by the same rank rule (ceil(p/100 * n), 1-based) on sorted samples. */
function exact(sorted: number[], p: number): number {
  return sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1];
}

describe('loadtest: latency histogram', function () {
  it('counts values below 2^(SUB_BITS+1) exactly', function () {
    const h = new LatencyHistogram();
    for (let v = 0; v < 256; v++) h.record(v);
    assert.equal(h.count, 256);
    assert.equal(h.percentile(50), 127);
    assert.equal(h.percentile(100), 255);
    assert.equal(h.min, 0);
    assert.equal(h.max, 255);
  });

  it('maps every value into a bucket that contains it, buckets narrower than value x 2^-SUB_BITS', function () {
    const rng = new Rng(7);
    for (let i = 0; i < 20_000; i++) {
      const v = Math.floor(2 ** (rng.float() * 44));
      const [lo, hi] = bucketRange(indexOf(v));
      assert.ok(lo <= v && v <= hi, `${v} not in [${lo}, ${hi}]`);
      assert.ok(hi - lo <= Math.max(0, v * PRECISION), `bucket of ${v} is ${hi - lo + 1} wide`);
    }
    assert.ok(indexOf(VALUE_MAX) > indexOf(VALUE_MAX - 1));
  });

  it('reports p50/p90/p99/p99.9/max within bucket precision of the exact values (log-normal latencies)', function () {
    const rng = new Rng(42);
    const h = new LatencyHistogram();
    const samples: number[] = [];
    for (let i = 0; i < 200_000; i++) {
      // Log-normal around 100 us, in ns, with a long tail.
      const z = Math.sqrt(-2 * Math.log(1 - rng.float())) * Math.cos(2 * Math.PI * rng.float());
      const v = Math.round(100_000 * Math.exp(z * 1.2));
      samples.push(v);
      h.record(v);
    }
    samples.sort((a, b) => a - b);
    for (const p of [50, 90, 99, 99.9, 100]) {
      const want = exact(samples, p);
      const got = h.percentile(p);
      assert.ok(got >= want, `p${p}: ${got} below the exact ${want}`);
      assert.ok((got - want) / want <= PRECISION, `p${p}: ${got} vs exact ${want} (relative error ${((got - want) / want).toExponential(2)})`);
    }
    const s = h.summary();
    assert.equal(s.max, samples[samples.length - 1]);
    assert.equal(s.min, samples[0]);
    assert.equal(s.count, samples.length);
    assert.ok(Math.abs(s.mean - samples.reduce((a, b) => a + b, 0) / samples.length) < 1e-6 * s.mean);
  });

  it('merges and round-trips through JSON with the same percentiles', function () {
    const rng = new Rng(3);
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    const all = new LatencyHistogram();
    for (let i = 0; i < 10_000; i++) {
      const v = rng.int(5_000_000);
      (i % 2 === 0 ? a : b).record(v);
      all.record(v);
    }
    a.merge(b);
    const back = LatencyHistogram.fromJSON(JSON.parse(JSON.stringify(a.toJSON())));
    for (const p of [1, 50, 90, 99, 99.9, 100]) {
      assert.equal(a.percentile(p), all.percentile(p));
      assert.equal(back.percentile(p), all.percentile(p));
    }
    assert.deepEqual(back.summary(), all.summary());
  });

  it('is empty-safe and clamps what it cannot hold', function () {
    const h = new LatencyHistogram();
    assert.equal(h.percentile(99), 0);
    assert.deepEqual(h.summary(), { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 });
    h.record(-5);
    h.record(VALUE_MAX * 4);
    assert.equal(h.clamped, 1);
    assert.equal(h.percentile(100), VALUE_MAX);
    assert.equal(h.min, 0);
  });
});
