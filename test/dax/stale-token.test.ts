/**
 * The token fence (S7, S4's revocation, S5's downgrade): Load and Store check the PTE token
 * on every access, so correctness never depends on a client having seen an Invalidate.
 * - Tokens are refused with PTE_STALE after truncate, punch hole, zero range, collapse,
 *   and (stores) after a writeback downgrade; a refused access changes nothing.
 * - A token presented by another session gets what a made-up token gets (PTE_STALE):
 *   its holder learns nothing, and nothing changes.
 * - Session end drops every PTE of the session (tokens stale, Inspect mappers 0).
 * - Accesses stay inside the token's page.
 */
import assert from 'node:assert/strict';
import type { FallocateMode } from '../../server/fs/types';
import { pageAccess } from '../../server/rpc/validate';
import { expectCode, freshDax, isCode, sparseFile, writtenFile, type DaxVolume } from '../support/dax-volume';
import { PAGE } from '../support/units';
import { reached, track } from '../support/track';
import { TestClient, TestOwner } from '../support/test-owner';

interface Mapped {
  v: DaxVolume;
  ino: number;
  a: TestOwner;
  read: string[];
  write: string[];
}

/** A 4-page written file; owner a holds a read PTE and a writable PTE on every page. */
async function mapped(): Promise<Mapped> {
  const v = await freshDax();
  const ino = await writtenFile(v, 'f', 4, (pg) => 0x10 + pg);
  const a = new TestOwner('a');
  const b = new TestOwner('b-reader');
  const read: string[] = [];
  const write: string[] = [];
  for (let pg = 0; pg < 4; pg++) {
    read.push((await v.dax.fault(b, ino, pg, 'READ', false)).pte!.token);
    write.push((await v.dax.fault(a, ino, pg, 'WRITE', false)).pte!.token);
  }
  return { v, ino, a, read, write };
}

async function assertStale(m: Mapped, pg: number, what: string): Promise<void> {
  const b = { id: 'b-reader' } as TestOwner;
  await expectCode(() => m.v.dax.load(b, m.read[pg], 0, 1), 'PTE_STALE', `${what}: read PTE on page ${pg}`);
  await expectCode(() => m.v.dax.load(m.a, m.write[pg], 0, 1), 'PTE_STALE', `${what}: load through writable PTE on page ${pg}`);
  await expectCode(() => m.v.dax.store(m.a, m.write[pg], 0, Buffer.from('x')), 'PTE_STALE', `${what}: store on page ${pg}`);
}

function assertValid(m: Mapped, pg: number, expectByte: number, what: string): void {
  const b = { id: 'b-reader' } as TestOwner;
  assert.equal(m.v.dax.load(b, m.read[pg], 0, 1)[0], expectByte, `${what}: read PTE on page ${pg}`);
  assert.equal(m.v.dax.load(m.a, m.write[pg], 0, 1)[0], expectByte, `${what}: writable PTE on page ${pg}`);
}

describe('dax token fence: stale and foreign tokens (S7)', function () {
  this.timeout(30_000);

  it('truncate: PTEs at and past the new EOF page are stale, earlier ones keep working', async function () {
    const m = await mapped();
    await m.v.fs.truncate(m.ino, PAGE + 10);
    for (const pg of [1, 2, 3]) await assertStale(m, pg, 'truncate');
    assertValid(m, 0, 0x10, 'truncate');
    assert.deepEqual(m.a.events.map((e) => [e.reason, e.firstPgoff, e.lastPgoff]), [['TRUNCATE', 1, 3]]);
    // The refused store changed nothing; the page past EOF faults SIGBUS.
    assert.equal((await m.v.fs.read(m.ino, PAGE, 10)).toString('hex'), '11'.repeat(10));
    await expectCode(() => m.v.dax.fault(m.a, m.ino, 2, 'READ', false), 'SIGBUS', 'fault past EOF');
  });

  for (const [mode, expectByte] of [['PUNCH_HOLE', 0], ['ZERO_RANGE', 0], ['COLLAPSE_RANGE', 0x12]] as Array<[FallocateMode, number]>) {
    it(`${mode} of page 1: its PTEs are stale (and, for collapse, every later one); the page reads right after a re-fault`, async function () {
      const m = await mapped();
      await m.v.fs.fallocate(m.ino, mode, PAGE, PAGE);
      await assertStale(m, 1, mode);
      assertValid(m, 0, 0x10, mode);
      if (mode === 'COLLAPSE_RANGE') {
        for (const pg of [2, 3]) await assertStale(m, pg, mode);
      } else {
        for (const pg of [2, 3]) assertValid(m, pg, 0x10 + pg, mode);
      }
      const ev = m.a.events.map((e) => [e.reason, e.firstPgoff, e.lastPgoff]);
      assert.deepEqual(ev, [[mode, 1, mode === 'COLLAPSE_RANGE' ? 3 : 1]]);
      const c = new TestClient(m.v.dax, m.a);
      assert.equal((await c.load(m.ino, PAGE, 1))[0], expectByte, 'a re-fault shows the new layout');
    });
  }

  it('writeback downgrade: a writable token cannot store after msync; the store changes nothing', async function () {
    const m = await mapped();
    await m.v.dax.msync(m.ino, 0, 3);
    for (let pg = 0; pg < 4; pg++) {
      await expectCode(() => m.v.dax.store(m.a, m.write[pg], 0, Buffer.from([0xff])), 'PTE_STALE', `store on page ${pg}`);
      assert.equal((await m.v.fs.read(m.ino, pg * PAGE, 1))[0], 0x10 + pg);
    }
  });

  it('a store through a read-only PTE is refused with PTE_STALE and changes nothing', async function () {
    const m = await mapped();
    const b = { id: 'b-reader' } as TestOwner;
    await expectCode(() => m.v.dax.store(b, m.read[0], 0, Buffer.from([0xff])), 'PTE_STALE', 'store through a read PTE');
    assert.equal((await m.v.fs.read(m.ino, 0, 1))[0], 0x10);
  });

  it("another session's token: PTE_STALE, as a made-up token, nothing read or changed", async function () {
    const m = await mapped();
    const thief = new TestOwner('thief');
    await expectCode(() => m.v.dax.load(thief, m.write[0], 0, 8), 'PTE_STALE', 'foreign load');
    await expectCode(() => m.v.dax.store(thief, m.write[0], 0, Buffer.from([0xff])), 'PTE_STALE', 'foreign store');
    assert.equal((await m.v.fs.read(m.ino, 0, 1))[0], 0x10);
    assert.equal(m.v.dax.load(m.a, m.write[0], 0, 1)[0], 0x10, "the owner's token still works");
    await expectCode(() => m.v.dax.load(m.a, 'AAAAAAAAAAAAAAAAAAAAAA', 0, 1), 'PTE_STALE', 'a made-up token');
  });

  it('session end drops all its PTEs: tokens stale, Inspect mappers 0, other sessions unaffected', async function () {
    const m = await mapped();
    assert.equal(m.a.attached, 1, 'one mapping resource attached');
    await m.a.end();
    assert.equal(m.a.attached, 0);
    for (let pg = 0; pg < 4; pg++) {
      await expectCode(() => m.v.dax.load(m.a, m.write[pg], 0, 1), 'PTE_STALE', `page ${pg} after session end`);
      await expectCode(() => m.v.dax.store(m.a, m.write[pg], 0, Buffer.from([1])), 'PTE_STALE', `store on page ${pg} after session end`);
    }
    const b = { id: 'b-reader' } as TestOwner;
    for (let pg = 0; pg < 4; pg++) assert.equal(m.v.dax.load(b, m.read[pg], 0, 1)[0], 0x10 + pg);
    assert.ok(m.v.dax.inspect(m.ino, 0, 3).every((e) => e.mappers === 1), "only the other session's PTEs remain");
    assert.equal(m.v.dax.stats().ptes, 4);
    // An ended session cannot fault again (its attach throws): nothing is left installed.
    await expectCode(() => m.v.dax.fault(m.a, m.ino, 0, 'READ', false), 'SESSION_EXPIRED', 'fault after end');
    assert.ok(m.v.dax.inspect(m.ino, 0, 3).every((e) => e.mappers === 1 && !e.locked));
  });

  it('session end of the only mapper: mappers 0 and the address space can go', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 2 * PAGE);
    const a = new TestOwner('a');
    const c = new TestClient(v.dax, a);
    await c.load(ino, 0, 1);
    await c.store(ino, PAGE, Buffer.from('x'));
    await v.dax.fsync(ino, false); // clean: nothing keeps the address space but the PTEs
    await a.end();
    assert.ok(v.dax.inspect(ino, 0, 1).every((e) => e.mappers === 0));
    assert.equal(v.dax.spaceStats(ino) !== null, false, 'an idle address space is dropped');
    assert.equal(v.dax.stats().ptes, 0);
  });

  for (const kind of ['READ', 'WRITE'] as const) {
    for (const ending of ['session end', 'unmap'] as const) {
      it(`${ending} while a ${kind} fault is paused before installing: no PTE outlives it`, async function () {
        const v = await freshDax();
        const ino = await sparseFile(v, 'f', 2 * PAGE);
        const a = new TestOwner('a');
        const keep = await v.dax.fault(a, ino, 1, 'READ', false); // the session already maps the file
        const fp = v.dax.failpoints.arm('fault:before-install', { ino, pgoff: 0 });
        const fault = track(v.dax.fault(a, ino, 0, kind, false));
        await reached(fp, fault.promise, 'fault:before-install');
        if (ending === 'session end') await a.end();
        else v.dax.unmap(a, ino, 0, 1);
        assert.equal(a.attached, 0, 'nothing attached after the session ended / the file was unmapped');
        fp.release();
        let token: string | undefined;
        try {
          token = (await fault.promise).pte!.token;
        } catch (err) {
          assert.ok(ending === 'session end' && isCode(err, 'SESSION_EXPIRED'), `the fault failed with ${String(err)}`);
        }
        await expectCode(() => v.dax.load(a, keep.pte!.token, 0, 1), 'PTE_STALE', 'the PTE taken before');
        if (ending === 'session end') {
          // A fault completing after its session ended must leave nothing behind (S7).
          if (token !== undefined) await expectCode(() => v.dax.load(a, token!, 0, 1), 'PTE_STALE', 'the late PTE');
          assert.ok(v.dax.inspect(ino, 0, 1).every((e) => e.mappers === 0), 'Inspect: mappers 0');
          assert.equal(v.dax.stats().ptes, 0, 'no PTE left in the table');
          assert.equal(a.attached, 0, 'nothing attached to the ended session');
        } else {
          // After an unmap the session may map again: the new PTE must be attached to it.
          assert.ok(token !== undefined);
          assert.equal(a.attached, 1, 'the late PTE belongs to a mapping attached to the session');
          await a.end();
          await expectCode(() => v.dax.load(a, token!, 0, 1), 'PTE_STALE', 'the late PTE after session end');
          assert.equal(v.dax.stats().ptes, 0, 'no PTE left in the table');
        }
      });
    }
  }

  it('unmap drops only the range asked for, and detaches the mapping when none is left', async function () {
    const m = await mapped();
    m.v.dax.unmap(m.a, m.ino, 1, 2);
    for (const pg of [1, 2]) await expectCode(() => m.v.dax.load(m.a, m.write[pg], 0, 1), 'PTE_STALE', `unmapped page ${pg}`);
    for (const pg of [0, 3]) assert.equal(m.v.dax.load(m.a, m.write[pg], 0, 1)[0], 0x10 + pg);
    assert.equal(m.a.attached, 1);
    m.v.dax.unmap(m.a, m.ino, 0, 3);
    assert.equal(m.a.attached, 0, 'the mapping resource is detached once empty');
  });

  it('accesses stay inside the token\'s page: out-of-page, negative or fractional offsets and lengths are EINVAL', async function () {
    const v = await freshDax();
    // Two files' blocks: an access escaping the page of one would reach the other's block.
    const f = await writtenFile(v, 'f', 1, () => 0x11);
    const g = await writtenFile(v, 'g', 1, () => 0x22);
    const pf = (v.fs.iomap(f, 0) as { pfn: number }).pfn;
    const pg = (v.fs.iomap(g, 0) as { pfn: number }).pfn;
    const delta = Math.abs(pf - pg) * PAGE; // a negative offset of -delta reaches the other block
    const a = new TestOwner('a');
    const hi = pf > pg ? f : g; // the file whose block comes second: negative offsets reach the other
    const { pte } = await v.dax.fault(a, hi, 0, 'WRITE', false);
    const t = pte!.token;
    // Through the edge's check, as every caller (server/rpc/validate.ts pageAccess refuses
    // out-of-page ranges; the engine asserts them).
    const load = (offset: number, length: number) => {
      const r = pageAccess(offset, length);
      return v.dax.load(a, t, r.offset, r.length);
    };
    const store = (offset: number, data: Buffer) => v.dax.store(a, t, pageAccess(offset, data.length).offset, data);
    await expectCode(() => load(PAGE - 4, 8), 'EINVAL', 'load crossing the page end');
    await expectCode(() => store(PAGE, Buffer.from([1])), 'EINVAL', 'store at the page end');
    await expectCode(() => load(-8, 8), 'EINVAL', 'load at a negative offset');
    await expectCode(() => load(-delta, 8), 'EINVAL', "load at the other file's block");
    await expectCode(() => store(-delta, Buffer.alloc(8, 0xee)), 'EINVAL', "store at the other file's block");
    await expectCode(() => load(0, -1), 'EINVAL', 'negative length');
    await expectCode(() => load(0.5, 4), 'EINVAL', 'fractional offset');
    const lo = hi === f ? g : f;
    assert.deepEqual(await v.fs.read(lo, 0, PAGE), Buffer.alloc(PAGE, lo === f ? 0x11 : 0x22), 'the neighbouring file is untouched');
    assert.deepEqual(v.dax.load(a, t, 0, 0), Buffer.alloc(0), 'an empty access inside the page is fine');
    assert.deepEqual(v.dax.load(a, t, PAGE - 1, 1), Buffer.from([hi === f ? 0x11 : 0x22]));
  });
});
