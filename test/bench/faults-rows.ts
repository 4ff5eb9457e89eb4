/**
 * Fault and mapping rows for `npm run bench` (bench-all.ts), this build next to an older
 * one (`--before DIR` / BENCH_BEFORE: a built worktree, e.g. main's) in the same run:
 * - gRPC FaultBatch(1024) at QD 2: READ faults on holes, WRITE faults allocating, READ
 *   faults on mapped pages (a written file; the session's PTEs dropped between runs);
 * - in-process faults on mapped pages (a new PTE each: a fresh session per pass), and
 *   memory per mapped entry with its PTE (heap + ArrayBuffer stores, 100k entries);
 * - MappedFile sequential read of 16 MiB against Files.Read of it (MiB/s, and the ratio).
 * Each build runs in a child process of its own (its own server, SDK and dax layer, loaded
 * from DIR/dist), the builds alternating round by round; figures are medians.
 *
 *   node dist/test/bench/faults-rows.js [--before DIR] [--rounds N] [--seconds S]
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { BenchRow, RowContext } from './bench-rows';

const REPO = path.resolve(__dirname, '..', '..', '..');
const FILE_PAGES = 4096;
const BATCH = 1024;

interface ChildFigures {
  grpcReadHole: number;
  grpcWriteAllocate: number;
  grpcMapped: number;
  inprocMapped: number;
  bytesPerEntry: number;
  mappedMiBs: number;
  filesReadMiBs: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** One build's figures, measured in a child process loading that build's dist/. */
function measureIn(tree: string, seconds: number, tmpDir: string): ChildFigures {
  const out = execFileSync(process.execPath, [__filename, '--child', tree, '--seconds', String(seconds), '--tmp', tmpDir], { encoding: 'utf8', timeout: 300_000 });
  const line = out.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as ChildFigures;
}

export async function faultsRows(ctx: RowContext): Promise<BenchRow[]> {
  const trees: Array<{ name: 'after' | 'before'; dir: string }> = [{ name: 'after', dir: REPO }];
  if (ctx.beforeDir) trees.push({ name: 'before', dir: ctx.beforeDir });
  const runs: Record<'after' | 'before', ChildFigures[]> = { after: [], before: [] };
  for (let r = 0; r < ctx.rounds; r++) {
    const order = r % 2 === 0 ? trees : [...trees].reverse();
    for (const t of order) {
      runs[t.name].push(measureIn(t.dir, ctx.seconds, ctx.tmpDir));
      ctx.log(`faults rows: round ${r + 1}, ${t.name}: ${JSON.stringify(runs[t.name][runs[t.name].length - 1])}`);
    }
  }
  const pick = (name: 'after' | 'before', k: keyof ChildFigures): number | undefined => (runs[name].length === 0 ? undefined : median(runs[name].map((x) => x[k])));
  const ratio = (name: 'after' | 'before'): number | undefined => (runs[name].length === 0 ? undefined : median(runs[name].map((x) => x.mappedMiBs / x.filesReadMiBs)));
  const row = (id: string, label: string, unit: string, k: keyof ChildFigures, ref?: { name: string; value: number }): BenchRow => ({
    id, label, unit, daxd: pick('after', k) ?? 0, ...(ctx.beforeDir ? { before: pick('before', k) } : {}), ...(ref ? { ref } : {}),
  });
  return [
    row('faults-grpc-read-hole', 'gRPC FaultBatch(1024) READ on holes, QD2', 'faults/s', 'grpcReadHole'),
    row('faults-grpc-write-allocate', 'gRPC FaultBatch(1024) WRITE allocating, QD2', 'faults/s', 'grpcWriteAllocate'),
    row('faults-grpc-mapped', 'gRPC FaultBatch(1024) READ on mapped pages, QD2', 'faults/s', 'grpcMapped', { name: 'target', value: 150_000 }),
    row('faults-inprocess-mapped-pte', 'in-process faults on mapped pages (new PTE each)', 'faults/s', 'inprocMapped', { name: 'target', value: 500_000 }),
    row('faults-bytes-per-entry', 'memory per mapped entry with its PTE (100k)', 'bytes', 'bytesPerEntry', { name: 'target', value: 200 }),
    row('mappedfile-seqread', 'MappedFile sequential read, 16 MiB', 'MiB/s', 'mappedMiBs'),
    row('files-read-seqread', 'Files.Read (SDK) of the same 16 MiB', 'MiB/s', 'filesReadMiBs'),
    {
      id: 'mappedfile-over-files-read', label: 'MappedFile / Files.Read', unit: 'x', daxd: ratio('after') ?? 0,
      ...(ctx.beforeDir ? { before: ratio('before') } : {}), ref: { name: 'target', value: 0.5 },
    },
  ];
}

// ---- the child: one build, loaded from TREE/dist -------------------------------------

/* eslint-disable @typescript-eslint/no-require-imports, @typescript-eslint/no-explicit-any -- a build chosen at run time: its modules are loaded by path */
type Any = any;

function unary<T>(invoke: (cb: (err: Error | null, res?: T) => void) => unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    invoke((err, res) => (err ? reject(err) : resolve(res as T)));
  });
}

async function closedLoop(seconds: number, qd: number, op: (loop: number, i: number) => Promise<number>): Promise<number> {
  const endAt = performance.now() + seconds * 1000;
  const t0 = performance.now();
  let n = 0;
  await Promise.all(Array.from({ length: qd }, async (_, loop) => {
    for (let i = 0; performance.now() < endAt; i++) n += await op(loop, i);
  }));
  return n / ((performance.now() - t0) / 1000);
}

async function grpcFigures(tree: string, seconds: number, dir: string): Promise<Pick<ChildFigures, 'grpcReadHole' | 'grpcWriteAllocate' | 'grpcMapped' | 'mappedMiBs' | 'filesReadMiBs'>> {
  const { startServer } = require(path.join(tree, 'dist', 'test', 'support', 'start-server'));
  const { DaxClient } = require(path.join(tree, 'dist', 'client'));
  const server = await startServer({ volumePath: path.join(dir, 'faults.vol'), size: '1G' });
  const client = DaxClient.connect(server.address, { deadlineMs: 60_000 });
  try {
    const raw = client.raw;
    const session = await client.openSession({ clientName: 'bench faults rows' });
    const sid: string = session.id;
    const content = Buffer.alloc(FILE_PAGES * 4096);
    for (let i = 0; i < content.length; i += 64) content[i] = i & 0xff;
    const { ino: data } = await client.create('data');
    await client.write(data, 0, content);
    const unmap = (ino: number) => unary((cb) => raw.mapping.Unmap({ session_id: sid, ino, first_pgoff: 0, last_pgoff: 1 << 30 }, cb));
    const batch = (ino: number, kind: string, pgoffOf: (k: number) => number) => unary((cb) => raw.mapping.FaultBatch({
      session_id: sid, ino, ops: Array.from({ length: BATCH }, (_, k) => ({ pgoff: pgoffOf(k), kind })),
    }, cb)).then(() => BATCH);
    // Holes and allocations need fresh pages: a new sparse file per run, sized for it.
    let files = 0;
    const fresh = async (): Promise<number> => {
      const { ino } = await client.create(`sparse-${files++}`);
      await client.truncate(ino, 256 * 1024 * 1024);
      return ino;
    };
    const holeIno = await fresh();
    let next = 0;
    const grpcReadHole = await closedLoop(seconds, 2, () => {
      const base = next;
      next += BATCH;
      return batch(holeIno, 'READ', (k) => (base + k) % 65_536);
    });
    await unmap(holeIno);
    const allocIno = await fresh();
    next = 0;
    const grpcWriteAllocate = await closedLoop(seconds, 2, () => {
      const base = next;
      next += BATCH;
      return batch(allocIno, 'WRITE', (k) => (base + k) % 65_536);
    });
    await unmap(allocIno);
    await batch(data, 'READ', (k) => k); // warm the entries
    const grpcMapped = await closedLoop(seconds, 2, (loop, i) => batch(data, 'READ', (k) => (loop * BATCH + i * 7 + k) % FILE_PAGES));
    await unmap(data);
    const timed = async (read: () => Promise<Buffer>): Promise<number> => {
      const xs: number[] = [];
      for (let r = 0; r < 3; r++) {
        const t0 = performance.now();
        const got = await read();
        if (!got.equals(content)) throw new Error('sequential read returned the wrong bytes');
        xs.push(16 / ((performance.now() - t0) / 1000));
      }
      return median(xs);
    };
    const mappedMiBs = await timed(async () => {
      const map = session.mmap(data, { shared: true });
      const got: Buffer = await map.read(0, content.length);
      await map.unmap();
      return got;
    });
    const filesReadMiBs = await timed(() => client.read(data, 0, content.length));
    await session.close();
    return { grpcReadHole, grpcWriteAllocate, grpcMapped, mappedMiBs, filesReadMiBs };
  } finally {
    client.close();
    await server.stop();
  }
}

class Owner {
  private next = 1;
  private readonly resources = new Map<number, { release(reason: string): unknown }>();
  constructor(readonly id: string) {}
  notify(): void {}
  attach(r: { release(reason: string): unknown }): number {
    this.resources.set(this.next, r);
    return this.next++;
  }
  detach(h: number): boolean {
    return this.resources.delete(h);
  }
  async end(): Promise<void> {
    const all = [...this.resources.values()];
    this.resources.clear();
    for (const r of all) await r.release('closed');
  }
}

async function inProcessFigures(tree: string, dir: string): Promise<Pick<ChildFigures, 'inprocMapped' | 'bytesPerEntry'>> {
  const d = (m: string): Any => require(path.join(tree, 'dist', 'server', m));
  const { Dax } = d('dax/dax');
  const { FileSystem } = d('fs/filesystem');
  const { mkfs } = d('fs/mkfs');
  const { MmapStorage } = d('media/mmap-storage');
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const storage = MmapStorage.open(path.join(dir, 'inproc.vol'), { create: { sizeBytes: 2 ** 30 } });
  await mkfs(storage);
  const fsys = await FileSystem.mount(storage);
  const dax = new Dax(fsys);
  try {
    const pages = 16_384;
    const ino = (await fsys.create('mapped', true)).ino;
    await fsys.truncate(ino, pages * 4096);
    const writer = new Owner('writer');
    for (let pg = 0; pg < pages; pg++) await dax.fault(writer, ino, pg, 'WRITE', false);
    await dax.fsync(ino, false);
    const rates: number[] = [];
    for (let r = 0; r < 5; r++) {
      const o = new Owner(`reader-${r}`);
      const t0 = process.hrtime.bigint();
      for (let pg = 0; pg < pages; pg++) await dax.fault(o, ino, pg, 'READ', false);
      rates.push(pages / (Number(process.hrtime.bigint() - t0) / 1e9));
      await o.end();
    }
    const entries = 100_000;
    const mem = (await fsys.create('memory', true)).ino;
    await fsys.truncate(mem, entries * 4096);
    const o = new Owner('memory');
    gc();
    const m0 = process.memoryUsage();
    for (let pg = 0; pg < entries; pg++) await dax.fault(o, mem, pg, 'READ', false);
    gc();
    const m1 = process.memoryUsage();
    const bytesPerEntry = (m1.heapUsed + m1.arrayBuffers - m0.heapUsed - m0.arrayBuffers) / entries;
    await o.end();
    return { inprocMapped: median(rates), bytesPerEntry };
  } finally {
    await fsys.unmount();
  }
}

async function child(argv: string[]): Promise<void> {
  const arg = (name: string): string => argv[argv.indexOf(name) + 1];
  const tree = arg('--child');
  const dir = fs.mkdtempSync(path.join(arg('--tmp'), 'faults-rows-'));
  try {
    const grpc = await grpcFigures(tree, Number(arg('--seconds')), dir);
    const inproc = await inProcessFigures(tree, dir);
    process.stdout.write(`${JSON.stringify({ ...grpc, ...inproc })}\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Prints rows as a table: this build, the before build, after/before, and the reference. */
export function formatFaultRows(rows: BenchRow[]): string {
  const f = (n: number | undefined): string => (n === undefined ? '' : n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(2));
  const cells = rows.map((r) => [r.label, r.unit, f(r.daxd), f(r.before), r.before ? `${(r.daxd / r.before).toFixed(2)}x` : '', r.ref ? `${r.ref.name} ${f(r.ref.value)}` : '']);
  const head = ['faults and mappings', 'unit', 'after', 'before', 'a/b', 'ref'];
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => `| ${c.map((x, i) => (i >= 2 && i <= 4 ? x.padStart(w[i]) : x.padEnd(w[i]))).join(' | ')} |`;
  return [line(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...cells.map(line)].join('\n');
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  if (argv.includes('--child')) {
    child(argv).catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    });
  } else {
    const value = (name: string): string | undefined => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
    const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'daxd-faults-rows-'));
    faultsRows({
      tmpDir, seconds: Number(value('--seconds') ?? 1.5), rounds: Number(value('--rounds') ?? 3),
      beforeDir: value('--before') ?? process.env.BENCH_BEFORE ?? null, log: (s) => process.stderr.write(`${s}\n`),
    }).then((rows) => {
      process.stdout.write(`load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}\n${formatFaultRows(rows)}\n${JSON.stringify({ bench: 'faults-rows', loadAverage: os.loadavg(), rows })}\n`);
    }).catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    }).finally(() => fs.rmSync(tmpDir, { recursive: true, force: true }));
  }
}
