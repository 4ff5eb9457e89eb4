/**
 * HotHistogram (server/metrics-hot.ts) renders what a prom-client Histogram with the same
 * buckets renders for the same observations: cumulative `_bucket{le}` (a value equal to a
 * bound counts in that bucket), `_sum`, `_count`, one series per label set; reset() zeroes.
 */
import assert from 'node:assert/strict';
import * as prom from 'prom-client';
import { HotHistogram } from '../../server/metrics-hot';

const BUCKETS = [0.001, 0.01, 0.1, 1];
const VALUES = [0, 0.0005, 0.001, 0.0011, 0.01, 0.5, 1, 1.5, 100];

function series(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(name)).sort();
}

describe('HotHistogram: the Prometheus histogram format without prom-client on the hot path', function () {
  it('renders the same lines as prom-client\'s Histogram for the same observations, per label set', async function () {
    const hotRegistry = new prom.Registry();
    const hot = new HotHistogram('x_seconds', 'help', BUCKETS, hotRegistry);
    const refRegistry = new prom.Registry();
    const ref = new prom.Histogram({ name: 'x_seconds', help: 'help', labelNames: ['command', 'outcome'], buckets: BUCKETS, registers: [refRegistry] });
    const a = hot.child({ command: 'READ', outcome: 'ok' });
    const b = hot.child({ command: 'WRITE', outcome: 'EIO' });
    for (const v of VALUES) {
      a.observe(v);
      ref.labels('READ', 'ok').observe(v);
    }
    b.observe(0.05);
    ref.labels('WRITE', 'EIO').observe(0.05);
    const hotText = await hotRegistry.metrics();
    const refText = await refRegistry.metrics();
    assert.deepEqual(series(hotText, 'x_seconds'), series(refText, 'x_seconds'));
    assert.match(hotText, /^# TYPE x_seconds histogram$/m);
    assert.ok(hotText.includes('x_seconds_bucket{le="0.001",command="READ",outcome="ok"} 3'), hotText);
    assert.ok(hotText.includes('x_seconds_bucket{le="+Inf",command="READ",outcome="ok"} 9'), hotText);
    hotRegistry.resetMetrics();
    assert.ok((await hotRegistry.metrics()).includes('x_seconds_count{command="READ",outcome="ok"} 0'));
  });

  it('refuses buckets that do not increase', function () {
    assert.throws(() => new HotHistogram('y_seconds', 'help', [1, 1], new prom.Registry()), /buckets must increase/);
  });
});
