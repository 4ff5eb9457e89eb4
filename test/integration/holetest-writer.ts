/**
 * One holetest writer (fstests src/holetest.c): stores its 8-byte marker at its offset of
 * every page of a shared writable mapping, all pages at once (the SDK batches them).
 *
 * Imported by the holetest for in-process writers; run as a program for generic/345's
 * second process:
 *   node holetest-writer.js ADDRESS INO OWNER PAGES
 * It prints {"ready":true} once its session and mapping exist, waits for a line "go" on
 * stdin, stores, prints {"done":true,"stats":...} and exits 0 after closing its session
 * (on failure: {"error":"..."} and exit 1).
 */
import readline from 'node:readline';
import { DaxClient, type MappedFile } from '../../client';
import { PAGE } from '../support/units';

/** Client 0 writes at offset 1024 of each page, client 1 at 3072. */
export const MARKER_OFFSETS = [1024, 3072] as const;

export function marker(owner: 0 | 1, pg: number): Buffer {
  const m = Buffer.alloc(8);
  m.write(owner === 0 ? 'H0' : 'H1', 0, 'latin1');
  m[2] = 0xa5;
  m[3] = 0x5a;
  m.writeUInt32LE(pg, 4);
  return m;
}

/** A page as the holetest expects it: both markers, zeros elsewhere. */
export function expectedPage(pg: number): Buffer {
  const p = Buffer.alloc(PAGE);
  marker(0, pg).copy(p, MARKER_OFFSETS[0]);
  marker(1, pg).copy(p, MARKER_OFFSETS[1]);
  return p;
}

/** Every page's marker of `owner`, stored through the mapping, all in flight at once. */
export async function storeMarkers(m: MappedFile, owner: 0 | 1, pages: number): Promise<void> {
  await Promise.all(Array.from({ length: pages }, (_, pg) => m.write(pg * PAGE + MARKER_OFFSETS[owner], marker(owner, pg))));
}

async function main(argv: string[]): Promise<void> {
  const [address, inoArg, ownerArg, pagesArg] = argv;
  const owner = Number(ownerArg) as 0 | 1;
  const client = DaxClient.connect(address, { deadlineMs: 60_000 });
  try {
    const session = await client.openSession({ clientName: `holetest-writer-${owner}` });
    const m = session.mmap(Number(inoArg), { shared: true, writable: true });
    const lines = readline.createInterface({ input: process.stdin });
    const go = new Promise<void>((resolve) => lines.on('line', (l) => { if (l.trim() === 'go') resolve(); }));
    process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
    await go;
    lines.close();
    await storeMarkers(m, owner, Number(pagesArg));
    const stats = m.stats;
    await session.close();
    process.stdout.write(`${JSON.stringify({ done: true, stats })}\n`);
  } finally {
    client.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stdout.write(`${JSON.stringify({ error: String(err) })}\n`);
    process.exitCode = 1;
  });
}
