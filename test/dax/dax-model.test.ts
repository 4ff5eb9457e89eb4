/**
 * Property test of the dax layer against a byte-array model (fast-check).
 *
 * One file of up to 8 pages, three sessions (TestClients that cache PTE tokens and ignore
 * Invalidate notices, except session 2, which drops PTEs on notices as the SDK will).
 * Random sequences of:
 * - sequential steps: faults (READ / WRITE / COW), loads, stores, fs.write, fs.read,
 *   truncate, fallocate (ALLOCATE, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE, COLLAPSE_RANGE),
 *   msync, fsync, unmap, session end;
 * - concurrent batches: faults and stores of all three sessions, a session end or unmap,
 *   an msync or fsync, plus at most one file operation (write, truncate, punch, zero range,
 *   preallocation), all started at once, each
 *   after a random number of microtask or event-loop turns, so they interleave at every
 *   await of the fault, S3 invalidation, layout-break and journal paths. Stores in a batch
 *   touch distinct pages, inside the file before and after, and bytes the file operation
 *   does not touch, so the model's outcome does not depend on the interleaving. Half of the
 *   batches also arm one failpoint (on the batch's hot page, or anywhere in the file) and
 *   release it after a random delay, holding one request at a chosen point meanwhile.
 *
 * Model semantics (Linux's): holes and preallocated pages read as zeros; bytes past EOF in
 * the last page read as zeros; a fault at or past the EOF page is SIGBUS (either outcome is
 * accepted for a fault racing a size change); a COW copy is the page before or after the
 * batch's concurrent changes.
 *
 * Checked after every step: every cached PTE of every session either is refused with
 * PTE_STALE or loads exactly the model's page (so a load through any token, stale ones
 * re-faulting, returns the model's bytes); no PTE survives past EOF or its session; every entry agrees
 * with the block map (MAPPED -> that WRITTEN block, ZERO -> a hole or unwritten page), none
 * is left locked, EMPTY or with waiters; every writable PTE sits on a DIRTY entry. At the
 * end: the whole file through read(2) and through a fresh session, and fsck (when built).
 *
 * Reproduce a failure: DAXD_FC_SEED=<seed> DAXD_FC_PATH=<path> (printed by fast-check).
 * More runs: DAXD_FC_RUNS_FACTOR=10.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Dax } from '../../server/dax/dax';
import type { FaultKind } from '../../server/dax/fault';
import type { FailpointName } from '../../server/dax/failpoints';
import type { FallocateMode } from '../../server/fs/types';
import { assertFsckClean, freshDax, isCode, type DaxVolume } from '../support/dax-volume';
import { PAGE } from '../support/units';
import { TestClient, TestOwner } from '../support/test-owner';

const MAX_PAGES = 8;
const MAX_BYTES = MAX_PAGES * PAGE;
const CLIENTS = 3;

type Delay = { micro: number } | { macro: number };
type FsOp =
  | { t: 'write'; at: number; len: number; fill: number }
  | { t: 'truncate'; size: number }
  | { t: 'fallocate'; mode: FallocateMode; at: number; len: number };
type Op =
  | { t: 'fault'; c: number; pg: number; kind: FaultKind }
  | { t: 'load'; c: number; at: number; len: number }
  | { t: 'store'; c: number; at: number; len: number; fill: number }
  | { t: 'read'; at: number; len: number }
  | { t: 'msync'; first: number; last: number }
  | { t: 'fsync' }
  | { t: 'unmap'; c: number; first: number; last: number }
  | { t: 'end'; c: number }
  | FsOp
  | {
      t: 'batch';
      fsOp: { op: FsOp; delay: Delay } | null;
      /** A writeback of the file racing the rest. */
      sync: { kind: 'msync' | 'fsync'; delay: Delay } | null;
      /** A failpoint armed on the hot page, released after its delay: widens one race window. */
      pause: { point: FailpointName; onHotPage: boolean; release: Delay } | null;
      hot: number;
      faults: Array<{ c: number; pg: number; kind: FaultKind; delay: Delay }>;
      stores: Array<{ c: number; at: number; len: number; fill: number; delay: Delay }>;
      /** Session ends and unmaps racing the rest (S7: no PTE may outlive its session). */
      ends: Array<{ c: number; delay: Delay }>;
      unmaps: Array<{ c: number; first: number; last: number; delay: Delay }>;
    };

const pagesOf = (size: number): number => Math.ceil(size / PAGE);

function pattern(fill: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (fill + i * 31) & 0xff || 1;
  return b;
}

class Model {
  bytes = new Uint8Array(0);

  get size(): number {
    return this.bytes.length;
  }

  resize(size: number): void {
    const next = new Uint8Array(size);
    next.set(this.bytes.subarray(0, Math.min(size, this.size)));
    this.bytes = next;
  }

  write(off: number, data: Uint8Array): void {
    if (off + data.length > this.size) this.resize(off + data.length);
    this.bytes.set(data, off);
  }

  zero(from: number, to: number): void {
    this.bytes.fill(0, Math.min(from, this.size), Math.min(to, this.size));
  }

  page(pg: number): Buffer {
    const p = Buffer.alloc(PAGE);
    const from = pg * PAGE;
    if (from < this.size) p.set(this.bytes.subarray(from, Math.min(from + PAGE, this.size)));
    return p;
  }

  clone(): Model {
    const m = new Model();
    m.bytes = this.bytes.slice();
    return m;
  }

  apply(op: FsOp): void {
    if (op.t === 'write') this.write(op.at, pattern(op.fill, op.len));
    else if (op.t === 'truncate') this.resize(op.size);
    else {
      const end = op.at + op.len;
      switch (op.mode) {
        case 'ALLOCATE': if (end > this.size) this.resize(end); break;
        case 'KEEP_SIZE': break;
        case 'PUNCH_HOLE': this.zero(op.at, end); break;
        case 'ZERO_RANGE': this.zero(op.at, end); if (end > this.size) this.resize(end); break;
        case 'COLLAPSE_RANGE': {
          const next = new Uint8Array(this.size - op.len);
          next.set(this.bytes.subarray(0, op.at));
          next.set(this.bytes.subarray(end), op.at);
          this.bytes = next;
          break;
        }
      }
    }
  }
}

/** Bytes an fs op changes (stores in the same batch must avoid them): [from, to). */
function touched(op: FsOp, sizeBefore: number): [number, number] {
  if (op.t === 'write') return [op.at, op.at + op.len];
  if (op.t === 'truncate') return [Math.min(op.size, sizeBefore), Infinity];
  if (op.mode === 'PUNCH_HOLE' || op.mode === 'ZERO_RANGE') return [op.at, op.at + op.len];
  return [sizeBefore, Infinity]; // preallocation: only the zeroing past the old EOF
}

// ---- resolving raw generated numbers against the current size ----------------------------

function resolveFsOp(raw: FsOp, size: number, inBatch: boolean): FsOp | null {
  if (raw.t === 'write') {
    const at = raw.at % MAX_BYTES;
    return { ...raw, at, len: 1 + (raw.len % Math.min(MAX_BYTES - at, 3 * PAGE)) };
  }
  if (raw.t === 'truncate') return { t: 'truncate', size: raw.size % (MAX_BYTES + 1) };
  if (raw.mode === 'COLLAPSE_RANGE') {
    if (inBatch) return null;
    const k = Math.floor((size - 1) / PAGE);
    if (size <= PAGE || k < 1) return null;
    const offPg = raw.at % k;
    const lenPg = 1 + (raw.len % (k - offPg));
    return { ...raw, at: offPg * PAGE, len: lenPg * PAGE };
  }
  const at = raw.at % MAX_BYTES;
  return { ...raw, at, len: 1 + (raw.len % (MAX_BYTES - at)) };
}

// ---- the system under test ------------------------------------------------------------------

interface World {
  v: DaxVolume;
  ino: number;
  model: Model;
  clients: TestClient[];
  /** Clients whose session ended: every token they hold must be refused. */
  dead: TestClient[];
  generation: number[];
}

function newClient(w: World, c: number): TestClient {
  w.generation[c]++;
  return new TestClient(w.v.dax, new TestOwner(`s${c}.${w.generation[c]}`), c === 2);
}

async function runFsOp(w: World, op: FsOp): Promise<void> {
  if (op.t === 'write') await w.v.fs.write(w.ino, op.at, pattern(op.fill, op.len), false);
  else if (op.t === 'truncate') await w.v.fs.truncate(w.ino, op.size);
  else await w.v.fs.fallocate(w.ino, op.mode, op.at, op.len);
}

async function wait(d: Delay): Promise<void> {
  if ('micro' in d) for (let i = 0; i < d.micro; i++) await Promise.resolve();
  else for (let i = 0; i < d.macro; i++) await new Promise((r) => setImmediate(r));
}

/** A fault expected to succeed iff pg is inside the file (either, if the size changed concurrently). */
function checkSigbus(err: unknown, pg: number, sizes: number[], what: string): void {
  const inside = pg < pagesOf(Math.min(...sizes));
  if (!isCode(err, 'SIGBUS')) throw err;
  assert.ok(!inside, `${what}: SIGBUS on page ${pg} inside the file (sizes ${sizes.join(' -> ')})`);
}

async function step(w: World, op: Op): Promise<void> {
  const { v, ino, model } = w;
  switch (op.t) {
    case 'fault': {
      const cl = w.clients[op.c];
      const pages = pagesOf(model.size);
      try {
        if (op.kind === 'COW') {
          const { data, pte } = await v.dax.fault(cl.owner, ino, op.pg, 'COW', false);
          assert.equal(pte, undefined);
          assert.deepEqual(data, model.page(op.pg), `COW copy of page ${op.pg}`);
        } else {
          await cl.fault(ino, op.pg, op.kind);
        }
        assert.ok(op.pg < pages, `fault on page ${op.pg} past EOF (size ${model.size}) succeeded`);
      } catch (err) {
        checkSigbus(err, op.pg, [model.size], 'fault');
      }
      return;
    }
    case 'load': {
      const pages = pagesOf(model.size);
      const cl = w.clients[op.c];
      if (pages === 0) {
        await assert.rejects(cl.load(ino, 0, 1), (err: unknown) => isCode(err, 'SIGBUS'));
        return;
      }
      const at = op.at % (pages * PAGE);
      const len = Math.min(op.len, PAGE - (at % PAGE));
      const pg = Math.floor(at / PAGE);
      const got = await cl.load(ino, at, len);
      const want = model.page(pg).subarray(at % PAGE, (at % PAGE) + len);
      assert.deepEqual(got, want, `load [${at}, +${len})`);
      return;
    }
    case 'store': {
      if (model.size === 0) return;
      const at = op.at % model.size;
      const len = Math.max(1, Math.min(op.len, PAGE - (at % PAGE), model.size - at));
      const data = pattern(op.fill, len);
      await w.clients[op.c].store(ino, at, data);
      model.write(at, data);
      return;
    }
    case 'read': {
      const at = op.at % (MAX_BYTES + PAGE);
      const got = await v.fs.read(ino, at, op.len);
      const want = Buffer.from(model.bytes.subarray(Math.min(at, model.size), Math.min(at + op.len, model.size)));
      assert.deepEqual(got, want, `read [${at}, +${op.len})`);
      return;
    }
    case 'msync':
      await v.dax.msync(ino, Math.min(op.first, op.last), Math.max(op.first, op.last));
      return;
    case 'fsync':
      await v.dax.fsync(ino, false);
      return;
    case 'unmap': {
      const cl = w.clients[op.c];
      const [first, last] = [Math.min(op.first, op.last), Math.max(op.first, op.last)];
      v.dax.unmap(cl.owner, ino, first, last);
      // The client forgets nothing: its tokens must be refused now (checked after the step).
      return;
    }
    case 'end':
      await endSession(w, op.c);
      return;
    case 'write':
    case 'truncate':
    case 'fallocate': {
      const fsOp = resolveFsOp(op, model.size, false);
      if (!fsOp) return;
      await runFsOp(w, fsOp);
      model.apply(fsOp);
      return;
    }
    case 'batch':
      await batch(w, op);
      return;
  }
}

/** Ends client c's session; it keeps its cached tokens (checked: all refused), a new session takes its place. */
async function endSession(w: World, c: number): Promise<void> {
  const old = w.clients[c];
  await old.owner.end();
  w.dead.push(old);
  w.clients[c] = newClient(w, c);
}

async function batch(w: World, op: Extract<Op, { t: 'batch' }>): Promise<void> {
  const { v, ino, model } = w;
  const before = model.clone();
  const fsOp = op.fsOp ? resolveFsOp(op.fsOp.op, model.size, true) : null;
  const after = model.clone();
  if (fsOp) after.apply(fsOp);
  const sizes = [before.size, after.size];
  const [tFrom, tTo] = fsOp ? touched(fsOp, before.size) : [Infinity, Infinity];
  const safeEnd = Math.min(before.size, after.size);

  // Stores: distinct pages, inside the file throughout, away from the fs op's bytes.
  const stores: Array<{ c: number; at: number; data: Buffer; delay: Delay }> = [];
  const usedPages = new Set<number>();
  const ending = new Set(op.ends.map((e) => e.c));
  for (const s of op.stores) {
    if (safeEnd === 0) break;
    if (ending.has(s.c)) continue; // its session ends meanwhile: the store may fail
    const at = s.at % safeEnd;
    const len = Math.max(1, Math.min(s.len, PAGE - (at % PAGE), safeEnd - at));
    const pg = Math.floor(at / PAGE);
    if (usedPages.has(pg) || (at < tTo && at + len > tFrom)) continue;
    usedPages.add(pg);
    stores.push({ c: s.c, at, data: pattern(s.fill, len), delay: s.delay });
  }
  const withStores = (m: Model): Model => {
    const r = m.clone();
    for (const s of stores) r.write(s.at, s.data);
    return r;
  };
  const finalModel = withStores(after);

  const tasks: Array<Promise<void>> = [];
  if (fsOp) tasks.push(wait(op.fsOp!.delay).then(() => runFsOp(w, fsOp)));
  for (const s of stores) {
    tasks.push(wait(s.delay).then(() => w.clients[s.c].store(ino, s.at, s.data)));
  }
  const clientsAtStart = [...w.clients];
  if (op.pause) {
    const fp = v.dax.failpoints.arm(op.pause.point, op.pause.onHotPage ? { ino, pgoff: op.hot } : { ino });
    tasks.push(wait(op.pause.release).then(() => fp.release()));
  }
  if (op.sync) {
    const sync = op.sync;
    tasks.push(wait(sync.delay).then(() => (sync.kind === 'msync' ? v.dax.msync(ino, 0, MAX_PAGES) : v.dax.fsync(ino, false))));
  }
  for (const e of op.ends) tasks.push(wait(e.delay).then(() => clientsAtStart[e.c].owner.end()));
  for (const u of op.unmaps) {
    tasks.push(wait(u.delay).then(() => v.dax.unmap(clientsAtStart[u.c].owner, ino, Math.min(u.first, u.last), Math.max(u.first, u.last))));
  }
  for (const f of op.faults) {
    tasks.push(wait(f.delay).then(async () => {
      const cl = clientsAtStart[f.c];
      try {
        if (f.kind === 'COW') {
          const { data } = await v.dax.fault(cl.owner, ino, f.pg, 'COW', false);
          // The page before or after the concurrent changes (fs op, store on that page).
          const store = stores.find((s) => Math.floor(s.at / PAGE) === f.pg);
          const candidates = [before, after].flatMap((m) => {
            if (!store) return [m.page(f.pg)];
            const withStore = m.clone();
            withStore.write(store.at, store.data);
            return [m.page(f.pg), withStore.page(f.pg)];
          });
          assert.ok(candidates.some((p) => p.equals(data!)), `COW copy of page ${f.pg} in a batch is neither before nor after`);
        } else {
          await cl.fault(ino, f.pg, f.kind);
        }
        assert.ok(f.pg < pagesOf(Math.max(...sizes)), `fault on page ${f.pg} past EOF (sizes ${sizes.join(' -> ')}) succeeded`);
      } catch (err) {
        if (ending.has(f.c) && isCode(err, 'SESSION_EXPIRED')) return;
        checkSigbus(err, f.pg, sizes, 'batch fault');
      }
    }));
  }
  await Promise.all(tasks);
  for (const c of ending) {
    w.dead.push(clientsAtStart[c]);
    w.clients[c] = newClient(w, c);
  }
  model.bytes = finalModel.bytes;
  assert.equal(v.fs.stat(ino).sizeBytes, model.size, 'size after the batch');
}

// ---- checks -----------------------------------------------------------------------------------

function checkTokens(w: World, context: string): void {
  const { v, ino, model } = w;
  const pages = pagesOf(model.size);
  for (const cl of [...w.clients, ...w.dead]) {
    const dead = w.dead.includes(cl);
    const table = cl.ptes.get(ino);
    if (!table) continue;
    for (const [pg, pte] of [...table]) {
      let got: Buffer;
      try {
        got = v.dax.load(cl.owner, pte.token, 0, PAGE);
      } catch (err) {
        if (!isCode(err, 'PTE_STALE')) throw err;
        table.delete(pg);
        continue;
      }
      assert.ok(!dead, `${context}: ${cl.owner.id}'s PTE on page ${pg} outlived its session (S7)`);
      assert.ok(pg < pages, `${context}: ${cl.owner.id}'s PTE on page ${pg} survived past EOF (size ${model.size})`);
      if (!got.equals(model.page(pg))) {
        const want = model.page(pg);
        const at = got.findIndex((b, i) => b !== want[i]);
        assert.fail(`${context}: ${cl.owner.id}'s PTE on page ${pg} (pfn ${pte.pfn}${pte.writable ? ', writable' : ''}) loads 0x${got[at].toString(16)} at ${at}, model has 0x${want[at].toString(16)}`);
      }
    }
  }
}

function checkEntries(w: World, context: string): void {
  const { v, ino, model } = w;
  const as = Dax.contextForTests(v.dax).spaces.get(ino); // white-box: the reverse maps themselves
  let ptes = 0;
  if (as) {
    assert.equal(as.waitQueues.size, 0, `${context}: waiters left`);
    assert.ok(!as.mmapLock.held, `${context}: mmap lock left held`);
    for (const e of as.entries.values()) {
      const where = `${context}: entry ${e.pgoff}`;
      assert.ok(!e.locked, `${where} left locked`);
      assert.notEqual(e.state, 'EMPTY', `${where}: an EMPTY placeholder left in the table`);
      assert.ok(e.pgoff < pagesOf(model.size), `${where} past EOF (size ${model.size})`);
      const m = v.fs.iomap(ino, e.pgoff);
      if (e.state === 'MAPPED') assert.ok(m.state === 'WRITTEN' && m.pfn === e.pfn, `${where}: MAPPED(${e.pfn}) but the map says ${JSON.stringify(m)}`);
      else assert.ok(m.state !== 'WRITTEN' || e.pteCount === 0, `${where}: ZERO with PTEs but the map says ${JSON.stringify(m)}`);
      assert.ok(!e.towrite, `${where}: TOWRITE left set`);
      const onEntry = Dax.contextForTests(v.dax).ptes.ptesOn(as, e);
      assert.equal(onEntry.length, e.pteCount, `${where}: the session page tables and the entry's PTE count disagree`);
      assert.equal(onEntry.filter((p) => p.writable).length, e.writablePteCount, `${where}: the session page tables and the entry's writable PTE count disagree`);
      for (const p of onEntry) {
        assert.equal(p.mapping.as, as, `${where}: a PTE in another file's mapping`);
        assert.ok(!p.writable || (e.dirty && e.state === 'MAPPED'), `${where}: writable PTE on a clean entry`);
      }
      ptes += e.pteCount;
    }
  }
  assert.equal(v.dax.stats().ptes, ptes, `${context}: PTE table and reverse maps disagree`);
}

// ---- arbitraries --------------------------------------------------------------------------------

const arbC = fc.integer({ min: 0, max: CLIENTS - 1 });
const arbPg = fc.integer({ min: 0, max: MAX_PAGES });
const arbRaw = fc.nat({ max: 1 << 20 });
const arbLen = fc.integer({ min: 1, max: PAGE + 100 });
const arbFill = fc.integer({ min: 1, max: 255 });
const arbKind = fc.constantFrom<FaultKind>('READ', 'WRITE', 'COW');
const arbDelay: fc.Arbitrary<Delay> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ micro: fc.integer({ min: 0, max: 24 }) }) },
  { weight: 1, arbitrary: fc.record({ macro: fc.integer({ min: 0, max: 3 }) }) },
);
/** A byte offset: anywhere, or (in a batch) inside its hot page, where the races are. */
const arbAt = (hot?: number): fc.Arbitrary<number> =>
  hot === undefined ? arbRaw : fc.oneof(arbRaw, fc.integer({ min: hot * PAGE, max: hot * PAGE + PAGE - 1 }));
const arbFsOp = (inBatch: boolean, hot?: number): fc.Arbitrary<FsOp> => fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant('write' as const), at: arbAt(hot), len: fc.nat({ max: 3 * PAGE }), fill: arbFill }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('truncate' as const), size: arbAt(hot) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('fallocate' as const),
      mode: inBatch
        ? fc.constantFrom<FallocateMode>('ALLOCATE', 'KEEP_SIZE', 'PUNCH_HOLE', 'ZERO_RANGE')
        : fc.constantFrom<FallocateMode>('ALLOCATE', 'KEEP_SIZE', 'PUNCH_HOLE', 'ZERO_RANGE', 'COLLAPSE_RANGE'),
      at: arbAt(hot),
      len: arbRaw,
    }),
  },
);
const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('fault' as const), c: arbC, pg: arbPg, kind: arbKind }) },
  { weight: 5, arbitrary: fc.record({ t: fc.constant('load' as const), c: arbC, at: arbRaw, len: arbLen }) },
  { weight: 6, arbitrary: fc.record({ t: fc.constant('store' as const), c: arbC, at: arbRaw, len: arbLen, fill: arbFill }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('read' as const), at: arbRaw, len: fc.integer({ min: 0, max: 3 * PAGE }) }) },
  { weight: 5, arbitrary: arbFsOp(false) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('msync' as const), first: arbPg, last: arbPg }) },
  { weight: 1, arbitrary: fc.constant({ t: 'fsync' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('unmap' as const), c: arbC, first: arbPg, last: arbPg }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('end' as const), c: arbC }) },
  {
    weight: 6,
    // Each batch has a hot page that most of its faults and its file operation aim at.
    arbitrary: arbPg.chain((hot) => fc.record({
      t: fc.constant('batch' as const),
      hot: fc.constant(hot),
      sync: fc.option(fc.record({ kind: fc.constantFrom<'msync' | 'fsync'>('msync', 'fsync'), delay: arbDelay }), { nil: null, freq: 4 }),
      pause: fc.option(fc.record({
        point: fc.constantFrom<FailpointName>(
          'fault:after-entry-lock', 'fault:before-install', 'fault:before-cow-copy', 'write:after-allocate',
          'invalidate:entry-locked', 'writeback:after-downgrade', 'writeback:before-clean', 'layout:after-revoke'),
        onHotPage: fc.boolean(),
        release: fc.oneof(fc.record({ micro: fc.integer({ min: 0, max: 40 }) }), fc.record({ macro: fc.integer({ min: 0, max: 6 }) })),
      }), { nil: null, freq: 2 }),
      fsOp: fc.option(fc.record({ op: arbFsOp(true, hot), delay: arbDelay }), { nil: null, freq: 3 }),
      faults: fc.array(fc.record({ c: arbC, pg: fc.oneof(fc.constant(hot), arbPg), kind: arbKind, delay: arbDelay }), { maxLength: 6 }),
      stores: fc.array(fc.record({ c: arbC, at: arbAt(hot), len: arbLen, fill: arbFill, delay: arbDelay }), { maxLength: 4 }),
      ends: fc.array(fc.record({ c: arbC, delay: arbDelay }), { maxLength: 1, size: 'small' }),
      unmaps: fc.array(fc.record({ c: arbC, first: arbPg, last: arbPg, delay: arbDelay }), { maxLength: 1 }),
    })),
  },
);

function describeOp(op: Op): string {
  return JSON.stringify(op);
}

describe('dax layer against a byte-array model (fast-check)', function () {
  const factor = Number(process.env.DAXD_FC_RUNS_FACTOR ?? '1');
  this.timeout(60_000 * Math.max(1, factor));

  it('every load through any PTE returns the model\'s bytes; entries agree with the block map', async function () {
    const seed = process.env.DAXD_FC_SEED === undefined ? undefined : Number(process.env.DAXD_FC_SEED);
    const path = process.env.DAXD_FC_PATH;
    const t0 = performance.now();
    let steps = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 5 * PAGE }), fc.array(arbOp, { minLength: 1, maxLength: 60, size: 'max' }), async (initialSize, ops) => {
        const v = await freshDax();
        const { ino } = await v.fs.create('f', true);
        const w: World = { v, ino, model: new Model(), clients: [], dead: [], generation: [0, 0, 0] };
        for (let c = 0; c < CLIENTS; c++) w.clients.push(newClient(w, c));
        await v.fs.write(ino, 0, pattern(7, initialSize), false);
        w.model.write(0, pattern(7, initialSize));
        try {
          for (const [i, op] of ops.entries()) {
            const context = `step ${i} ${describeOp(op)}`;
            await step(w, op);
            steps++;
            checkTokens(w, context);
            checkEntries(w, context);
          }
          // The whole file through read(2) and a fresh session's loads.
          assert.deepEqual(await v.fs.read(ino, 0, MAX_BYTES + PAGE), Buffer.from(w.model.bytes), 'final read(2)');
          const fresh = new TestClient(v.dax, new TestOwner('fresh'));
          for (let pg = 0; pg < pagesOf(w.model.size); pg++) {
            assert.deepEqual(await fresh.load(ino, pg * PAGE, PAGE), w.model.page(pg), `final load of page ${pg}`);
          }
          await v.dax.fsync(ino, false);
          await assertFsckClean(v, 'after the run');
        } finally {
          v.dax.failpoints.releaseAll();
        }
      }),
      { numRuns: Math.round(80 * factor), seed, path, endOnFailure: true },
    );
    const ms = performance.now() - t0;
    process.stdout.write(`      (${steps} steps in ${Math.round(ms)} ms)\n`);
  });
});
