/**
 * Reads a V8 CPU profile (.cpuprofile, as `node --cpu-prof` or the inspector writes it)
 * and says where the time went: self time per function (top N) and per area (daxd server,
 * daxd client SDK, grpc-js, protobufjs, Node internals, GC, idle).
 *
 *   node dist/test/bench/cpu-profile-summary.js FILE.cpuprofile [N]
 */
import fs from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Share of non-idle time per area. */
  areas: Array<{ area: string; ms: number; pct: number }>;
  top: Array<{ fn: string; ms: number; pct: number }>;
}

export function areaOf(url: string, fn: string): string {
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return 'V8/native (program)';
  if (url.includes('@grpc/grpc-js')) return 'grpc-js';
  if (url.includes('protobufjs') || url.includes('@grpc/proto-loader')) return 'protobufjs';
  if (url.includes('/dist/server/nbd/')) return 'daxd NBD front end';
  if (url.includes('/dist/server/') || url.includes('/dist/cli/')) return 'daxd server';
  if (url.includes('/dist/wire/')) return 'daxd wire contract';
  if (url.includes('/dist/client/loadtest/')) return 'daxd-load';
  if (url.includes('/dist/client/')) return 'daxd client SDK';
  if (url.includes('/dist/test/')) return 'bench harness';
  if (url.startsWith('node:') || url === '') return 'Node internals / natives';
  return 'other modules';
}

/**
 * window: only samples taken in [fromUs, toUs] of the profiled process's monotonic clock
 * (V8's, the same as process.hrtime() on Linux), e.g. the measured phase of a run
 * without the process's start-up.
 */
export function summarize(profile: CpuProfile, topN = 15, window: { fromUs: number; toUs: number } | null = null): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i] ?? 0;
    if (window && (at < window.fromUs || at > window.toUs)) continue;
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const byFn = new Map<string, number>();
  const byArea = new Map<string, number>();
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const area = areaOf(url, functionName);
    byArea.set(area, (byArea.get(area) ?? 0) + us);
    if (area === 'idle') continue;
    busyUs += us;
    const short = url.replace(/^.*\/(node_modules|dist)\//, '$1/');
    const key = `${functionName || '(anonymous)'} ${short ? `${short}:${lineNumber + 1}` : ''}`.trim();
    byFn.set(key, (byFn.get(key) ?? 0) + us);
  }
  const pct = (us: number) => Math.round((1000 * us) / Math.max(1, busyUs)) / 10;
  return {
    totalMs: window ? (Math.min(window.toUs, profile.endTime) - Math.max(window.fromUs, profile.startTime)) / 1000 : (profile.endTime - profile.startTime) / 1000,
    areas: [...byArea].filter(([a]) => a !== 'idle').sort((a, b) => b[1] - a[1]).map(([area, us]) => ({ area, ms: us / 1000, pct: pct(us) })),
    top: [...byFn].sort((a, b) => b[1] - a[1]).slice(0, topN).map(([fn, us]) => ({ fn, ms: us / 1000, pct: pct(us) })),
  };
}

export function formatSummary(title: string, s: ProfileSummary): string {
  const busyMs = s.areas.reduce((n, a) => n + a.ms, 0);
  return [
    `${title}: ${busyMs.toFixed(0)} ms busy of ${s.totalMs.toFixed(0)} ms profiled`,
    `  by area: ${s.areas.map((a) => `${a.area} ${a.pct}%`).join(', ')}`,
    '  top self time:',
    ...s.top.map((t) => `    ${t.pct.toFixed(1).padStart(5)}%  ${t.fn}`),
  ].join('\n');
}

if (require.main === module) {
  const [file, n] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: cpu-profile-summary FILE.cpuprofile [N]\n');
    process.exitCode = 2;
  } else {
    const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
    process.stdout.write(`${formatSummary(file, summarize(profile, n ? Number(n) : 15))}\n`);
  }
}
