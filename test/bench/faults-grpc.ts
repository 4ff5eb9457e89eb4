/**
 * The gRPC half of `npm run bench:faults`: a daxd child process on 127.0.0.1:0 (its own
 * CPU, as in production), driven from this process over one connection.
 *
 * - faults: READ faults on the pages of a written 16 MiB file (MAPPED entries), unary
 *   Mapping.Fault at queue depth 1 and 16, and Mapping.FaultBatch of 1024 ops at QD 1 and
 *   4. The session's PTEs are dropped (Unmap) between runs, untimed.
 * - load+store: through 1024 writable PTEs, half loads and half stores, of 64 bytes and of
 *   4 KiB: unary Load/Store at QD 1 and 16, AccessBatch of 1024 ops at QD 1 and 4.
 * - mapped sequential read: MappedFile.read of the whole 16 MiB file (faults + loads,
 *   batched by the SDK), next to Files.Read of it through the SDK's read stream.
 * Each figure is the median of `reps` runs of `seconds` each.
 */
import path from 'node:path';
import { DaxClient } from '../../client';
import type { RawClients } from '../../client/raw-clients';
import { startServer } from '../support/start-server';
import { PAGE } from '../support/units';

const FILE_PAGES = 4096;
const BATCH = 1024;

export interface GrpcConfig {
  reps: number;
  seconds: number;
}

export interface GrpcResult {
  faults: { unaryQd1: number; unaryQd16: number; batchQd1: number; batchQd4: number };
  access64: { unaryQd1: number; unaryQd16: number; batchQd1: number; batchQd4: number };
  access4k: { unaryQd1: number; unaryQd16: number; batchQd1: number; batchQd4: number };
  mappedReadMiBPerSec: number;
  filesReadMiBPerSec: number;
}

function unary<Res>(invoke: (cb: (err: Error | null, res?: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    invoke((err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Runs `op` from `qd` loops for `seconds`; ops/s (each call of op counts `weight` ops). */
async function closedLoop(seconds: number, qd: number, weight: number, op: (loop: number, i: number) => Promise<void>): Promise<number> {
  const endAt = performance.now() + seconds * 1000;
  const t0 = performance.now();
  let ops = 0;
  await Promise.all(Array.from({ length: qd }, async (_, loop) => {
    for (let i = 0; performance.now() < endAt; i++) {
      await op(loop, i);
      ops += weight;
    }
  }));
  return ops / ((performance.now() - t0) / 1000);
}

export async function runGrpc(cfg: GrpcConfig, tmpDir: string, log: (s: string) => void): Promise<GrpcResult> {
  const server = await startServer({ volumePath: path.join(tmpDir, 'grpc.vol'), size: '256M' });
  const client = DaxClient.connect(server.address, { deadlineMs: 60_000 });
  try {
    const raw: RawClients = client.raw;
    const { ino } = await client.create('bench');
    const content = Buffer.alloc(FILE_PAGES * PAGE);
    for (let i = 0; i < content.length; i += 64) content[i] = i & 0xff;
    await client.write(ino, 0, content);
    const session = await client.openSession({ clientName: 'bench:faults' });
    const sid = session.id;
    const unmapAll = () => unary((cb) => raw.mapping.Unmap({ session_id: sid, ino, first_pgoff: 0, last_pgoff: FILE_PAGES }, cb));

    const runs = async (label: string, run: () => Promise<number>): Promise<number> => {
      const xs: number[] = [];
      for (let r = 0; r < cfg.reps; r++) {
        xs.push(await run());
        await unmapAll();
      }
      log(`  ${label}: ${Math.round(median(xs))}/s`);
      return median(xs);
    };

    // ---- faults
    const unaryFault = (loop: number, i: number) => unary((cb) => raw.mapping.Fault({ session_id: sid, ino, pgoff: (loop * 997 + i) % FILE_PAGES, kind: 'READ' }, cb)).then(() => undefined);
    const batchOps = (loop: number, i: number) => Array.from({ length: BATCH }, (_, k) => ({ pgoff: (loop * BATCH + i * 7 + k) % FILE_PAGES, kind: 'READ' as const }));
    const batchFault = (loop: number, i: number) => unary((cb) => raw.mapping.FaultBatch({ session_id: sid, ino, ops: batchOps(loop, i) }, cb)).then(() => undefined);
    await closedLoop(0.2, 4, 1, unaryFault); // warm-up
    await unmapAll();
    const faults = {
      unaryQd1: await runs('Fault unary QD1', () => closedLoop(cfg.seconds, 1, 1, unaryFault)),
      unaryQd16: await runs('Fault unary QD16', () => closedLoop(cfg.seconds, 16, 1, unaryFault)),
      batchQd1: await runs('FaultBatch(1024) QD1', () => closedLoop(cfg.seconds, 1, BATCH, batchFault)),
      batchQd4: await runs('FaultBatch(1024) QD4', () => closedLoop(cfg.seconds, 4, BATCH, batchFault)),
    };

    // ---- loads and stores through writable PTEs
    const accesses = async (size: number) => {
      const r = await unary<{ results: Array<{ pte: { token: string } | null }> }>((cb) => raw.mapping.FaultBatch({
        session_id: sid, ino, ops: Array.from({ length: BATCH }, (_, k) => ({ pgoff: k, kind: 'WRITE' as const })),
      }, cb));
      const tokens = r.results.map((x) => x.pte?.token ?? '');
      const data = Buffer.alloc(size, 0x5a);
      const one = (loop: number, i: number) => {
        const token = tokens[(loop * 131 + i) % BATCH];
        return i % 2 === 0
          ? unary((cb) => raw.mapping.Load({ session_id: sid, token, offset: 0, length: size }, cb)).then(() => undefined)
          : unary((cb) => raw.mapping.Store({ session_id: sid, token, offset: 0, data }, cb)).then(() => undefined);
      };
      const ops = tokens.map((token, k) => (k % 2 === 0 ? { token, offset: 0, length: size } : { token, offset: 0, data, store: true }));
      const batch = () => unary((cb) => raw.mapping.AccessBatch({ session_id: sid, ops }, cb)).then(() => undefined);
      const rate = async (qd: number, w: number, op: (l: number, i: number) => Promise<void>): Promise<number> => {
        const xs: number[] = [];
        for (let k = 0; k < cfg.reps; k++) xs.push(await closedLoop(cfg.seconds, qd, w, op));
        log(`  ${size} B load+store ${w === 1 ? 'unary' : 'AccessBatch(1024)'} QD${qd}: ${Math.round(median(xs))}/s`);
        return median(xs);
      };
      const out = { unaryQd1: await rate(1, 1, one), unaryQd16: await rate(16, 1, one), batchQd1: await rate(1, BATCH, batch), batchQd4: await rate(4, BATCH, batch) };
      await unmapAll();
      return out;
    };
    const access64 = await accesses(64);
    const access4k = await accesses(PAGE);

    // ---- mapped sequential read vs Files.Read (the stores above changed pages: restore them)
    await client.write(ino, 0, content);
    const seqRead = async (read: () => Promise<Buffer>) => {
      const xs: number[] = [];
      for (let r = 0; r < cfg.reps; r++) {
        const t0 = performance.now();
        const got = await read();
        if (!got.equals(content)) throw new Error('sequential read returned the wrong bytes');
        xs.push(content.length / (1024 * 1024) / ((performance.now() - t0) / 1000));
      }
      return median(xs);
    };
    const mappedReadMiBPerSec = await seqRead(async () => {
      const map = session.mmap(ino, { shared: true });
      const data = await map.read(0, content.length);
      await map.unmap();
      return data;
    });
    const filesReadMiBPerSec = await seqRead(() => client.read(ino, 0, content.length));
    log(`  16 MiB sequential read: mapped ${mappedReadMiBPerSec.toFixed(0)} MiB/s, Files.Read ${filesReadMiBPerSec.toFixed(0)} MiB/s`);
    await session.close();
    return { faults, access64, access4k, mappedReadMiBPerSec, filesReadMiBPerSec };
  } finally {
    client.close();
    await server.stop();
  }
}
