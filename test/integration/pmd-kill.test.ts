/**
 * A MAP_SYNC PMD write fault survives kill -9 of the server (S6): a daxd child process
 * (test/support/start-server), a PMD WRITE fault with sync on a sparse file, SIGKILL right
 * after the reply, no fsync. After a restart the 2 MiB extent is allocated: a PMD READ
 * fault maps the same aligned pfn (not the huge zero page), the file's block count holds
 * it, and it reads as zeros where nothing was stored (S2). The control: a plain PMD write
 * fault on the other 2 MiB, taken after the sync one, is not committed, so that range is a
 * hole again (the check can fail). Then a graceful stop and fsck.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import type { FaultResponse__Output } from '../../wire/generated/daxd/v1/FaultResponse';
import { PMD_BYTES, PMD_PAGES } from '../../wire/limits';
import { openRawSession, type RawMapping } from './mapping-fixture';
import { call, rawClients } from '../support/raw-rpc';
import { clientFor, fsckFindings, startServer, tempDir, type StartedServer } from '../support/start-server';
import { MiB } from '../support/units';

describe('MAP_SYNC PMD write fault + kill -9 of the server', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  const running = new Set<StartedServer>();

  beforeEach(function () {
    tmp = tempDir('daxd-pmd-kill-');
  });

  afterEach(async function () {
    for (const s of running) await s.kill('SIGKILL');
    tmp.remove();
  });

  async function start(): Promise<StartedServer> {
    const s = await startServer({ volumePath: path.join(tmp.dir, 'v.vol') });
    running.add(s);
    void s.exited.then(() => running.delete(s));
    return s;
  }

  function fault(raw: ReturnType<typeof rawClients>, s: RawMapping, ino: number, pgoff: number, kind: 'READ' | 'WRITE', sync: boolean): Promise<FaultResponse__Output> {
    return call((cb) => raw.mapping.Fault({ session_id: s.sessionId, ino, pgoff, kind, sync, size: 'PMD' }, cb));
  }

  it('the 2 MiB extent of a MAP_SYNC PMD write fault is allocated after SIGKILL and restart; a plain one is not', async function () {
    const first = await start();
    let client = clientFor(first);
    const { ino } = await client.create('pmd-sync', { exclusive: true });
    await client.truncate(ino, 4 * MiB);
    await client.fsync(ino);
    let raw = rawClients(first.address);
    const s = await openRawSession(raw, 0, 'pmd-sync');
    const w = await fault(raw, s, ino, PMD_PAGES + 3, 'WRITE', true);
    assert.deepEqual([w.pte!.size, w.pte!.pgoff, w.pte!.writable, w.pte!.fallback_reason], ['PMD', String(PMD_PAGES), true, '']);
    const pfn = Number(w.pte!.pfn);
    assert.ok(pfn !== 0 && pfn % PMD_PAGES === 0, `aligned pfn ${pfn}`);
    const plain = await fault(raw, s, ino, 0, 'WRITE', false);
    assert.equal(plain.pte!.size, 'PMD');
    raw.close();
    client.close();
    assert.deepEqual(await first.kill('SIGKILL'), { code: null, signal: 'SIGKILL' });

    const second = await start();
    client = clientFor(second);
    raw = rawClients(second.address);
    const s2 = await openRawSession(raw, 0, 'after');
    assert.equal((await client.stat(ino)).blocks, PMD_PAGES, 'the sync extent only: the plain fault was never committed');
    const r = await fault(raw, s2, ino, PMD_PAGES, 'READ', false);
    assert.deepEqual([r.pte!.size, r.pte!.pgoff, Number(r.pte!.pfn), r.pte!.fallback_reason], ['PMD', String(PMD_PAGES), pfn, ''], 'the same aligned extent');
    assert.equal((await client.read(ino, PMD_BYTES, PMD_BYTES)).findIndex((b) => b !== 0), -1, 'zeroed (S2)');
    const control = await fault(raw, s2, ino, 0, 'READ', false);
    assert.deepEqual([control.pte!.size, control.pte!.pfn], ['PMD', '0'], 'control: the plain fault\'s range is a hole again');
    raw.close();
    client.close();
    assert.deepEqual(await second.stop(), { code: 0, signal: null });
    assert.deepEqual(await fsckFindings(second.volumePath), []);
  });
});
