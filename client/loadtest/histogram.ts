/**
 * LatencyHistogram: an HDR-style log-linear histogram of non-negative integers
 * (daxd-load records nanoseconds). Memory and recording cost are constant whatever the
 * number of samples: no array of samples is kept.
 *
 * Bucketing (as HdrHistogram): values below 2^(SUB_BITS+1) are counted exactly; above,
 * each power-of-two range [2^k, 2^(k+1)) is split into 2^SUB_BITS equal sub-buckets. A
 * recorded value is therefore known to within one sub-bucket: the relative error of any
 * reported percentile is below 2^-SUB_BITS (SUB_BITS = 7: < 0.79%). Percentiles report the
 * highest value of the bucket (never below the true sample) and never more than the
 * exact maximum, which is tracked separately, as are the exact minimum and the sum.
 *
 * Values from 0 to VALUE_MAX (2^44 ns: about 4.9 hours) are recorded; larger ones are
 * clamped to it and counted in `clamped`.
 */
import assert from 'node:assert';

export const SUB_BITS = 7;
const HALF = 1 << SUB_BITS; // sub-buckets per power of two above the exact range
const EXACT_LIMIT = HALF * 2; // values below this have a bucket each
export const VALUE_MAX = 2 ** 44;
const BUCKETS = (44 - SUB_BITS) + 1;
const COUNTS_LENGTH = (BUCKETS + 1) * HALF;

/** floor(log2(v)) for 1 <= v < 2^53. */
function msb(v: number): number {
  if (v < 4294967296) return 31 - Math.clz32(v);
  return 63 - Math.clz32(Math.floor(v / 4294967296));
}

const POW2 = Array.from({ length: 64 }, (_, i) => 2 ** i);

/** The flat counts index of value v (an integer in [0, VALUE_MAX]). */
export function indexOf(v: number): number {
  if (v < EXACT_LIMIT) return v;
  const bucket = msb(v) - SUB_BITS;
  const sub = Math.floor(v / POW2[bucket]); // in [HALF, 2 * HALF)
  return (bucket + 1) * HALF + (sub - HALF);
}

/** [lowest, highest] value that lands in counts index i. */
export function bucketRange(i: number): [number, number] {
  if (i < EXACT_LIMIT) return [i, i];
  const bucket = Math.floor(i / HALF) - 1;
  const sub = (i % HALF) + HALF;
  const width = 2 ** bucket;
  return [sub * width, sub * width + width - 1];
}

export interface HistogramSummary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export interface HistogramJson {
  subBits: number;
  count: number;
  min: number;
  max: number;
  sum: number;
  clamped: number;
  /** Non-empty buckets: [lowest value of the bucket, highest value, count]. */
  buckets: Array<[number, number, number]>;
}

export class LatencyHistogram {
  private readonly counts = new Float64Array(COUNTS_LENGTH);
  count = 0;
  min = Infinity;
  max = 0;
  sum = 0;
  clamped = 0;

  record(value: number): void {
    let v = value < 0 || Number.isNaN(value) ? 0 : Math.round(value);
    if (v > VALUE_MAX) {
      v = VALUE_MAX;
      this.clamped++;
    }
    this.counts[indexOf(v)]++;
    this.count++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  /** Adds every sample of other to this one. */
  merge(other: LatencyHistogram): void {
    for (let i = 0; i < COUNTS_LENGTH; i++) if (other.counts[i] !== 0) this.counts[i] += other.counts[i];
    this.count += other.count;
    this.sum += other.sum;
    this.clamped += other.clamped;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.min = Infinity;
    this.max = 0;
    this.sum = 0;
    this.clamped = 0;
  }

  /**
   * The value at percentile p (0 < p <= 100): the highest value of the bucket holding the
   * sample of rank ceil(p/100 * count), capped at the exact maximum. 0 when empty.
   */
  percentile(p: number): number {
    assert(p > 0 && p <= 100, `percentile ${p} is not in (0, 100]`);
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < COUNTS_LENGTH; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(bucketRange(i)[1], this.max);
    }
    return this.max;
  }

  summary(): HistogramSummary {
    return {
      count: this.count, min: this.count === 0 ? 0 : this.min, mean: this.count === 0 ? 0 : this.sum / this.count,
      p50: this.percentile(50), p90: this.percentile(90), p99: this.percentile(99), p999: this.percentile(99.9), max: this.max,
    };
  }

  toJSON(): HistogramJson {
    const buckets: Array<[number, number, number]> = [];
    for (let i = 0; i < COUNTS_LENGTH; i++) {
      if (this.counts[i] !== 0) {
        const [lo, hi] = bucketRange(i);
        buckets.push([lo, hi, this.counts[i]]);
      }
    }
    return { subBits: SUB_BITS, count: this.count, min: this.count === 0 ? 0 : this.min, max: this.max, sum: this.sum, clamped: this.clamped, buckets };
  }

  static fromJSON(json: HistogramJson): LatencyHistogram {
    assert.equal(json.subBits, SUB_BITS, 'histogram recorded with another precision');
    const h = new LatencyHistogram();
    for (const [lo, , n] of json.buckets) h.counts[indexOf(lo)] += n;
    h.count = json.count;
    h.min = json.count === 0 ? Infinity : json.min;
    h.max = json.max;
    h.sum = json.sum;
    h.clamped = json.clamped;
    return h;
  }
}
