/**
 * S5 for DMA: data a device wrote through a writable pin is dirty file data. After the
 * unpin, Msync of the range (and fsync) makes it durable, whether or not the page was
 * ever mapped; a read-only pin dirties nothing. In-process on MemoryStorage, whose
 * durable image holds only what was flushed.
 */
import assert from 'node:assert/strict';
import { durableBlock, freshDax, writtenFile } from '../support/dax-volume';
import { PAGE } from '../support/units';
import { TestOwner } from '../support/test-owner';

describe('dma: DMA writes reach the medium at msync / fsync (S5)', function () {
  it('writable pin: DMA write, unpin, Msync of the range flushes the block', async function () {
    const v = await freshDax();
    const ino = await writtenFile(v, 'f', 2, () => 0x01);
    await v.fs.fsync(ino, false);
    const owner = new TestOwner('dev');
    const p = await v.dax.pin(owner, { ino, firstPgoff: 1, npages: 1, writable: true, leaseMs: 0 });
    const data = Buffer.alloc(PAGE, 0xd1);
    await v.dax.dmaWrite(owner, p.id, 0, 0, data);
    v.dax.unpin(owner, p.id);
    assert.notDeepEqual(durableBlock(v.storage, p.pfns[0]), data, 'flushed before any msync (the test proves nothing)');
    await v.dax.msync(ino, 1, 1);
    assert.deepEqual(durableBlock(v.storage, p.pfns[0]), data, 'Msync did not flush the DMA data');
  });

  it('a DMA write spanning pages (Dma.Stream) dirties every block it touched: fsync flushes them all', async function () {
    const v = await freshDax();
    const ino = await writtenFile(v, 'span', 6, () => 0x01);
    await v.fs.fsync(ino, false);
    const owner = new TestOwner('dev');
    const p = await v.dax.pin(owner, { ino, firstPgoff: 0, npages: 6, writable: true, leaseMs: 0 });
    const data = Buffer.alloc(4 * PAGE, 0xd3);
    await v.dax.dmaWrite(owner, p.id, 1, 0, data); // pages 1..4 in one DMA
    v.dax.unpin(owner, p.id);
    for (let i = 1; i <= 4; i++) assert.notDeepEqual(durableBlock(v.storage, p.pfns[i]), Buffer.alloc(PAGE, 0xd3), `page ${i} flushed before fsync (the test proves nothing)`);
    await v.fs.fsync(ino, false);
    for (let i = 1; i <= 4; i++) assert.deepEqual(durableBlock(v.storage, p.pfns[i]), Buffer.alloc(PAGE, 0xd3), `fsync did not flush page ${i} of the DMA`);
    assert.deepEqual(durableBlock(v.storage, p.pfns[5]), Buffer.alloc(PAGE, 0x01));
  });

  it('writable pin over a hole: fsync makes the allocation and the DMA data durable', async function () {
    const v = await freshDax();
    const { ino } = await v.fs.create('sparse', true);
    await v.fs.truncate(ino, 4 * PAGE);
    const owner = new TestOwner('dev');
    const p = await v.dax.pin(owner, { ino, firstPgoff: 2, npages: 1, writable: true, leaseMs: 0 });
    assert.equal(v.fs.iomap(ino, 2).state, 'WRITTEN', 'a writable pin allocates');
    await v.dax.dmaWrite(owner, p.id, 0, 10, Buffer.from('device data'));
    v.dax.unpin(owner, p.id);
    await v.dax.fsync(ino, false);
    const block = durableBlock(v.storage, p.pfns[0]);
    assert.deepEqual(block.subarray(10, 21), Buffer.from('device data'));
    assert.equal(block.subarray(0, 10).findIndex((b) => b !== 0), -1, 'a pinned hole block was not pre-zeroed (S2)');
  });

  it('read-only pin dirties nothing', async function () {
    const v = await freshDax();
    const ino = await writtenFile(v, 'f', 1, () => 0x02);
    const owner = new TestOwner('dev');
    const p = await v.dax.pin(owner, { ino, firstPgoff: 0, npages: 1, writable: false, leaseMs: 0 });
    assert.equal(v.dax.inspect(ino, 0, 0)[0].dirty, false);
    v.dax.unpin(owner, p.id);
  });
});
