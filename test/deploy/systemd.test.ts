/**
 * deploy/systemd/daxd.service: `systemd-analyze verify` finds nothing to say (an unknown
 * or misspelt key is a warning there, so the output must be empty), `systemd-analyze
 * security --offline` rates its exposure, and the hardening the deployment promises is
 * there: the volume's directory is the one writable path.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { serveArgsFromEnv } from '../../cli/container';
import { tempDir } from '../support/start-server';
import { DEPLOY_DIR, run } from './support';

const UNIT = path.join(DEPLOY_DIR, 'systemd', 'daxd.service');
const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze';
/** systemd-analyze security's scale: 0 (locked down) .. 10 (exposed); below 2 rates "OK". */
const EXPOSURE_MAX = 2;

/** The unit's [Service] keys: every value of each (Environment= and the like repeat). */
function serviceKeys(text: string): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1];
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `not KEY=VALUE: ${line}`);
    if (section !== 'Service') continue;
    const key = line.slice(0, eq);
    keys.set(key, [...(keys.get(key) ?? []), line.slice(eq + 1)]);
  }
  return keys;
}

async function verify(unit: string): Promise<string> {
  const result = await run(SYSTEMD_ANALYZE, ['verify', unit]);
  assert.ok(result.code !== null, 'systemd-analyze ran');
  return `${result.stdout}${result.stderr}`.trim();
}

describe('deploy: systemd unit', function () {
  this.timeout(60_000);

  it('systemd-analyze verify has nothing to say about it, and does about a misspelt key', async function () {
    assert.ok(fs.existsSync(SYSTEMD_ANALYZE), `${SYSTEMD_ANALYZE} (Debian package systemd) is installed`);
    assert.equal(await verify(UNIT), '');
    const tmp = tempDir('daxd-unit-');
    try {
      const misspelt = path.join(tmp.dir, 'daxd.service');
      fs.writeFileSync(misspelt, fs.readFileSync(UNIT, 'utf8').replace('ProtectSystem=strict', 'ProtectSytem=strict'));
      assert.match(await verify(misspelt), /Unknown key 'ProtectSytem'/);
    } finally {
      tmp.remove();
    }
  });

  it('systemd-analyze security rates its exposure OK', async function () {
    const result = await run(SYSTEMD_ANALYZE, ['security', '--offline=yes', '--no-pager', UNIT]);
    const level = /Overall exposure level for daxd\.service: ([\d.]+)/.exec(result.stdout + result.stderr);
    assert.ok(level, result.stdout + result.stderr);
    assert.ok(Number(level[1]) < EXPOSURE_MAX, `exposure ${level[1]}`);
  });

  it('is hardened: read-only system, the volume\'s directory the only writable path, no new privileges, no capabilities', function () {
    const keys = serviceKeys(fs.readFileSync(UNIT, 'utf8'));
    const one = (key: string) => {
      const values = keys.get(key);
      assert.ok(values, `${key}= is set`);
      return values[values.length - 1];
    };
    assert.equal(one('ProtectSystem'), 'strict');
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.equal(one('PrivateTmp'), 'yes');
    assert.equal(one('ProtectHome'), 'yes');
    assert.equal(one('DynamicUser'), 'yes');
    assert.equal(one('CapabilityBoundingSet'), '');
    assert.equal(keys.get('MemoryDenyWriteExecute'), undefined, "V8's JIT needs W^X off");
    const env = Object.fromEntries((keys.get('Environment') ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
    assert.doesNotThrow(() => serveArgsFromEnv(env));
    const writable = one('ReadWritePaths').split(/\s+/);
    assert.deepEqual(writable, [`/var/lib/${one('StateDirectory')}`]);
    assert.equal(path.dirname(env.DAXD_VOLUME), writable[0], 'the volume lies in the writable directory');
    assert.match(one('ExecStart'), /^\/usr\/bin\/node \/opt\/daxd\/bin\/daxd-container\.js serve$/);
    assert.equal(one('KillSignal'), 'SIGTERM');
    assert.equal(one('RestartPreventExitStatus'), '2');
  });
});
