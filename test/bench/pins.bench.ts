/**
 * npm run bench:pins — DMA pins (issue 5's Performance section).
 *
 * Over gRPC (daxd as a child process, `bin/daxd.js serve` on 127.0.0.1:0; the SDK client
 * runs here), each case time-bounded (BENCH_SECONDS, default 1):
 *   - pin + unpin of one page, QD1 and QD16 (ops/s; one op = Pin and Unpin);
 *   - DMA 4 KiB read / write through a pin (DmaPin.dmaRead / dmaWrite), QD1 and QD16,
 *     next to Files.Read / Write of 4 KiB (unary, same stubs) at the same queue depth;
 *   - 1 MiB: DMA over 256 pinned pages (256 page calls, 64 in flight) next to one Files
 *     Read / Write of 1 MiB (unary) and the SDK's pipelined read / write;
 *   - Dma.Stream (client.dma): pin + 4 KiB DMA + unpin as one op next to the same cycle in
 *     three unary calls (QD16), and 1 MiB DMA as one op (DmaPin.streamRead / streamWrite,
 *     and pin + read + unpin) next to the SDK's 1 MiB read / write, QD1 and QD4.
 *   - BENCH_ONLY=stream runs only the Dma.Stream rows and their unary / Files neighbours.
 * In-process (Daxd.start in this process over a sparse volume file; calls go to the dax
 * layer directly, no network):
 *   - latency from the last unpin to the truncate's completion (the truncate waits on a
 *     pinned page, then the unpin wakes it): p50 / p99 over UNPIN_ROUNDS rounds
 *     (target p99 <= 1 ms);
 *   - truncate to 0 of a 1 GiB fallocated file with one pinned (written) page in it: time
 *     from the unpin to completion, next to the same truncate with no pin at all (after
 *     one uncounted round that faults the sparse volume's metadata pages in).
 *
 * Prints a table; `--json PATH` also writes every figure as JSON. Bounded: about 40 s.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { DaxClient, type DmaPin } from '../../client';
import type { Pin } from '../../server/dax/pin-table';
import { Daxd } from '../../server/server';
import { TestOwner } from '../support/test-owner';
import { startServer, tempDir } from '../support/start-server';
import { MiB, PAGE } from '../support/units';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);
/** Before each case (the first cases otherwise measure the JIT warming up). */
const WARMUP_SECONDS = 0.5;
const GIB = 1024 * MiB;
const FILE_BYTES = 16 * MiB;
const UNPIN_ROUNDS = Number(process.env.BENCH_UNPIN_ROUNDS ?? 2000);
const DMA_LANES_1MIB = 64;
/** BENCH_ONLY=stream: only the Dma.Stream rows and their neighbours (no in-process cases). */
const ONLY_STREAM = process.env.BENCH_ONLY === 'stream';

interface Measured {
  ops: number;
  opsPerSec: number;
  mbPerSec: number;
  p50Us: number;
  p99Us: number;
  /** CPU time per op of this process and of the server process (gRPC cases): robust to a busy machine. */
  clientCpuUsPerOp?: number;
  serverCpuUsPerOp?: number;
}

interface Row {
  case: string;
  group: 'pin' | 'dma-4k' | 'dma-1m' | 'in-process';
  measured: Measured;
  note?: string;
}

function percentiles(samplesUs: number[]): { p50Us: number; p99Us: number } {
  const s = [...samplesUs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? 0;
  return { p50Us: Math.round(at(0.5)), p99Us: Math.round(at(0.99)) };
}

/** Clock ticks per second of /proc/PID/stat (100 on Linux). */
const CLK_TCK = 100;

/** utime + stime of a process, in microseconds (0 where /proc is missing). */
function processCpuUs(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** The server process whose CPU time the gRPC cases record. */
let serverPid = 0;

/** Runs `op` on `qd` lanes for `seconds`; each op moves `bytesPerOp`. */
async function measure(qd: number, seconds: number, bytesPerOp: number, op: (lane: number) => Promise<void>): Promise<Measured> {
  const latencies: number[] = [];
  const endAt = performance.now() + seconds * 1000;
  const t0 = performance.now();
  const clientCpu0 = process.cpuUsage();
  const serverCpu0Us = serverPid ? processCpuUs(serverPid) : 0;
  await Promise.all(Array.from({ length: qd }, async (_, lane) => {
    while (performance.now() < endAt) {
      const s = performance.now();
      await op(lane);
      latencies.push((performance.now() - s) * 1000);
    }
  }));
  const elapsedS = (performance.now() - t0) / 1000;
  const clientCpu = process.cpuUsage(clientCpu0);
  const ops = latencies.length;
  return {
    ops, opsPerSec: ops / elapsedS, mbPerSec: (ops * bytesPerOp) / elapsedS / 1e6, ...percentiles(latencies),
    clientCpuUsPerOp: Math.round((clientCpu.user + clientCpu.system) / ops),
    ...(serverPid ? { serverCpuUsPerOp: Math.round((processCpuUs(serverPid) - serverCpu0Us) / ops) } : {}),
  };
}

async function bench(qd: number, bytesPerOp: number, op: (lane: number) => Promise<void>): Promise<Measured> {
  await measure(qd, WARMUP_SECONDS, bytesPerOp, op);
  return measure(qd, SECONDS, bytesPerOp, op);
}

function unary<Res>(invoke: (cb: (err: Error | null, res?: Res) => void) => void): Promise<Res> {
  return new Promise((resolve, reject) => invoke((err, res) => (err ? reject(err) : resolve(res as Res))));
}

async function grpcCases(rows: Row[], tmpDir: string): Promise<void> {
  const server = await startServer({ volumePath: path.join(tmpDir, 'bench-pins.vol'), size: '256M' });
  const client = DaxClient.connect(server.address, { deadlineMs: 30_000 });
  serverPid = server.pid;
  try {
    const file = await client.create('bench-pins');
    await client.write(file.ino, 0, Buffer.alloc(FILE_BYTES, 1));
    await client.fsync(file.ino);
    const ino = file.ino;
    const session = await client.openSession({ clientName: 'bench-pins' });
    await session.attached;
    const pages = FILE_BYTES / PAGE;
    const randomPage = () => Math.floor(Math.random() * pages);
    const files = client.raw.files;
    const page4k = Buffer.alloc(PAGE, 0x5a);
    const mib = Buffer.alloc(MiB, 0x5b);

    if (!ONLY_STREAM) {
    for (const qd of [1, 16]) {
      rows.push({
        case: `pin + unpin 1 page, QD${qd}`, group: 'pin',
        measured: await bench(qd, 0, async () => {
          const p = await client.pin(ino, randomPage(), 1, { writable: false, session });
          await p.unpin();
        }),
      });
    }
    rows.push({
      case: 'pin + unpin 256 pages writable, QD1', group: 'pin',
      measured: await bench(1, 0, async () => {
        const p = await client.pin(ino, 256 * Math.floor(Math.random() * (pages / 256)), 256, { writable: true, session });
        await p.unpin();
      }),
    });

    }
    // 4 KiB: one long-lived pin over the whole 16 MiB file per lane (4096 pages = 4 pins of 1024).
    const pins: DmaPin[] = [];
    for (let first = 0; first < pages; first += 1024) pins.push(await client.pin(ino, first, 1024, { writable: true, session }));
    const pinnedPage = () => {
      const pg = randomPage();
      return { pin: pins[Math.floor(pg / 1024)], page: pg % 1024 };
    };
    if (!ONLY_STREAM) {
    for (const qd of [1, 16]) {
      rows.push({ case: `DMA read 4 KiB, QD${qd}`, group: 'dma-4k', measured: await bench(qd, PAGE, async () => { const t = pinnedPage(); await t.pin.dmaRead(t.page, 0, PAGE); }) });
      rows.push({ case: `Files.Read 4 KiB (unary), QD${qd}`, group: 'dma-4k', measured: await bench(qd, PAGE, async () => { await unary((cb) => files.Read({ ino, offset: randomPage() * PAGE, length: PAGE }, cb)); }) });
      rows.push({ case: `DMA write 4 KiB, QD${qd}`, group: 'dma-4k', measured: await bench(qd, PAGE, async () => { const t = pinnedPage(); await t.pin.dmaWrite(t.page, 0, page4k); }) });
      rows.push({ case: `Files.Write 4 KiB (unary), QD${qd}`, group: 'dma-4k', measured: await bench(qd, PAGE, async () => { await unary((cb) => files.Write({ ino, offset: randomPage() * PAGE, data: page4k }, cb)); }) });
    }
    }

    // 1 MiB = 256 pinned pages of one pin, 64 page calls in flight.
    const dma1m = async (write: boolean): Promise<void> => {
      const t = pinnedPage();
      const first = t.page - (t.page % 256);
      let next = 0;
      await Promise.all(Array.from({ length: DMA_LANES_1MIB }, async () => {
        while (next < 256) {
          const i = next++;
          if (write) await t.pin.dmaWrite(first + i, 0, mib.subarray(i * PAGE, (i + 1) * PAGE));
          else await t.pin.dmaRead(first + i, 0, PAGE);
        }
      }));
    };
    const randomMib = () => Math.floor(Math.random() * (FILE_BYTES / MiB)) * MiB;
    if (!ONLY_STREAM) {
    rows.push({ case: 'DMA read 1 MiB (256 pages, 64 in flight)', group: 'dma-1m', measured: await bench(1, MiB, () => dma1m(false)) });
    rows.push({ case: 'Files.Read 1 MiB (unary)', group: 'dma-1m', measured: await bench(1, MiB, async () => { await unary((cb) => files.Read({ ino, offset: randomMib(), length: MiB }, cb)); }) });
    rows.push({ case: 'SDK read 1 MiB (ReadStream)', group: 'dma-1m', measured: await bench(1, MiB, async () => { await client.read(ino, randomMib(), MiB); }) });
    rows.push({ case: 'DMA write 1 MiB (256 pages, 64 in flight)', group: 'dma-1m', measured: await bench(1, MiB, () => dma1m(true)) });
    rows.push({ case: 'Files.Write 1 MiB (unary)', group: 'dma-1m', measured: await bench(1, MiB, async () => { await unary((cb) => files.Write({ ino, offset: randomMib(), data: mib }, cb)); }) });
    rows.push({ case: 'SDK write 1 MiB (WriteStream)', group: 'dma-1m', measured: await bench(1, MiB, async () => { await client.write(ino, randomMib(), mib); }) });
    }
    // Dma.Stream (client.dma): a whole pin cycle is one op; a 1 MiB DMA is one op through the pin.
    for (const qd of [16]) {
      for (const write of [false, true]) {
        const what = write ? 'write' : 'read';
        rows.push({
          case: `pin + DMA ${what} 4 KiB + unpin, 3 unary calls, QD${qd}`, group: 'pin',
          measured: await bench(qd, PAGE, async () => {
            const p = await client.pin(ino, randomPage(), 1, { writable: write, session });
            if (write) await p.dmaWrite(0, 0, page4k);
            else await p.dmaRead(0, 0, PAGE);
            await p.unpin();
          }),
        });
        rows.push({
          case: `pin + DMA ${what} 4 KiB + unpin, Dma.Stream (1 op), QD${qd}`, group: 'pin',
          measured: await bench(qd, PAGE, async () => {
            if (write) await client.dma.writeCycle(session, ino, randomPage(), 1, { page: 0, offset: 0, data: page4k });
            else await client.dma.readCycle(session, ino, randomPage(), 1, { page: 0, offset: 0, length: PAGE });
          }),
        });
      }
    }
    for (const qd of [1, 4]) {
      rows.push({ case: `DMA read 1 MiB (Dma.Stream, 1 op), QD${qd}`, group: 'dma-1m', measured: await bench(qd, MiB, async () => { const t = pinnedPage(); await t.pin.streamRead(t.page - (t.page % 256), 0, MiB); }) });
      rows.push({ case: `SDK read 1 MiB (ReadStream), QD${qd}`, group: 'dma-1m', measured: await bench(qd, MiB, async () => { await client.read(ino, randomMib(), MiB); }) });
      rows.push({ case: `DMA write 1 MiB (Dma.Stream, 1 op), QD${qd}`, group: 'dma-1m', measured: await bench(qd, MiB, async () => { const t = pinnedPage(); await t.pin.streamWrite(t.page - (t.page % 256), 0, mib); }) });
      rows.push({ case: `SDK write 1 MiB (WriteStream), QD${qd}`, group: 'dma-1m', measured: await bench(qd, MiB, async () => { await client.write(ino, randomMib(), mib); }) });
      rows.push({ case: `pin + DMA read 1 MiB + unpin (Dma.Stream, 1 op), QD${qd}`, group: 'dma-1m', measured: await bench(qd, MiB, async () => { await client.dma.readCycle(session, ino, randomMib() / PAGE, 256, { page: 0, offset: 0, length: MiB }); }) });
    }
    for (const p of pins) await p.unpin();
    await session.close();
  } finally {
    serverPid = 0;
    client.close();
    await server.stop();
  }
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** The truncate is asleep on a pin (registered waiter, mmap lock released). */
async function untilWaiting(daxd: Daxd, ino: number): Promise<void> {
  for (let i = 0; ; i++) {
    const as = daxd.dax.spaceStats(ino);
    if (as && as.layoutBreaksWaiting > 0 && !as.mmapLockHeld) return;
    if (i > 1_000_000) throw new Error('the truncate never waited for the pin');
    await turn();
  }
}

async function inProcessCases(rows: Row[], tmpDir: string): Promise<void> {
  const daxd = await Daxd.start({
    volumePath: path.join(tmpDir, 'bench-pins-inproc.vol'), sizeBytes: 2 * GIB, grpcAddress: '127.0.0.1:0', log: pino({ level: 'silent' }),
  });
  const { dax, fs: vfs } = daxd;
  const owner = new TestOwner('bench');
  try {
    // Last unpin -> truncate completion.
    const f = await vfs.create('unpin-latency', true);
    const samplesUs: number[] = [];
    const t0 = performance.now();
    for (let round = 0; round < UNPIN_ROUNDS; round++) {
      await vfs.write(f.ino, 0, Buffer.alloc(4 * PAGE, 1 + (round % 200)), false);
      const pins: Pin[] = [];
      for (let pg = 0; pg < 4; pg++) pins.push(await dax.pin(owner, { ino: f.ino, firstPgoff: pg, npages: 1, writable: round % 2 === 0, leaseMs: 0 }));
      const truncating = vfs.truncate(f.ino, 0);
      for (const p of pins.slice(0, 3)) {
        await untilWaiting(daxd, f.ino);
        dax.unpin(owner, p.id);
      }
      await untilWaiting(daxd, f.ino);
      const s = performance.now();
      dax.unpin(owner, pins[3].id);
      await truncating;
      samplesUs.push((performance.now() - s) * 1000);
      if (round % 256 === 255) await vfs.commit();
    }
    const elapsedS = (performance.now() - t0) / 1000;
    rows.push({
      case: 'last unpin -> truncate done (4 pinned pages)', group: 'in-process',
      measured: { ops: samplesUs.length, opsPerSec: samplesUs.length / elapsedS, mbPerSec: 0, ...percentiles(samplesUs) },
      note: 'target p99 <= 1000 us',
    });

    // 1 GiB: truncate with one pinned page in the middle, and without.
    const big = await vfs.create('one-gib', true);
    const oneGib = async (pinned: boolean): Promise<Measured> => {
      await vfs.fallocate(big.ino, 'ALLOCATE', 0, GIB);
      await vfs.commit();
      const p = pinned ? await dax.pin(owner, { ino: big.ino, firstPgoff: GIB / PAGE / 2, npages: 1, writable: true, leaseMs: 0 }) : null;
      let s = performance.now();
      const truncating = vfs.truncate(big.ino, 0);
      if (p) {
        await untilWaiting(daxd, big.ino);
        s = performance.now();
        dax.unpin(owner, p.id);
      }
      await truncating;
      const us = (performance.now() - s) * 1000;
      await vfs.commit();
      return { ops: 1, opsPerSec: 1e6 / us, mbPerSec: GIB / us, p50Us: Math.round(us), p99Us: Math.round(us) };
    };
    // The first round faults in the volume's bitmap and map pages (a sparse file): not counted.
    await oneGib(false);
    rows.push({ case: 'truncate 1 GiB, no pin', group: 'in-process', measured: await oneGib(false), note: 'whole truncate' });
    rows.push({ case: 'truncate 1 GiB, 1 pinned page: unpin -> done', group: 'in-process', measured: await oneGib(true), note: 'from the unpin' });
  } finally {
    await daxd.stop();
  }
}

function printTable(rows: Row[]): void {
  const head = ['case', 'ops/s', 'MB/s', 'p50 us', 'p99 us', 'cpu us/op c+s', 'note'];
  const body = rows.map((r) => [
    r.case, r.measured.opsPerSec.toFixed(0), r.measured.mbPerSec ? r.measured.mbPerSec.toFixed(0) : '-',
    String(r.measured.p50Us), String(r.measured.p99Us),
    r.measured.serverCpuUsPerOp !== undefined ? `${r.measured.clientCpuUsPerOp}+${r.measured.serverCpuUsPerOp}` : '-', r.note ?? '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 || i === 6 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
  process.stdout.write(`${line(head)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|\n${body.map(line).join('\n')}\n`);
}

async function main(): Promise<void> {
  const jsonAt = process.argv.indexOf('--json');
  const jsonPath = jsonAt >= 0 ? process.argv[jsonAt + 1] : undefined;
  const tmp = tempDir('daxd-bench-pins-');
  const rows: Row[] = [];
  const t0 = performance.now();
  try {
    await grpcCases(rows, tmp.dir);
    process.stderr.write('  measured the gRPC cases\n');
    if (!ONLY_STREAM) await inProcessCases(rows, tmp.dir);
  } finally {
    tmp.remove();
  }
  printTable(rows);
  const unpin = rows.find((r) => r.case.startsWith('last unpin'));
  const summary = {
    bench: 'pins', seconds: SECONDS, totalSeconds: (performance.now() - t0) / 1000, loadAverage: os.loadavg(), cpus: os.cpus().length,
    nodeVersion: process.version, unpinToTruncateP99TargetMet: unpin ? unpin.measured.p99Us <= 1000 : null, rows,
  };
  if (jsonPath) {
    fs.mkdirSync(path.dirname(path.resolve(jsonPath)), { recursive: true });
    fs.writeFileSync(jsonPath, `${JSON.stringify(summary, null, 2)}\n`);
  }
  process.stdout.write(`load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} on ${os.cpus().length} CPUs\n`);
  if (unpin) process.stdout.write(`p99 last unpin -> truncate done: ${unpin.measured.p99Us} us (target <= 1000 us: ${summary.unpinToTruncateP99TargetMet ? 'met' : 'NOT met'})\n`);
  process.stdout.write(`total ${summary.totalSeconds.toFixed(1)} s\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err instanceof Error ? err.stack : err)}\n`);
  process.exit(1);
});
