/**
 * daxd-fsx against a real daxd on port 0: --help documents every flag and op, and a
 * bounded run (a fixed seed, < 30 s) passes and prints its summary. A failure prints the
 * seed and the ops before it: rerun `daxd-fsx --seed N` with the same options to replay.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { FSX_FLAGS } from '../../client/loadtest/fsx/fsx-cli';
import { FSX_OP_NAMES } from '../../client/loadtest/fsx/fsx-ops';
import { startServer, tempDir, type StartedServer } from '../support/start-server';
import { runBin } from './run-bin';

/** Fixed, so that CI runs the same sequence; DAXD_FSX_SEED picks another. */
const SEED = process.env.DAXD_FSX_SEED ?? '20261121';

describe('loadtest: daxd-fsx', function () {
  this.timeout(90_000);
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;

  before(async function () {
    tmp = tempDir('daxd-fsx-test-');
    server = await startServer({ volumePath: path.join(tmp.dir, 'fsx.vol'), size: '64M' });
  });

  after(async function () {
    await server?.stop();
    tmp?.remove();
  });

  it('--help documents every flag and every op', async function () {
    const help = await runBin('daxd-fsx.js', ['--help'], 20_000);
    assert.equal(help.code, 0, help.stderr);
    for (const f of FSX_FLAGS) assert.match(help.stdout, new RegExp(`--${f.name}\\b.*\\S`), `--${f.name}`);
    for (const op of FSX_OP_NAMES) assert.match(help.stdout, new RegExp(`^  ${op} +\\d+ +\\S`, 'm'), op);
  });

  it('a bounded run (1500 ops, 3 sessions, < 30 s) passes and prints its summary', async function () {
    const r = await runBin('daxd-fsx.js', ['--server', server.address, '--seed', SEED, '--ops', '1500', '--duration', '25s', '--sessions', '3'], 40_000);
    process.stdout.write(r.stdout);
    assert.equal(r.timedOut, false);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^daxd-fsx: PASSED \d+ ops/m);
    for (const op of ['write', 'mapwrite', 'cowwrite', 'collapse', 'pin', 'pinfail']) assert.match(r.stdout, new RegExp(`\\b${op} \\d+`), op);
    // Not a terminal: the progress bar prints plain lines as it goes, and a last one at the end.
    assert.match(r.stderr, /^daxd-fsx \[[^\]]*\] 100% \| 1500\/1500 ops \| [\d.]+ s \| \d+ ops\/s$/m, r.stderr);
  });
});
