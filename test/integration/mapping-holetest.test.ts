/**
 * holetest over gRPC (fstests src/holetest.c: generic/340, 344, 345, 346;
 * faults on holes), S1 + S2 + S3, against a real daxd child process.
 *
 * Two clients (each its own connection and session) store 8-byte markers, client 0 at
 * offset 1024 and client 1 at 3072 of every page of one file mapped shared and writable,
 * concurrently, every page in flight at once (MappedFile batches them: FaultBatch +
 * AccessBatch). Files prepared three ways: zero-filled (WRITTEN), fallocated (UNWRITTEN:
 * the WRITE fault converts and zeroes), sparse (holes: the WRITE fault allocates). 1 and
 * 16 MiB.
 * - 340: the stores.
 * - 344: first both clients read one byte of every page through their mappings (zero pages
 *   on holes and unwritten blocks), then the stores: every zero-page PTE must be revoked
 *   before its entry becomes MAPPED.
 * - 345: client 0 is a separate process (holetest-writer.js, the SDK there too).
 * - 346: client 0 uses Files.Write instead of stores (S3: the write's allocation
 *   invalidates client 1's zero pages).
 * Pass: every page holds both markers and zeros elsewhere through Read, through a fresh
 * mapping of a third session, and through each writer's own mapping; no block allocated
 * twice (distinct pfns in Inspect, stat.blocks = pages); fsck clean after the server stops.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import type { DaxClient, MappedFile } from '../../client';
import type { RawClients } from '../../client/raw-clients';
import { expectedPage, marker, MARKER_OFFSETS, storeMarkers } from './holetest-writer';
import { fsckVolume, inspect, prepareFile, PREPS, type Prep } from './mapping-fixture';
import { MiB, PAGE } from '../support/units';
import { rawClients } from '../support/raw-rpc';
import { clientFor, startServer, tempDir, type StartedServer } from '../support/start-server';

type Variant = '340' | '344' | '345' | '346';
const VARIANTS: readonly Variant[] = ['340', '344', '345', '346'];
const SIZES = [1 * MiB, 16 * MiB];
const WRITER_JS = path.join(__dirname, 'holetest-writer.js');

/** Client 0 as a separate process (345): resolves when it is ready; `go()` starts it, `done` ends. */
async function childWriter(address: string, ino: number, pages: number): Promise<{ go(): void; done: Promise<unknown> }> {
  const child = spawn(process.execPath, [WRITER_JS, address, String(ino), '0', String(pages)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout });
  const messages: Array<Record<string, unknown>> = [];
  let notify: () => void = () => undefined;
  lines.on('line', (l) => { messages.push(JSON.parse(l) as Record<string, unknown>); notify(); });
  const next = (key: string) => new Promise<Record<string, unknown>>((resolve, reject) => {
    const check = () => {
      const found = messages.find((m) => key in m || 'error' in m);
      if (found && 'error' in found) reject(new Error(`holetest writer: ${String(found.error)}`));
      else if (found) resolve(found);
    };
    notify = check;
    check();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await Promise.race([next('ready'), exited.then((code) => { throw new Error(`holetest writer exited (${code}) before ready`); })]);
  const done = (async () => {
    const msg = await Promise.race([next('done'), exited.then((code) => { throw new Error(`holetest writer exited (${code}) early`); })]);
    assert.equal(await exited, 0, 'holetest writer exit status');
    return msg.stats;
  })();
  return { go: () => child.stdin.write('go\n'), done };
}

describe('holetest over gRPC (generic/340, 344, 345, 346)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;
  let clients: DaxClient[];
  let raw: RawClients;
  let files = 0;

  before(async function () {
    tmp = tempDir();
    server = await startServer({ volumePath: path.join(tmp.dir, 'holetest.vol'), size: '384M' });
    clients = [0, 1, 2].map(() => clientFor(server, { deadlineMs: 60_000 }));
    raw = rawClients(server.address);
  });

  after(async function () {
    for (const c of clients ?? []) c.close();
    raw?.close();
    if (server) {
      assert.deepEqual(await server.stop(), { code: 0, signal: null });
      assert.deepEqual(await fsckVolume(server.volumePath), [], 'fsck after every holetest');
    }
    tmp?.remove();
  });

  async function verify(ino: number, sizeBytes: number, own: MappedFile[]): Promise<void> {
    const pages = sizeBytes / PAGE;
    const expected = Buffer.concat(Array.from({ length: pages }, (_, pg) => expectedPage(pg)));
    const firstBad = (got: Buffer) => Array.from({ length: pages }, (_, pg) => pg).find((pg) => !got.subarray(pg * PAGE, (pg + 1) * PAGE).equals(expectedPage(pg)));
    const viaRead = await clients[2].read(ino, 0, sizeBytes);
    assert.equal(firstBad(viaRead), undefined, 'through Read: page with a missing marker or stale bytes');
    const session = await clients[2].openSession({ clientName: 'verifier' });
    const fresh = session.mmap(ino, { shared: true });
    assert.ok((await fresh.read(0, sizeBytes)).equals(expected), `through a fresh mapping (first bad page ${firstBad(await fresh.read(0, sizeBytes))})`);
    for (const m of own) assert.ok((await m.read(0, sizeBytes)).equals(expected), `through writer mapping of session ${m.sessionId}`);
    await session.close();
    // No page allocated twice: one block per page, distinct, and the one the file maps.
    const info = await clients[2].stat(ino);
    assert.equal(info.blocks, pages, 'stat.blocks = pages');
    const entries = await inspect(raw, ino, 0, pages - 1);
    const mapped = entries.filter((e) => e.state === 'MAPPED');
    assert.equal(new Set(mapped.map((e) => e.pfn)).size, mapped.length, 'distinct pfns in Inspect');
    assert.ok(entries.every((e) => !e.locked && e.waiters === 0), 'no entry left locked or waited on');
  }

  async function holetest(prep: Prep, sizeBytes: number, variant: Variant): Promise<void> {
    const pages = sizeBytes / PAGE;
    const ino = await prepareFile(clients[0], `holetest-${files++}`, prep, sizeBytes);
    const sessions = await Promise.all([0, 1].map((i) => clients[i].openSession({ clientName: `holetest-${i}` })));
    const maps = sessions.map((s) => s.mmap(ino, { shared: true, writable: true }));

    if (variant === '344') {
      // Read one byte of every page through both mappings: zero pages everywhere.
      await Promise.all([0, 1].flatMap((i) => Array.from({ length: pages }, async (_, pg) => {
        const b = await maps[i].read(pg * PAGE + MARKER_OFFSETS[i], 1);
        assert.equal(b[0], 0, `prefault of page ${pg}`);
      })));
      const entries = await inspect(raw, ino, 0, pages - 1);
      const state = prep === 'zero-filled' ? 'MAPPED' : 'ZERO';
      assert.equal(entries.length, pages);
      assert.ok(entries.every((e) => e.state === state && e.mappers === 2), `every page ${state} with both sessions' read PTEs`);
      // Batched: one FaultBatch per 1024 pages, not one call per page; its READ faults
      // bring the pages along (load), so no AccessBatch.
      const calls = Math.ceil(pages / 1024);
      for (const m of maps) assert.deepEqual([m.stats.faultBatchCalls, m.stats.accessBatchCalls], [calls, 0], 'prefault round trips');
    }

    let writer0: Promise<unknown>;
    if (variant === '345') {
      const child = await childWriter(server.address, ino, pages);
      child.go();
      writer0 = child.done;
    } else if (variant === '346') {
      writer0 = Promise.all(Array.from({ length: pages }, (_, pg) => clients[0].write(ino, pg * PAGE + MARKER_OFFSETS[0], marker(0, pg))));
    } else {
      writer0 = storeMarkers(maps[0], 0, pages);
    }
    await Promise.all([writer0, storeMarkers(maps[1], 1, pages)]);

    const own = variant === '340' || variant === '344' ? maps : [maps[1]];
    await verify(ino, sizeBytes, own);
    await Promise.all(sessions.map((s) => s.close()));
  }

  for (const sizeBytes of SIZES) {
    for (const prep of PREPS) {
      for (const variant of VARIANTS) {
        it(`${variant}: ${prep} file of ${sizeBytes / MiB} MiB`, async function () {
          await holetest(prep, sizeBytes, variant);
        });
      }
    }
  }

  it('the volume holds every holetest file with the right size', async function () {
    let n = 0;
    for await (const f of clients[2].listAll('holetest-')) {
      assert.ok(SIZES.includes(f.size));
      n++;
    }
    assert.equal(n, files);
  });
});
