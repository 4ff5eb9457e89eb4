/** The text summary of a daxd-load run (stdout), and the units it prints in. */
import type { KindReport } from './recorder';
import type { RunResult } from './runner';

/** A kind's bandwidth: its rate, or an em dash for a kind that moves no bytes (fsync, pin, ...). */
export function formatBandwidth(k: { bytes: number; bytesPerSec: number }): string {
  return k.bytes === 0 ? '\u2014' : formatRate(k.bytesPerSec);
}

export function formatRate(bytesPerSec: number): string {
  const units = ['B/s', 'KiB/s', 'MiB/s', 'GiB/s'];
  let v = bytesPerSec;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
}

export function formatCount(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return n.toFixed(n < 10 && n % 1 !== 0 ? 1 : 0);
}

/** Microseconds, printed as us below 10 ms and ms above. */
export function formatUs(us: number): string {
  if (us >= 10_000) return `${(us / 1000).toFixed(1)}ms`;
  if (us >= 1000) return `${(us / 1000).toFixed(2)}ms`;
  return `${us.toFixed(us < 10 ? 1 : 0)}us`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

function kindRow(k: KindReport): string[] {
  const l = k.latencyUs;
  return [
    `${k.kind}${k.primary ? '' : ' *'}`, formatCount(k.ops), formatCount(k.opsPerSec), formatBandwidth(k),
    formatUs(l.p50), formatUs(l.p90), formatUs(l.p99), formatUs(l.p999), formatUs(l.max),
  ];
}

export function summaryText(r: RunResult): string {
  const o = r.options;
  const out: string[] = [];
  out.push(`daxd-load ${o.workload}: ${o.clients} client(s) x QD ${o.qd}, bs ${o.bsBytes}, ${o.files} file(s) of ${o.sizeBytes} bytes, seed ${o.seed}${o.verify ? ', verify' : ''} against ${r.address}`);
  out.push(`measured ${r.elapsedS.toFixed(2)} s (layout ${r.layoutS.toFixed(2)} s)${r.stoppedEarly ? `; stopped early: ${r.stoppedEarly}` : ''}`);
  out.push(`throughput: ${formatCount(r.total.opsPerSec)} ops/s, ${formatRate(r.total.bytesPerSec)} (${r.total.ops} ops, ${r.total.bytes} bytes)`);
  const header = ['kind', 'ops', 'ops/s', 'bandwidth', 'p50', 'p90', 'p99', 'p99.9', 'max'];
  out.push('', table(header, [...r.kinds.map(kindRow), kindRow(r.total)]));
  if (r.kinds.some((k) => !k.primary)) out.push('  * calls inside a primary op (not in the totals)');
  out.push('  latency: per request (a fault batch or a pin cycle is one request), from an HDR histogram (< 0.8% error)');
  const expected = Object.entries(r.expected);
  if (expected.length > 0) out.push('', `expected outcomes: ${expected.map(([k, n]) => `${k} x${n}`).join(', ')}`);
  const errors = Object.entries(r.errors);
  if (errors.length > 0) {
    out.push('', `ERRORS (${errors.reduce((n, [, e]) => n + e.count, 0)}):`);
    for (const [name, e] of errors) out.push(`  ${name} x${e.count}: ${e.first}`);
  }
  if (r.verify.enabled) {
    out.push('', `verify: ${r.verify.pagesStamped} pages stamped, ${r.verify.pagesChecked} pages checked, ${r.verify.mismatchCount} mismatch(es)`);
    for (const m of r.verify.mismatches.slice(0, 20)) {
      out.push(`  MISMATCH ${m.file} (ino ${m.ino}) page ${m.page} (offset ${m.offset}) via ${m.via} at +${m.atMs} ms: ${m.kind}: ${m.detail}`
        + `${m.found ? ` [found file #${m.found.file} page ${m.found.page} gen ${m.found.generation} writer ${m.found.writer}]` : ''}`);
    }
    if (r.verify.mismatches.length > 20) out.push(`  ... ${r.verify.mismatches.length - 20} more in the JSON report`);
  }
  out.push('', r.passed ? 'PASSED' : 'FAILED');
  return `${out.join('\n')}\n`;
}
