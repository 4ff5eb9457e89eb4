/**
 * daxd-load as a user runs it, against a real daxd on port 0: --help documents every flag
 * and workload; usage errors exit 2; a short verify run of the mixed workload (every data
 * path: Files, mappings, DMA pins, fsync) and of truncate-vs-pin pass, print their
 * summaries, and write JSON and HTML reports.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { LOAD_FLAGS } from '../../client/loadtest/load-cli';
import { WORKLOAD_NAMES } from '../../client/loadtest/load-options';
import type { RunResult } from '../../client/loadtest/runner';
import { startServer, tempDir, type StartedServer } from '../support/start-server';
import { runBin } from './run-bin';

const RUN_MS_MAX = 45_000;

describe('loadtest: daxd-load', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;

  before(async function () {
    tmp = tempDir('daxd-load-test-');
    server = await startServer({ volumePath: path.join(tmp.dir, 'load.vol'), size: '128M' });
  });

  after(async function () {
    await server?.stop();
    tmp?.remove();
  });

  it('--help documents every flag and every workload', async function () {
    const help = await runBin('daxd-load.js', ['--help'], 20_000);
    assert.equal(help.code, 0, help.stderr);
    for (const f of LOAD_FLAGS) assert.match(help.stdout, new RegExp(`--${f.name}\\b.*\\S`), `--${f.name}`);
    for (const w of WORKLOAD_NAMES) assert.match(help.stdout, new RegExp(`^  ${w} +\\S`, 'm'), w);
  });

  it('usage errors exit 2', async function () {
    for (const args of [['--bogus'], ['--workload', 'nope'], ['--qd', '0'], ['--bs', 'lots'], ['--server', 'nohostport']]) {
      const r = await runBin('daxd-load.js', args, 20_000);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    }
  });

  it('a short verify run of the mixed workload passes and prints its summary', async function () {
    const json = path.join(tmp.dir, 'mixed.json');
    const html = path.join(tmp.dir, 'mixed.html');
    const r = await runBin('daxd-load.js', [
      '--server', server.address, '--workload', 'mixed', '--clients', '2', '--qd', '4', '--size', '8M', '--files', '2',
      '--duration', '3s', '--verify', '--seed', '11', '--json', json, '--report', html, '--interval', '500ms',
    ], RUN_MS_MAX);
    process.stdout.write(`${r.stdout}`);
    assert.equal(r.timedOut, false);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /p50 +p90 +p99 +p99\.9 +max/);
    assert.match(r.stdout, /verify: \d+ pages stamped, \d+ pages checked, 0 mismatch/);
    assert.match(r.stderr, /daxd-load mixed \[/, 'a progress bar');
    const result = JSON.parse(fs.readFileSync(json, 'utf8')) as RunResult;
    assert.equal(result.passed, true);
    assert.ok(result.verify.pagesChecked > 0 && result.verify.pagesStamped > 0);
    for (const kind of ['read', 'write', 'load', 'store', 'pin-cycle']) assert.ok(result.kinds.some((k) => k.kind === kind && k.ops > 0), kind);
    assert.ok(result.series.length >= 3, 'a time series');
    const page = fs.readFileSync(html, 'utf8');
    assert.match(page, /<svg[^>]*aria-label="Throughput over time"/);
    assert.match(page, /<svg[^>]*aria-label="Latency distribution/);
    assert.doesNotMatch(page, /<script|src=|href=/, 'self-contained');
    // Every point of the series covers at least half an --interval (500 ms): a last sliver
    // (a few ms while requests drained) is no point of its own, it read as a collapse.
    let previous = 0;
    for (const point of result.series) {
      assert.ok(point.t - previous >= 0.25, `a point covering ${Math.round((point.t - previous) * 1000)} ms: ${JSON.stringify(result.series.map((p) => p.t))}`);
      previous = point.t;
    }
    // Each chart's legend: one distinct colour per line ("total" not sharing one with a kind).
    for (const svg of page.match(/<svg[\s\S]*?<\/svg>/g) ?? []) {
      const legend = [...svg.matchAll(/<line [^>]*stroke="([^"]+)"[^>]*\/><text [^>]*>([^<]+)<\/text>/g)].map((m) => [m[2], m[1]]);
      const colours = new Set(legend.map(([, colour]) => colour));
      assert.equal(colours.size, legend.length, `legend colours: ${JSON.stringify(legend)}`);
    }
    assert.ok(/aria-label="Latency distribution[\s\S]*?>total</.test(page), 'the spectrum has a total line');
    // Kinds that move no bytes (fsync, pin, unpin) say so with a dash, not "0.00 B/s".
    assert.doesNotMatch(page, /0\.00 B\/s/);
    const fsyncRow = /<tr><td>fsync<\/td>(<td>[^<]*<\/td>)+<\/tr>/.exec(page)?.[0] ?? '';
    assert.match(fsyncRow, /<td>\u2014<\/td>/, fsyncRow);
    assert.doesNotMatch(r.stdout, /0\.00 B\/s/, 'the text summary too');
  });

  it('a short verify run of truncate-vs-pin passes (pins never see their blocks change)', async function () {
    const r = await runBin('daxd-load.js', [
      '--server', server.address, '--workload', 'truncate-vs-pin', '--qd', '8', '--size', '4M', '--bs', '8k',
      '--ops', '400', '--duration', '10s', '--verify', '--seed', '12', '--no-progress',
    ], RUN_MS_MAX);
    process.stdout.write(`${r.stdout}`);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /pin-cycle/);
    assert.match(r.stdout, /PASSED/);
  });
});
