/** One run of test/unit/fs-model.test.ts: each operation against the engine and the model, compared after every step, remounts between. */
import assert from 'node:assert/strict';
import { DaxError } from '../../../server/errors';
import { mapBlocksBound } from '../../../server/fs/file-data';
import { FileSystem } from '../../../server/fs/filesystem';
import { fallocateRequest } from '../../../server/rpc/validate';
import { mkfs } from '../../../server/fs/mkfs';
import type { FallocateMode, FileInfo } from '../../../server/fs/types';
import { BLOCK_SIZE, FILE_BYTES_MAX, IO_BYTES_MAX, NAME_BYTES_MAX } from '../../../server/limits';
import { MemoryStorage } from '../../../server/media/memory-storage';
import { assertFsckClean } from '../../support/fsck';
import { CANARY, FULL_READ_BYTES_MAX, ModelFile, NAMES, NO_SUCH_INO, pageOf } from './model-file';
import { type BadOp, type Op, type Pos, patternBytes } from './ops';

export function resolve(pos: Pos, sizeBytes: number): number {
  if (pos.kind === 'abs') return pos.at;
  let at = Math.floor(pos.frac * sizeBytes);
  if (pos.aligned) at = (pageOf(at) + pos.delta) * BLOCK_SIZE;
  else at += pos.delta;
  return Math.max(0, at);
}

export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

export function assertBytes(actual: Buffer, expected: Buffer, what: string): void {
  if (actual.equals(expected)) return;
  const i = firstDifference(actual, expected);
  assert.fail(`${what}: length ${actual.length} vs. model ${expected.length}; first difference at +${i}: `
    + `engine ${actual[i]} vs. model ${expected[i]}${actual[i] === CANARY ? ' (the freed-block CANARY: stale data exposed)' : ''}`);
}

/** One step's expectations, built from the model before the call runs. */
export interface Plan {
  label: string;
  call: () => Promise<unknown>;
  /** The error codes the call may fail with; empty: it must succeed. */
  expect: string[];
  /** Data blocks the change needs at least (ENOSPC is required when fewer are free). */
  needBlocks: number;
  /** Upper bound of blocks the engine may reserve; ENOSPC is legal only below it. 0: never ENOSPC. */
  boundBlocks: number;
  onSuccess: (result: unknown) => void;
  /** After ENOSPC (default: the model is unchanged). */
  onEnospc?: () => Promise<void>;
  /** Model index of the file whose stat is compared afterwards. */
  file?: number;
}

/** Outcome counts across all runs, printed once: shows which branches the properties reach. */
export const coverage = new Map<string, number>();
export function count(key: string): void {
  coverage.set(key, (coverage.get(key) ?? 0) + 1);
}

export class Run {
  storage!: MemoryStorage;
  fs!: FileSystem;
  initialFreeBlocks = 0;
  readonly files: Array<ModelFile | undefined> = NAMES.map(() => undefined);
  /** The ino each name last had, for operations through a stale inode. */
  readonly lastIno: Array<number | undefined> = NAMES.map(() => undefined);
  /** ino -> last generation seen: (ino, generation) must never repeat. */
  readonly generations = new Map<number, number>();

  constructor(private readonly volumeBytes: number) {}

  async start(): Promise<void> {
    this.storage = new MemoryStorage(this.volumeBytes);
    await mkfs(this.storage);
    this.fs = await FileSystem.mount(this.storage, { canaryByte: CANARY });
    this.initialFreeBlocks = this.fs.statVolume().blocksFree;
    assert.equal(this.fs.statVolume().blocksUsed, 0);
    for (let f = 0; f < NAMES.length; f++) await this.step({ t: 'create', f, exclusive: true });
  }

  /** The inode to use for file f: its own, or a stale one no live file has now. */
  ino(f: number): number {
    const file = this.files[f];
    if (file) return file.ino;
    const stale = this.lastIno[f];
    return stale !== undefined && !this.files.some((m) => m?.ino === stale) ? stale : NO_SUCH_INO;
  }

  async step(op: Op): Promise<void> {
    switch (op.t) {
      case 'remount':
        return this.remount(op.kind);
      case 'list':
        return this.checkList(op.prefix, op.pageSize);
      case 'pair':
        // Operations on two files run concurrently (group commit, per-inode locks); on one file, in order.
        if (op.a.f !== op.b.f) return this.execute([this.plan(op.a), this.plan(op.b)]);
        await this.execute([this.plan(op.a)]);
        return this.execute([this.plan(op.b)]);
      default:
        return this.execute([this.plan(op)]);
    }
  }

  private plan(op: Exclude<Op, { t: 'remount' | 'list' | 'pair' }>): Plan {
    switch (op.t) {
      case 'create': return this.planCreate(op.f, op.exclusive);
      case 'lookup': return this.planLookup(op.f);
      case 'unlink': return this.planUnlink(op.f);
      case 'write': return this.planWrite(op.f, resolve(op.pos, this.sizeOf(op.f)), patternBytes(op.seed, op.len), op.sync);
      case 'read': return this.planRead(op.f, resolve(op.pos, this.sizeOf(op.f)), op.len);
      case 'truncate': return this.planTruncate(op.f, resolve(op.pos, this.sizeOf(op.f)));
      case 'fallocate': return this.planFallocate(op.f, op.mode, resolve(op.pos, this.sizeOf(op.f)), op.len);
      case 'fsync': return this.simple(`fsync ${NAMES[op.f]}`, op.f, () => this.fs.fsync(this.ino(op.f), false));
      case 'stat': return this.simple(`stat ${NAMES[op.f]}`, op.f, async () => this.fs.stat(this.ino(op.f)));
      case 'bad': return this.planBad(op.f, op.what);
    }
  }

  private sizeOf(f: number): number {
    return this.files[f]?.sizeBytes ?? 0;
  }

  private missing(f: number): string[] {
    return this.files[f] ? [] : ['ENOENT'];
  }

  private simple(label: string, f: number, call: () => Promise<unknown>): Plan {
    return { label, call, expect: this.missing(f), needBlocks: 0, boundBlocks: 0, onSuccess: () => undefined, file: f };
  }

  private planCreate(f: number, exclusive: boolean): Plan {
    const existing = this.files[f];
    return {
      label: `create ${NAMES[f]} exclusive=${exclusive}`,
      call: () => this.fs.create(NAMES[f], exclusive),
      expect: existing && exclusive ? ['EEXIST'] : [],
      needBlocks: 0, boundBlocks: 0,
      onSuccess: (r) => {
        const info = r as FileInfo;
        assert.equal(info.name, NAMES[f]);
        if (existing) {
          assert.equal(info.ino, existing.ino, 'non-exclusive create of an existing name returns that file');
          return;
        }
        assert.equal(info.sizeBytes, 0);
        assert.equal(info.blocks, 0);
        const previous = this.generations.get(info.ino);
        if (previous !== undefined) assert.ok(info.generation > previous, `ino ${info.ino} reused with generation ${info.generation} <= ${previous}`);
        this.generations.set(info.ino, info.generation);
        this.files[f] = new ModelFile(info.ino);
      },
      file: f,
    };
  }

  private planLookup(f: number): Plan {
    return {
      label: `lookup ${NAMES[f]}`, call: async () => this.fs.lookup(NAMES[f]),
      expect: this.missing(f), needBlocks: 0, boundBlocks: 0,
      onSuccess: (r) => assert.equal((r as FileInfo).ino, this.files[f]!.ino), file: f,
    };
  }

  private planUnlink(f: number): Plan {
    return {
      label: `unlink ${NAMES[f]}`, call: () => this.fs.unlink(NAMES[f]),
      expect: this.missing(f), needBlocks: 0, boundBlocks: 0,
      onSuccess: () => {
        this.lastIno[f] = this.files[f]!.ino;
        this.files[f] = undefined;
      },
    };
  }

  /** Argument errors come before the inode lookup in the engine; either is accepted together. */
  private expectArgs(f: number, argError: string | null): string[] {
    if (argError === null) return this.missing(f);
    return this.files[f] ? [argError] : [argError, 'ENOENT'];
  }

  private planWrite(f: number, offsetBytes: number, data: Buffer, sync: boolean): Plan {
    const end = offsetBytes + data.length;
    const argError = offsetBytes > FILE_BYTES_MAX || end > FILE_BYTES_MAX ? 'EFBIG' : null;
    const model = this.files[f];
    const pages = data.length === 0 ? 0 : pageOf(end - 1) - pageOf(offsetBytes) + 1;
    const need = model && pages > 0 ? model.holesIn(pageOf(offsetBytes), pageOf(end - 1)) : 0;
    return {
      label: `write ${NAMES[f]} [${offsetBytes}, +${data.length}) sync=${sync}`,
      call: () => this.fs.write(this.ino(f), offsetBytes, data, sync),
      expect: this.expectArgs(f, argError),
      needBlocks: need, boundBlocks: need > 0 ? need + mapBlocksBound(pages) : 0,
      onSuccess: (r) => {
        const m = this.files[f]!;
        m.write(offsetBytes, data);
        assert.deepEqual(r, { written: data.length, sizeBytes: m.sizeBytes });
      },
      file: f,
    };
  }

  private planRead(f: number, offsetBytes: number, lengthBytes: number): Plan {
    return {
      label: `read ${NAMES[f]} [${offsetBytes}, +${lengthBytes})`,
      call: () => this.fs.read(this.ino(f), offsetBytes, lengthBytes),
      expect: this.expectArgs(f, offsetBytes > FILE_BYTES_MAX ? 'EFBIG' : null),
      needBlocks: 0, boundBlocks: 0,
      onSuccess: (r) => assertBytes(r as Buffer, this.files[f]!.read(offsetBytes, lengthBytes), `read ${NAMES[f]} [${offsetBytes}, +${lengthBytes})`),
      file: f,
    };
  }

  private planTruncate(f: number, sizeBytes: number): Plan {
    return {
      label: `truncate ${NAMES[f]} to ${sizeBytes}`,
      call: () => this.fs.truncate(this.ino(f), sizeBytes),
      expect: this.expectArgs(f, sizeBytes > FILE_BYTES_MAX ? 'EFBIG' : null),
      needBlocks: 0, boundBlocks: 0,
      onSuccess: () => this.files[f]!.truncate(sizeBytes),
      file: f,
    };
  }

  private planFallocate(f: number, mode: FallocateMode, offsetBytes: number, lengthBytes: number): Plan {
    const end = offsetBytes + lengthBytes;
    const first = pageOf(offsetBytes);
    const last = pageOf(end - 1);
    const label = `fallocate ${NAMES[f]} ${mode} [${offsetBytes}, +${lengthBytes})`;
    let argError: string | null = null;
    if (offsetBytes > FILE_BYTES_MAX || end > FILE_BYTES_MAX) argError = 'EFBIG';
    else if (lengthBytes === 0) argError = 'EINVAL';
    else if (mode === 'COLLAPSE_RANGE' && (offsetBytes % BLOCK_SIZE !== 0 || lengthBytes % BLOCK_SIZE !== 0)) argError = 'EINVAL';
    const model = this.files[f];
    let expect = this.expectArgs(f, argError);
    if (expect.length === 0 && mode === 'COLLAPSE_RANGE' && end >= model!.sizeBytes) expect = ['EINVAL'];
    // Whole pages inside the range (ZERO_RANGE preallocates only those).
    const wholeFirst = Math.ceil(offsetBytes / BLOCK_SIZE);
    const wholeLast = Math.floor(end / BLOCK_SIZE) - 1;
    let need = 0;
    let pages = 0;
    if (expect.length === 0 && model) {
      if (mode === 'ALLOCATE' || mode === 'KEEP_SIZE') [need, pages] = [model.holesIn(first, last), last - first + 1];
      if (mode === 'ZERO_RANGE') [need, pages] = [model.holesIn(wholeFirst, wholeLast), Math.max(0, wholeLast - wholeFirst + 1)];
    }
    // COLLAPSE_RANGE allocates no data block, but its shift may need map blocks (for the
    // span of the pages it moves): ENOSPC is legal below that bound, and changes nothing.
    let shiftBound = 0;
    if (expect.length === 0 && mode === 'COLLAPSE_RANGE') {
      const moved = [...model!.alloc].filter((pg) => pg > last);
      if (moved.length > 0) shiftBound = mapBlocksBound(Math.max(...moved) - Math.min(...moved) + 1);
    }
    return {
      label,
      // Through the edge's check, as every caller (the engine asserts what it refuses).
      call: async () => {
        const r = fallocateRequest(mode, offsetBytes, lengthBytes);
        return this.fs.fallocate(this.ino(f), r.mode, r.offset, r.length);
      },
      expect, needBlocks: need, boundBlocks: need > 0 ? need + mapBlocksBound(pages) : shiftBound,
      onSuccess: () => {
        const m = this.files[f]!;
        switch (mode) {
          case 'ALLOCATE':
          case 'KEEP_SIZE':
            m.allocate(first, last);
            if (mode === 'ALLOCATE') m.sizeBytes = Math.max(m.sizeBytes, end);
            break;
          case 'PUNCH_HOLE':
            m.zero(offsetBytes, end);
            m.drop(wholeFirst, wholeLast);
            break;
          case 'ZERO_RANGE':
            m.zero(offsetBytes, end);
            if (wholeFirst <= wholeLast) {
              for (const pg of [...m.pages.keys()]) if (pg >= wholeFirst && pg <= wholeLast) m.pages.delete(pg);
              m.allocate(wholeFirst, wholeLast);
            }
            m.sizeBytes = Math.max(m.sizeBytes, end);
            break;
          case 'COLLAPSE_RANGE':
            m.collapse(offsetBytes, lengthBytes);
            break;
        }
      },
      onEnospc: mode === 'ZERO_RANGE' ? () => this.adoptPartialZero(f, offsetBytes, end) : undefined,
      file: f,
    };
  }

  /** ZERO_RANGE failed with ENOSPC: each byte of the range is old or zero; the model takes the engine's state. */
  private async adoptPartialZero(f: number, offsetBytes: number, endBytes: number): Promise<void> {
    const m = this.files[f]!;
    const to = Math.min(endBytes, m.sizeBytes);
    if (to > offsetBytes) {
      const actual = await this.fs.read(m.ino, offsetBytes, to - offsetBytes);
      const old = m.read(offsetBytes, to - offsetBytes);
      for (let i = 0; i < actual.length; i++) {
        if (actual[i] !== old[i] && actual[i] !== 0) assert.fail(`ZERO_RANGE after ENOSPC: byte ${offsetBytes + i} is ${actual[i]}, neither old ${old[i]} nor zero`);
      }
      m.zero(offsetBytes, to);
      m.write(offsetBytes, actual);
    }
    for (let pg = pageOf(offsetBytes); pg <= pageOf(endBytes - 1); pg++) {
      if (this.fs.iomap(m.ino, pg).state === 'HOLE') {
        assert.ok(!m.pages.has(pg) || m.pages.get(pg)!.every((b) => b === 0), `ZERO_RANGE after ENOSPC freed page ${pg} holding data`);
        m.pages.delete(pg);
        m.alloc.delete(pg);
      } else {
        m.alloc.add(pg);
      }
    }
  }

  private planBad(f: number, what: BadOp): Plan {
    const ino = this.ino(f);
    const none = (label: string, call: () => Promise<unknown>, expect: string[]): Plan =>
      ({ label, call, expect, needBlocks: 0, boundBlocks: 0, onSuccess: () => undefined });
    const withArgs = (label: string, call: () => Promise<unknown>, code: string): Plan => none(label, call, this.expectArgs(f, code));
    switch (what) {
      case 'emptyName': return none('create ""', () => this.fs.create('', false), ['EINVAL']);
      case 'nulName': return none('create "a\\0b"', () => this.fs.create('a\0b', true), ['EINVAL']);
      case 'longName': return none('create 256-byte name', () => this.fs.create('n'.repeat(NAME_BYTES_MAX + 1), true), ['ENAMETOOLONG']);
      case 'loneSurrogate': return none('create lone surrogate', () => this.fs.create('x\uD800', true), ['EINVAL']);
      case 'unlinkEmpty': return none('unlink ""', () => this.fs.unlink(''), ['EINVAL']);
      case 'lookupLong': return none('lookup 256 x é', async () => this.fs.lookup('é'.repeat(128)), ['ENAMETOOLONG']);
      case 'readTooLong': return withArgs('read past IO_MAX', () => this.fs.read(ino, 0, IO_BYTES_MAX + 1), 'ELIMIT');
      case 'readNegativeLength': return withArgs('read length -1', () => this.fs.read(ino, 0, -1), 'EINVAL');
      case 'writeNegativeOffset': return withArgs('write at -1', () => this.fs.write(ino, -1, Buffer.from('x'), false), 'EINVAL');
      // Length 0 is refused at the edge (server/rpc/validate.ts); the engine asserts it.
      case 'fallocateZeroLength': return withArgs('fallocate length 0', async () => { fallocateRequest('ALLOCATE', 0, 0); await this.fs.fallocate(ino, 'ALLOCATE', 0, 0); }, 'EINVAL');
      case 'fallocateNegativeOffset': return withArgs('fallocate at -4096', () => this.fs.fallocate(ino, 'PUNCH_HOLE', -BLOCK_SIZE, BLOCK_SIZE), 'EINVAL');
      case 'fallocateBadMode':
        return withArgs('fallocate mode BOGUS', () => this.fs.fallocate(ino, 'BOGUS' as FallocateMode, 0, BLOCK_SIZE), this.files[f] ? 'EINVAL' : 'ENOENT');
      case 'truncateNegative': return withArgs('truncate to -1', () => this.fs.truncate(ino, -1), 'EINVAL');
      case 'truncatePastMax': return withArgs('truncate past max', () => this.fs.truncate(ino, FILE_BYTES_MAX + 1), 'EFBIG');
      case 'writePastMax': return withArgs('write across max', () => this.fs.write(ino, FILE_BYTES_MAX - 2, Buffer.from('abc'), false), 'EFBIG');
      case 'badIno': return none('stat ino -1 / NaN', async () => { assert.throws(() => this.fs.stat(-1), { code: 'ENOENT' }); return this.fs.stat(Number.NaN); }, ['ENOENT']);
    }
  }

  private async execute(plans: Plan[]): Promise<void> {
    // A write short of space commits pending frees first, so they count as free here.
    const volume = this.fs.statVolume();
    const free = volume.blocksFree + volume.blocksPendingFree;
    const bound = plans.reduce((s, p) => s + p.boundBlocks, 0);
    const outcomes = await Promise.allSettled(plans.map((p) => p.call()));
    for (let i = 0; i < plans.length; i++) {
      const p = plans[i];
      const outcome = outcomes[i];
      const kind = p.label.split(' ').filter((w, j) => j === 0 || /^[A-Z_]+$/.test(w)).join(' ');
      if (outcome.status === 'fulfilled') {
        assert.equal(p.expect.length, 0, `${p.label}: succeeded, expected ${p.expect.join(' or ')}`);
        if (plans.length === 1) assert.ok(p.needBlocks <= free, `${p.label}: succeeded needing ${p.needBlocks} blocks with ${free} free`);
        p.onSuccess(outcome.value);
        count(`${kind}: ok`);
      } else {
        const err: unknown = outcome.reason;
        if (!(err instanceof DaxError)) throw err;
        count(`${kind}: ${err.code}`);
        if (err.code === 'ENOSPC' && p.expect.length === 0) {
          assert.ok(p.boundBlocks > 0 && free < bound, `${p.label}: ENOSPC with ${free} blocks free (bound ${bound}): ${err.message}`);
          await p.onEnospc?.();
        } else {
          assert.ok(p.expect.includes(err.code), `${p.label}: ${err.message}; expected ${p.expect.length ? p.expect.join(' or ') : 'success'}`);
        }
      }
      if (p.file !== undefined) this.checkStat(p.file, p.label);
    }
  }

  private checkStat(f: number, after: string): void {
    const m = this.files[f];
    if (!m) return;
    const info = this.fs.stat(m.ino);
    assert.equal(info.sizeBytes, m.sizeBytes, `after ${after}: size of ${NAMES[f]}`);
    assert.equal(info.blocks, m.alloc.size, `after ${after}: blocks of ${NAMES[f]}`);
  }

  private checkList(prefix: string, pageSize: number): void {
    const names: string[] = [];
    let token = '';
    for (let pages = 0; ; pages++) {
      assert.ok(pages <= NAMES.length, 'list does not terminate');
      const page = this.fs.list(prefix, token, pageSize);
      assert.ok(page.files.length <= pageSize);
      for (const info of page.files) {
        names.push(info.name);
        const f = NAMES.indexOf(info.name as (typeof NAMES)[number]);
        assert.equal(info.ino, this.files[f]?.ino, `list: ino of ${info.name}`);
      }
      if (page.nextPageToken === '') break;
      token = page.nextPageToken;
    }
    const expected = NAMES.filter((n, f) => this.files[f] && n.startsWith(prefix))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    assert.deepEqual(names, expected, `list prefix ${JSON.stringify(prefix)} page size ${pageSize}`);
  }

  private async remount(kind: 'unmount' | 'reboot'): Promise<void> {
    if (kind === 'unmount') {
      await this.fs.unmount();
    } else {
      // Power goes after a sync: nothing volatile matters, but mount must replay the journal.
      await this.fs.sync();
      this.storage.close();
    }
    this.storage = this.storage.reboot();
    this.fs = await FileSystem.mount(this.storage, { canaryByte: CANARY });
    assert.equal(this.fs.mountReport.wasClean, kind === 'unmount', `${kind}: clean flag`);
    assert.equal(this.fs.mountReport.orphansFreed, 0);
    count(`remount ${kind}`);
  }

  /** Every file against the model: names, stat, allocation, every byte. */
  async checkAll(when: string): Promise<void> {
    this.checkList('', 3);
    for (let f = 0; f < NAMES.length; f++) {
      const m = this.files[f];
      if (!m) {
        assert.throws(() => this.fs.lookup(NAMES[f]), { code: 'ENOENT' }, `${when}: ${NAMES[f]} was unlinked`);
        continue;
      }
      assert.equal(this.fs.lookup(NAMES[f]).ino, m.ino, `${when}: ino of ${NAMES[f]}`);
      this.checkStat(f, when);
      for (const pg of m.alloc) assert.notEqual(this.fs.iomap(m.ino, pg).state, 'HOLE', `${when}: ${NAMES[f]} page ${pg} allocated in the model`);
      if (m.sizeBytes <= FULL_READ_BYTES_MAX) {
        assertBytes(await this.fs.read(m.ino, 0, m.sizeBytes + BLOCK_SIZE), m.read(0, m.sizeBytes + BLOCK_SIZE), `${when}: all of ${NAMES[f]}`);
        continue;
      }
      // Sparse giants: every page the model stores or allocates, the head, and the tail.
      const pages = new Set([...m.alloc, ...Array.from({ length: 64 }, (_, i) => i), pageOf(m.sizeBytes - 1)]);
      for (const pg of pages) {
        const at = pg * BLOCK_SIZE;
        assertBytes(await this.fs.read(m.ino, at, BLOCK_SIZE), m.read(at, BLOCK_SIZE), `${when}: ${NAMES[f]} page ${pg}`);
      }
    }
  }

  /**
   * End of a run: compare, remount and compare, fsck, unlink all, no leaked block.
   * (fsck of the live storage after a sync is legal: it only reads, and a sync leaves the
   * media complete; a reboot of MemoryStorage costs a copy of the volume, so one is enough.)
   */
  async finish(): Promise<void> {
    await this.checkAll('end of run');
    await this.fs.unmount();
    this.storage = this.storage.reboot();
    await assertFsckClean(this.storage, 'at the end of the run');
    this.fs = await FileSystem.mount(this.storage, { canaryByte: CANARY });
    assert.equal(this.fs.mountReport.wasClean, true);
    await this.checkAll('after the final remount');
    for (let f = 0; f < NAMES.length; f++) if (this.files[f]) await this.step({ t: 'unlink', f });
    await this.fs.sync();
    const volume = this.fs.statVolume();
    assert.equal(volume.files, 0);
    assert.equal(volume.blocksFree, this.initialFreeBlocks, `blocks leaked: ${this.initialFreeBlocks - volume.blocksFree}`);
    await assertFsckClean(this.storage, 'after unlinking everything');
    await this.fs.unmount();
  }
}

export async function runSequence(volumeBytes: number, ops: Op[]): Promise<Run> {
  const run = new Run(volumeBytes);
  await run.start();
  for (const op of ops) await run.step(op);
  await run.finish();
  return run;
}
