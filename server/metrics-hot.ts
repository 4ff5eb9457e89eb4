/**
 * Metric families for hot paths (an NBD request is served in ~10 µs of CPU): recording is
 * an array index and two additions, no label hashing and no validation, and the
 * Prometheus text is built at scrape time. prom-client's own Histogram costs ~1 µs per
 * observe (label validation and hashing on every call, measured on the bench machine),
 * a tenth of a 4 KiB NBD READ.
 *
 * HotHistogram: a histogram whose label sets are registered once (child(labels) returns a
 * recorder); exposed as the standard `_bucket{le}`, `_sum` and `_count` series.
 */
import type * as prom from 'prom-client';

type Labels = Record<string, string>;

export interface HotRecorder {
  observe(value: number): void;
}

interface Series {
  labels: Labels;
  /** counts[i]: observations <= bounds[i] and > bounds[i - 1]; the last slot is +Inf. */
  counts: Float64Array;
  sum: number;
  count: number;
}

/** Registered into a prom-client registry through its metric interface (name, help, type, get, reset). */
export class HotHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, Series>();

  constructor(readonly name: string, readonly help: string, private readonly bounds: readonly number[], registry: prom.Registry) {
    for (let i = 1; i < bounds.length; i++) if (!(bounds[i] > bounds[i - 1])) throw new Error(`${name}: buckets must increase`);
    registry.registerMetric(this as unknown as prom.Metric);
  }

  /** The recorder of one label set (cache it: this call hashes the labels). */
  child(labels: Labels): HotRecorder {
    const key = JSON.stringify(Object.entries(labels).sort());
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { labels: { ...labels }, counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 }));
    const series = s;
    const bounds = this.bounds;
    return {
      observe(value: number): void {
        let i = 0;
        while (i < bounds.length && value > bounds[i]) i++;
        series.counts[i]++;
        series.sum += value;
        series.count++;
      },
    };
  }

  /** The prom-client metric interface: what the registry renders. */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Array<{ metricName: string; labels: Labels; value: number }> }> {
    const values: Array<{ metricName: string; labels: Labels; value: number }> = [];
    for (const s of this.series.values()) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += s.counts[i];
        const le = i === this.bounds.length ? '+Inf' : String(this.bounds[i]);
        values.push({ metricName: `${this.name}_bucket`, labels: { le, ...s.labels }, value: cumulative });
      }
      values.push({ metricName: `${this.name}_sum`, labels: s.labels, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: s.labels, value: s.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    for (const s of this.series.values()) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
