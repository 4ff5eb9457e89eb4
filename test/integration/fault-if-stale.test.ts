/**
 * Fault-then-store under a concurrent fsync loop (issue 10, defect 9). Writeback revokes
 * writable PTEs (S5): a client that takes a WRITE fault and then sends its Store lost
 * the race to an fsync in between, again and again (up to 62 re-faults for one byte).
 * Store and AccessBatch stores may carry fault_if_stale: when the PTE is stale or
 * read-only, the server takes the WRITE fault under the entry lock and stores before it
 * unlocks, so no writeback can come between, and returns the new PTE. MappedFile uses it.
 *
 * The writeback between fault and store is forced deterministically: the test runs an
 * Fsync after every FaultBatch reply and before the SDK sends its accesses.
 */
import assert from 'node:assert/strict';
import type { DaxClient, DaxSession } from '../../client';
import { PAGE, pattern, startInProcess, type InProcessServer } from './mapping-fixture';
import { clientFor } from './start-server';

describe('fault_if_stale: a store makes progress in one step under writeback', function () {
  this.timeout(60_000);
  let server: InProcessServer;
  let client: DaxClient;
  let session: DaxSession;
  let files = 0;

  before(async function () {
    server = await startInProcess('fault-if-stale');
    client = clientFor(server);
    session = await client.openSession({ clientName: 'fis' });
    await session.attached;
  });

  after(async function () {
    await session?.close();
    client?.close();
    if (server) assert.deepEqual(await server.stopAndFsck(), []);
  });

  async function sparse(pages: number): Promise<number> {
    const { ino } = await client.create(`fis-${files++}`, { exclusive: true });
    await client.truncate(ino, pages * PAGE);
    return ino;
  }

  it('MappedFile: an fsync after every fault reply costs no re-fault (one AccessBatch, 0 stale retries)', async function () {
    const ino = await sparse(4);
    const map = session.mmap(ino, { shared: true, writable: true });
    const rpc = map.rpc;
    const faultBatch = rpc.faultBatch.bind(rpc);
    let fsyncs = 0;
    rpc.faultBatch = async (...args) => {
      const out = await faultBatch(...args);
      await client.fsync(ino); // writeback downgrades the fresh writable PTEs
      fsyncs++;
      return out;
    };
    const data = pattern(5, 3 * PAGE);
    await map.write(PAGE / 2, data);
    assert.equal(map.stats.staleRetries, 0, 'stores were sent back to fault again');
    assert.deepEqual([map.stats.faultBatchCalls, map.stats.accessBatchCalls, fsyncs], [1, 1, 1]);
    assert.deepEqual(await client.read(ino, PAGE / 2, data.length), data);
    // The PTEs the stores faulted in are cached: the next write needs no fault.
    await map.write(PAGE, Buffer.from('again'));
    assert.deepEqual([map.stats.faultBatchCalls, map.stats.accessBatchCalls, map.stats.staleRetries], [1, 2, 0]);
    await map.unmap();
  });
});
