/**
 * Recorder: what a daxd-load run measured. Per kind of operation (read, write, fault,
 * pin-cycle, ...) the ops, bytes and a latency histogram of the whole run, plus interval
 * counters that the sampler turns into the time series (throughput over time) once per
 * sample period. Kinds are "primary" (what the workload exists to do: they make the
 * IOPS and bandwidth figures) or secondary (the calls inside a primary op, e.g. the Pin,
 * DMA and Unpin calls of a pin cycle, shown in the breakdown only).
 *
 * Failures: expected outcomes of a race (EBUSY from a FAIL layout break, PIN_REVOKED after
 * a RECALL, ...) are counted by name and do not fail the run; any other error is counted,
 * its first message kept, and fails the run.
 */
import { LatencyHistogram, type HistogramJson, type HistogramSummary } from './histogram';

/** Distinct kinds and error names a run keeps (they come from a fixed set in the code). */
const KINDS_MAX = 64;
const ERROR_NAMES_MAX = 64;

export interface KindStats {
  kind: string;
  primary: boolean;
  /** Operations (a batch of 64 faults counts 64). */
  ops: number;
  bytes: number;
  /** Latency of each request (one sample per call or per batch), ns; up to the last sample. */
  latency: LatencyHistogram;
  intervalOps: number;
  intervalBytes: number;
  intervalLatency: LatencyHistogram;
}

export interface SeriesPoint {
  /** Seconds since the measured phase started (end of the interval). */
  t: number;
  opsPerSec: number;
  bytesPerSec: number;
  p50Us: number;
  p99Us: number;
  errors: number;
}

export interface KindReport {
  kind: string;
  primary: boolean;
  ops: number;
  bytes: number;
  opsPerSec: number;
  bytesPerSec: number;
  /** Microseconds. */
  latencyUs: HistogramSummary;
  histogram: HistogramJson;
}

export class Recorder {
  readonly kinds = new Map<string, KindStats>();
  readonly expected = new Map<string, number>();
  readonly errors = new Map<string, { count: number; first: string }>();
  errorCount = 0;
  private intervalErrors = 0;
  readonly series: SeriesPoint[] = [];

  private stats(kind: string, primary: boolean): KindStats {
    let s = this.kinds.get(kind);
    if (s === undefined) {
      if (this.kinds.size >= KINDS_MAX) throw new Error(`too many op kinds (${this.kinds.size + 1} vs. max ${KINDS_MAX})`);
      s = { kind, primary, ops: 0, bytes: 0, latency: new LatencyHistogram(), intervalOps: 0, intervalBytes: 0, intervalLatency: new LatencyHistogram() };
      this.kinds.set(kind, s);
    }
    return s;
  }

  /** One request of `kind` that did `ops` operations moving `bytes`, in latencyNs. */
  record(kind: string, ops: number, bytes: number, latencyNs: number, primary = true): void {
    const s = this.stats(kind, primary);
    // Recorded once, in the interval's histogram; sample() folds it into the run's.
    s.intervalOps += ops;
    s.intervalBytes += bytes;
    s.intervalLatency.record(latencyNs);
  }

  /** An outcome the workload expects now and then (counted, not a failure). */
  expect(name: string): void {
    if (!this.expected.has(name) && this.expected.size >= ERROR_NAMES_MAX) name = 'other';
    this.expected.set(name, (this.expected.get(name) ?? 0) + 1);
  }

  /** A failure: fails the run. */
  error(name: string, err: unknown): void {
    this.errorCount++;
    this.intervalErrors++;
    if (!this.errors.has(name) && this.errors.size >= ERROR_NAMES_MAX) name = 'other';
    const e = this.errors.get(name);
    if (e) e.count++;
    else this.errors.set(name, { count: 1, first: err instanceof Error ? err.message : String(err) });
  }

  /** Folds the current interval into the run's totals without making a series point. */
  flush(): void {
    for (const s of this.kinds.values()) {
      s.ops += s.intervalOps;
      s.bytes += s.intervalBytes;
      s.latency.merge(s.intervalLatency);
      s.intervalOps = 0;
      s.intervalBytes = 0;
      s.intervalLatency.reset();
    }
  }

  /** Closes the current interval (of intervalS seconds, ending t seconds into the run). */
  sample(t: number, intervalS: number): SeriesPoint {
    let ops = 0;
    let bytes = 0;
    const latency = new LatencyHistogram();
    for (const s of this.kinds.values()) {
      if (s.primary) {
        ops += s.intervalOps;
        bytes += s.intervalBytes;
        latency.merge(s.intervalLatency);
      }
      s.ops += s.intervalOps;
      s.bytes += s.intervalBytes;
      s.latency.merge(s.intervalLatency);
      s.intervalOps = 0;
      s.intervalBytes = 0;
      s.intervalLatency.reset();
    }
    const point: SeriesPoint = {
      t: round3(t), opsPerSec: intervalS > 0 ? ops / intervalS : 0, bytesPerSec: intervalS > 0 ? bytes / intervalS : 0,
      p50Us: latency.percentile(50) / 1000, p99Us: latency.percentile(99) / 1000, errors: this.intervalErrors,
    };
    this.intervalErrors = 0;
    this.series.push(point);
    return point;
  }

  /** Primary totals over elapsedS (up to the last sample), with the latency of all primary requests merged. */
  total(elapsedS: number): KindReport {
    const latency = new LatencyHistogram();
    let ops = 0;
    let bytes = 0;
    for (const s of this.kinds.values()) {
      if (!s.primary) continue;
      ops += s.ops;
      bytes += s.bytes;
      latency.merge(s.latency);
    }
    return report('total', true, ops, bytes, latency, elapsedS);
  }

  reports(elapsedS: number): KindReport[] {
    return [...this.kinds.values()].map((s) => report(s.kind, s.primary, s.ops, s.bytes, s.latency, elapsedS));
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function report(kind: string, primary: boolean, ops: number, bytes: number, latency: LatencyHistogram, elapsedS: number): KindReport {
  const ns = latency.summary();
  const us = (v: number) => Math.round(v / 10) / 100;
  return {
    kind, primary, ops, bytes, opsPerSec: elapsedS > 0 ? ops / elapsedS : 0, bytesPerSec: elapsedS > 0 ? bytes / elapsedS : 0,
    latencyUs: { count: ns.count, min: us(ns.min), mean: us(ns.mean), p50: us(ns.p50), p90: us(ns.p90), p99: us(ns.p99), p999: us(ns.p999), max: us(ns.max) },
    histogram: latency.toJSON(),
  };
}
