/**
 * holetest (fstests src/holetest.c: generic/340, 344, 346) at PMD size, in-process: S1,
 * S2, S3 with 2 MiB entries. The 4 KiB port is holetest.test.ts; this one maps through
 * PMD faults, as a MappedFile { huge: true } does.
 *
 * Two sessions store their own 8-byte marker into every page of one 4 MiB file at once
 * (owner 0 at offset 1024, owner 1 at 3072), each through a PmdClient: it takes a PMD
 * fault for the 2 MiB range of the page, keeps the PMD PTE (one per range) or, when the
 * fault fell back, the 4 KiB PTE of the page, and re-faults after PTE_STALE. The file is
 * sparse (holes: each range gets one aligned extent from the first PMD write fault that
 * locks it), fallocated (aligned UNWRITTEN extents, converted and zeroed by that fault),
 * or zero-filled by write(2) (WRITTEN blocks, aligned or not: PMD or NOT_CONTIGUOUS).
 * - 340: the stores only.
 * - 344: first a PMD READ fault of every page by both sessions (huge zero pages on holes
 *   and unwritten extents), then the stores; every prefault PTE is stale afterwards or
 *   shows the final bytes.
 * - 346: owner 0 uses write(2) instead of stores (4 KiB allocations under the other
 *   session's PMD faults: NOT_CONTIGUOUS fallbacks, S3 invalidation of huge zero pages).
 * The volume first held a deleted file of 0xCC, and is mounted with that canary: an
 * un-zeroed block in the file would show it (S2).
 *
 * Pass: every page holds both markers and zeros elsewhere, through read(2) and a fresh
 * session; distinct blocks; stat.blocks = pages; Inspect entries never overlap, order-9
 * MAPPED ones on aligned pfns; without write(2) every range is one PMD entry and (sparse)
 * one allocation per range, never two; fsck clean.
 */
import assert from 'node:assert/strict';
import type { Dax } from '../../server/dax/dax';
import { PMD_PAGES } from '../../server/limits';
import { assertFsckClean, freshDax, isCode, remountDax, type DaxVolume } from '../support/dax-volume';
import { MiB, PAGE } from '../support/units';
import { TestOwner } from '../support/test-owner';

const CANARY = 0xcc;
const OFFSETS = [1024, 3072] as const;
const FILE_BYTES = 4 * MiB;
const PAGES = FILE_BYTES / PAGE;
type Prep = 'zero-filled' | 'fallocated' | 'sparse';
type Variant = '340' | '344' | '346';

interface Held {
  token: string;
  writable: boolean;
  order: 0 | 9;
  pgoff: number;
}

/** What MappedFile { huge: true } does, reduced: PMD faults, 4 KiB PTEs where they fall back. */
class PmdClient {
  readonly pmd = new Map<number, Held>();
  readonly page = new Map<number, Held>();
  fallbacks = 0;

  constructor(readonly dax: Dax, readonly owner: TestOwner, readonly ino: number) {}

  private held(pg: number, writable: boolean): Held | undefined {
    const base = pg - (pg % PMD_PAGES);
    for (const h of [this.pmd.get(base), this.page.get(pg)]) if (h && (h.writable || !writable)) return h;
    return undefined;
  }

  private forget(h: Held): void {
    if (h.order === 9) {
      if (this.pmd.get(h.pgoff) === h) this.pmd.delete(h.pgoff);
    } else if (this.page.get(h.pgoff) === h) this.page.delete(h.pgoff);
  }

  private async fault(pg: number, kind: 'READ' | 'WRITE'): Promise<Held> {
    const r = await this.dax.fault(this.owner, this.ino, pg, kind, false, 'PMD');
    const p = r.pte!;
    if (r.fallback) this.fallbacks++;
    const h: Held = { token: p.token, writable: p.writable, order: p.order, pgoff: p.pgoff };
    (p.order === 9 ? this.pmd : this.page).set(p.pgoff, h);
    return h;
  }

  /** Byte offset of page pg's byte `off` within the PTE's range. */
  private at(h: Held, pg: number, off: number): number {
    return (pg - h.pgoff) * PAGE + off;
  }

  async load(pg: number, off: number, len: number): Promise<Buffer> {
    for (let attempt = 0; attempt < 64; attempt++) {
      const h = this.held(pg, false) ?? (await this.fault(pg, 'READ'));
      try {
        return this.dax.load(this.owner, h.token, this.at(h, pg, off), len);
      } catch (err) {
        if (!isCode(err, 'PTE_STALE')) throw err;
        this.forget(h);
      }
    }
    throw new Error(`load of page ${pg}: PTE_STALE 64 times in a row`);
  }

  async store(pg: number, off: number, data: Buffer): Promise<void> {
    for (let attempt = 0; attempt < 64; attempt++) {
      const h = this.held(pg, true) ?? (await this.fault(pg, 'WRITE'));
      try {
        this.dax.store(this.owner, h.token, this.at(h, pg, off), data);
        return;
      } catch (err) {
        if (!isCode(err, 'PTE_STALE')) throw err;
        this.forget(h);
      }
    }
    throw new Error(`store to page ${pg}: PTE_STALE 64 times in a row`);
  }
}

function marker(owner: 0 | 1, pg: number): Buffer {
  const m = Buffer.alloc(8);
  m.write(owner === 0 ? 'P0' : 'P1', 0, 'latin1');
  m[2] = 0xa5;
  m[3] = 0x5a;
  m.writeUInt32LE(pg, 4);
  return m;
}

function expectedPage(pg: number): Buffer {
  const p = Buffer.alloc(PAGE);
  marker(0, pg).copy(p, OFFSETS[0]);
  marker(1, pg).copy(p, OFFSETS[1]);
  return p;
}

async function prepare(prep: Prep): Promise<{ v: DaxVolume; ino: number }> {
  const v0 = await freshDax(32 * MiB, { canaryByte: CANARY });
  const junk = await v0.fs.create('junk', true);
  await v0.fs.write(junk.ino, 0, Buffer.alloc(2 * FILE_BYTES, CANARY), false);
  await v0.fs.unlink('junk');
  await v0.fs.sync();
  const v = await remountDax(v0, { canaryByte: CANARY });
  const { ino } = await v.fs.create('holetest', true);
  if (prep === 'fallocated') await v.fs.fallocate(ino, 'ALLOCATE', 0, FILE_BYTES);
  else await v.fs.truncate(ino, FILE_BYTES);
  if (prep === 'zero-filled') await v.fs.write(ino, 0, Buffer.alloc(FILE_BYTES), false);
  return { v, ino };
}

async function holetest(prep: Prep, variant: Variant): Promise<void> {
  const { v, ino } = await prepare(prep);
  const owners = [new TestOwner('client-0'), new TestOwner('client-1')];
  const clients = owners.map((o) => new PmdClient(v.dax, o, ino));
  const useWrite = variant === '346';

  const prefault: Array<Map<number, Held>> = [new Map(), new Map()];
  if (variant === '344') {
    await Promise.all(clients.flatMap((c, i) => Array.from({ length: PAGES }, async (_, pg) => {
      const b = await c.load(pg, OFFSETS[i], 1);
      assert.equal(b[0], 0, `prefault of page ${pg} reads zero`);
    })));
    for (const i of [0, 1]) for (const [base, h] of clients[i].pmd) prefault[i].set(base, h);
    if (prep !== 'zero-filled') {
      const rows = v.dax.inspect(ino, 0, PAGES - 1);
      assert.deepEqual(rows.map((e) => [e.order, e.state, e.mappers]), [[9, 'ZERO', 2], [9, 'ZERO', 2]], 'one huge zero page per range, both sessions on it');
      assert.equal(v.fs.stat(ino).blocks, prep === 'sparse' ? 0 : PAGES, 'read faults allocate nothing');
    }
  }

  await Promise.all([0, 1].flatMap((i) => Array.from({ length: PAGES }, (_, pg) => {
    const m = marker(i as 0 | 1, pg);
    if (i === 0 && useWrite) return v.fs.write(ino, pg * PAGE + OFFSETS[0], m, false);
    return clients[i].store(pg, OFFSETS[i], m);
  })));

  const all = await v.fs.read(ino, 0, FILE_BYTES);
  for (let pg = 0; pg < PAGES; pg++) {
    const got = all.subarray(pg * PAGE, (pg + 1) * PAGE);
    const want = expectedPage(pg);
    if (!got.equals(want)) {
      const k = got.findIndex((b, j) => b !== want[j]);
      assert.fail(`read(2): page ${pg} byte ${k} is 0x${got[k].toString(16)}, expected 0x${want[k].toString(16)}`);
    }
  }

  // 344: every prefault PMD PTE is stale, or still valid and showing the final bytes.
  for (const i of [0, 1]) {
    for (const [base, h] of prefault[i]) {
      try {
        const got = v.dax.load(owners[i], h.token, 0, PMD_PAGES * PAGE);
        for (let k = 0; k < PMD_PAGES; k++) {
          assert.ok(got.subarray(k * PAGE, (k + 1) * PAGE).equals(expectedPage(base + k)), `client-${i}'s prefault PMD PTE at ${base} shows stale bytes on page ${base + k}`);
        }
      } catch (err) {
        if (!isCode(err, 'PTE_STALE')) throw err;
      }
    }
  }

  const verifier = new PmdClient(v.dax, new TestOwner('verifier'), ino);
  for (let pg = 0; pg < PAGES; pg++) {
    if (!(await verifier.load(pg, 0, PAGE)).equals(expectedPage(pg))) assert.fail(`fresh load: page ${pg} differs from the expected markers`);
  }

  const pfns = new Set<number>();
  for (let pg = 0; pg < PAGES; pg++) {
    const m = v.fs.iomap(ino, pg);
    assert.equal(m.state, 'WRITTEN', `page ${pg}`);
    if (m.state === 'WRITTEN') pfns.add(m.pfn);
  }
  assert.equal(pfns.size, PAGES, 'distinct blocks in the block map');
  assert.equal(v.fs.stat(ino).blocks, PAGES);
  const rows = v.dax.inspect(ino, 0, PAGES - 1);
  let prevLast = -1;
  for (const e of rows) {
    assert.ok(e.pgoff > prevLast, `entry at ${e.pgoff} overlaps the previous one`);
    prevLast = e.pgoff + (e.order === 9 ? PMD_PAGES : 1) - 1;
    assert.ok(!e.locked && e.waiters === 0, `entry at ${e.pgoff} locked or waited on`);
    if (e.order === 9) assert.ok(e.state === 'MAPPED' && e.pfn % PMD_PAGES === 0, `PMD entry at ${e.pgoff}: ${e.state} pfn ${e.pfn}`);
  }
  if (!useWrite && prep !== 'zero-filled') {
    assert.deepEqual(rows.map((e) => [e.pgoff, e.order]), [[0, 9], [PMD_PAGES, 9]], 'every range is one PMD entry');
    assert.equal(clients[0].fallbacks + clients[1].fallbacks, 0, 'no fallback');
    const c = v.dax.counters();
    if (prep === 'sparse') assert.equal(c.faults.allocate, 2, 'one allocating PMD fault per range, never two');
    assert.ok((v.dax.spaceStats(ino)?.lockWaits ?? 0) > 0, 'precondition: the sessions contended for the PMD entry locks');
  }
  await v.dax.fsync(ino, false);
  await assertFsckClean(v, `after PMD holetest ${prep} ${variant}`);
  await v.fs.unmount();
}

describe('dax holetest at PMD size (fstests generic/340, 344, 346): S1, S2, S3', function () {
  this.timeout(120_000);
  for (const variant of ['340', '344', '346'] as Variant[]) {
    for (const prep of ['sparse', 'fallocated', 'zero-filled'] as Prep[]) {
      const what = { '340': 'stores', '344': 'PMD read prefault, then stores', '346': 'owner 0 by write(2)' }[variant];
      it(`${variant}: ${prep}, 4 MiB (${what})`, async function () {
        await holetest(prep, variant);
      });
    }
  }
});
