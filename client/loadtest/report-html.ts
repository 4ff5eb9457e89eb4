/**
 * The HTML report of a daxd-load run: one self-contained file (inline CSS and SVG, no
 * script, nothing fetched) with the summary table, throughput and latency over time, and
 * the latency distribution of each primary kind as a percentile spectrum (HdrHistogram's
 * plot: x = percentile on a 1/(1-p) log scale, y = latency), computed from the run's
 * histograms.
 */
import type { HistogramJson } from './histogram';
import type { RunResult } from './runner';
import { formatBandwidth, formatCount, formatRate, formatUs } from './summary';

interface Series {
  name: string;
  points: Array<[number, number]>;
}

interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** x values are percentiles, plotted on a 1/(1-p) log scale. */
  percentileX?: boolean;
  yLog?: boolean;
}

/** Distinct line colours (Tableau 10 and two more); past them, evenly spaced hues. */
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f', '#393b79', '#637939'];
/** The `total` line: near-black and dashed, never one of the kinds' colours. */
const TOTAL_COLOR = '#222222';

/** Colour of series i of n (the total aside): all n distinct. */
function colourOf(i: number, n: number): string {
  return n <= COLORS.length ? COLORS[i] : `hsl(${Math.round((i * 360) / n)} 70% 40%)`;
}
const W = 760;
const H = 300;
const PAD = { left: 70, right: 150, top: 30, bottom: 45 };

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? step0;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function fmtTick(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toPrecision(3)}M`;
  if (Math.abs(v) >= 1e3) return `${(v / 1e3).toPrecision(3)}k`;
  return String(Number(v.toPrecision(3)));
}

/** Percentile p (0..100) on the spectrum's axis: log10(1 / (1 - p/100)), capped at 5 nines. */
function pctAxis(p: number): number {
  return Math.log10(1 / Math.max(1e-5, 1 - p / 100));
}

export function lineChart(spec: ChartSpec): string {
  const pts = spec.series.flatMap((s) => s.points);
  if (pts.length === 0) return `<p><em>${esc(spec.title)}: no data</em></p>`;
  const xOf = (x: number) => (spec.percentileX ? pctAxis(x) : x);
  const yOf = (y: number) => (spec.yLog ? Math.log10(Math.max(y, 1e-3)) : y);
  const xs = pts.map((p) => xOf(p[0]));
  const ys = pts.map((p) => yOf(p[1]));
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs, x0 + 1e-9);
  const y0 = spec.yLog ? Math.floor(Math.min(...ys)) : Math.min(0, ...ys);
  const y1 = spec.yLog ? Math.ceil(Math.max(...ys, y0 + 1)) : Math.max(...ys, y0 + 1e-9) * 1.05;
  const px = (x: number) => PAD.left + ((xOf(x) - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const py = (y: number) => H - PAD.bottom - ((yOf(y) - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(spec.title)}">`);
  parts.push(`<text x="${W / 2 - PAD.right / 2}" y="18" text-anchor="middle" class="t">${esc(spec.title)}</text>`);
  // Axes and grid.
  const xTicks = spec.percentileX ? [0, 50, 90, 99, 99.9, 99.99, 99.999].filter((p) => pctAxis(p) <= x1 + 1e-9) : niceTicks(x0, x1);
  for (const t of xTicks) {
    const x = px(t);
    parts.push(`<line x1="${x}" y1="${PAD.top}" x2="${x}" y2="${H - PAD.bottom}" class="g"/><text x="${x}" y="${H - PAD.bottom + 16}" text-anchor="middle">${spec.percentileX ? `${t}%` : fmtTick(t)}</text>`);
  }
  const yTicks = spec.yLog ? Array.from({ length: y1 - y0 + 1 }, (_, i) => 10 ** (y0 + i)) : niceTicks(y0, y1);
  for (const t of yTicks) {
    const y = py(t);
    parts.push(`<line x1="${PAD.left}" y1="${y}" x2="${W - PAD.right}" y2="${y}" class="g"/><text x="${PAD.left - 6}" y="${y + 4}" text-anchor="end">${fmtTick(t)}</text>`);
  }
  parts.push(`<rect x="${PAD.left}" y="${PAD.top}" width="${W - PAD.left - PAD.right}" height="${H - PAD.top - PAD.bottom}" class="f"/>`);
  parts.push(`<text x="${(PAD.left + W - PAD.right) / 2}" y="${H - 8}" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  parts.push(`<text transform="translate(16 ${(PAD.top + H - PAD.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(spec.yLabel)}</text>`);
  const kinds = spec.series.filter((s) => s.name !== 'total').length;
  let k = 0;
  spec.series.forEach((s, i) => {
    const total = s.name === 'total';
    const color = total ? TOTAL_COLOR : colourOf(k++, kinds);
    const dash = total ? ' stroke-dasharray="6 3"' : '';
    const d = s.points.map((p, j) => `${j === 0 ? 'M' : 'L'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`);
    if (s.points.length === 1) parts.push(`<circle cx="${px(s.points[0][0])}" cy="${py(s.points[0][1])}" r="3" fill="${color}"/>`);
    const ly = PAD.top + 14 + i * 18;
    parts.push(`<line x1="${W - PAD.right + 10}" y1="${ly - 4}" x2="${W - PAD.right + 30}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${dash}/><text x="${W - PAD.right + 34}" y="${ly}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

/** The percentile spectrum of a histogram (ns buckets), in microseconds. */
export function spectrum(h: HistogramJson): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let seen = 0;
  for (const [, hi, n] of h.buckets) {
    seen += n;
    const p = (100 * seen) / h.count;
    out.push([Math.min(p, 99.999), Math.min(hi, h.max) / 1000]);
  }
  return out;
}

export function reportHtml(r: RunResult): string {
  const o = r.options;
  const primary = r.kinds.filter((k) => k.primary);
  const rows = [...r.kinds, r.total].map((k) => `<tr><td>${esc(k.kind)}${k.primary ? '' : ' *'}</td><td>${k.ops}</td><td>${formatCount(k.opsPerSec)}</td><td>${formatBandwidth(k)}</td>`
    + `${[k.latencyUs.p50, k.latencyUs.p90, k.latencyUs.p99, k.latencyUs.p999, k.latencyUs.max].map((v) => `<td>${formatUs(v)}</td>`).join('')}</tr>`).join('\n');
  const charts = [
    lineChart({ title: 'Throughput over time', xLabel: 'seconds', yLabel: 'ops/s', series: [{ name: 'ops/s', points: r.series.map((p) => [p.t, p.opsPerSec]) }] }),
    lineChart({ title: 'Bandwidth over time', xLabel: 'seconds', yLabel: 'MiB/s', series: [{ name: 'MiB/s', points: r.series.map((p) => [p.t, p.bytesPerSec / 1048576]) }] }),
    lineChart({
      title: 'Latency over time (per interval)', xLabel: 'seconds', yLabel: 'microseconds', yLog: true,
      series: [{ name: 'p50', points: r.series.filter((p) => p.p50Us > 0).map((p) => [p.t, p.p50Us]) }, { name: 'p99', points: r.series.filter((p) => p.p99Us > 0).map((p) => [p.t, p.p99Us]) }],
    }),
    lineChart({
      title: 'Latency distribution (percentile spectrum)', xLabel: 'percentile', yLabel: 'microseconds', percentileX: true, yLog: true,
      series: [...primary, ...(primary.length > 1 ? [r.total] : [])].filter((k) => k.histogram.count > 0).map((k) => ({ name: k.kind, points: spectrum(k.histogram) })),
    }),
  ];
  const mism = r.verify.mismatches.map((m) => `<tr><td>${esc(m.file)}</td><td>${m.page}</td><td>${m.offset}</td><td>${esc(m.via)}</td><td>${esc(m.kind)}</td><td>${esc(m.detail)}</td></tr>`).join('\n');
  const errors = Object.entries(r.errors).map(([name, e]) => `<li><b>${esc(name)}</b> x${e.count}: ${esc(e.first)}</li>`).join('');
  const expected = Object.entries(r.expected).map(([name, n]) => `<li>${esc(name)} x${n}</li>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>daxd-load ${esc(o.workload)} ${esc(r.startedAt)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1000px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.pass{color:#080;font-weight:bold}.fail{color:#c00;font-weight:bold}
svg{display:block;margin:1em 0}svg text{font:11px system-ui,sans-serif;fill:#333}svg .t{font-size:14px;font-weight:bold}
svg .g{stroke:#e4e4e4}svg .f{fill:none;stroke:#999}
</style></head><body>
<h1>daxd-load: ${esc(o.workload)} <span class="${r.passed ? 'pass' : 'fail'}">${r.passed ? 'PASSED' : 'FAILED'}</span></h1>
<p>${esc(r.startedAt)} against ${esc(r.address)}: ${o.clients} client(s) x QD ${o.qd}, bs ${o.bsBytes}, ${o.files} file(s) of ${o.sizeBytes} bytes, seed ${o.seed}${o.verify ? ', verify' : ''}.
Measured ${r.elapsedS.toFixed(2)} s: <b>${formatCount(r.total.opsPerSec)} ops/s, ${formatRate(r.total.bytesPerSec)}</b>.${r.stoppedEarly ? ` Stopped early: ${esc(r.stoppedEarly)}.` : ''}</p>
<table><tr><th>kind</th><th>ops</th><th>ops/s</th><th>bandwidth</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>
${rows}</table>
<p>${r.kinds.some((k) => !k.primary) ? '* calls inside a primary op, not in the totals. ' : ''}Latency per request, from HDR histograms (&lt; 0.8% error).</p>
${charts.join('\n')}
${expected ? `<h2>Expected outcomes</h2><ul>${expected}</ul>` : ''}
${errors ? `<h2>Errors</h2><ul>${errors}</ul>` : ''}
${r.verify.enabled ? `<h2>Verify</h2><p>${r.verify.pagesStamped} pages stamped, ${r.verify.pagesChecked} checked, ${r.verify.mismatchCount} mismatch(es).</p>${mism ? `<table><tr><th>file</th><th>page</th><th>offset</th><th>via</th><th>kind</th><th>detail</th></tr>${mism}</table>` : ''}` : ''}
</body></html>
`;
}
