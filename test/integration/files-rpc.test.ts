/**
 * Every Files RPC against a real server, round trips checked against a model: a seeded
 * random sequence of writes (unary and pipelined), truncates and fallocates on a few
 * files, each file's model being the bytes it must hold.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import type { DaxClient, FallocateMode } from '../../client';
import type { RawClients } from '../../client/raw-clients';
import { call, rawClients, streamOutcome } from '../support/raw-rpc';
import { clientFor, startServer, tempDir, type StartedServer } from '../support/start-server';
import { randInt, seededRng } from '../support/rng';
import { MiB, PAGE } from '../support/units';

/** The bytes a file must hold. */
class ModelFile {
  bytes = Buffer.alloc(0);

  resize(size: number): void {
    if (size <= this.bytes.length) this.bytes = this.bytes.subarray(0, size);
    else this.bytes = Buffer.concat([this.bytes, Buffer.alloc(size - this.bytes.length)]);
  }

  write(offset: number, data: Buffer): void {
    if (offset + data.length > this.bytes.length) this.resize(offset + data.length);
    data.copy(this.bytes, offset);
  }

  zero(offset: number, length: number): void {
    this.bytes.fill(0, Math.min(offset, this.bytes.length), Math.min(offset + length, this.bytes.length));
  }

  fallocate(mode: FallocateMode, offset: number, length: number): void {
    const end = offset + length;
    switch (mode) {
      case 'ALLOCATE': if (end > this.bytes.length) this.resize(end); break;
      case 'KEEP_SIZE': break;
      case 'PUNCH_HOLE':
      case 'ZERO_RANGE': this.zero(offset, length); break;
      case 'COLLAPSE_RANGE': this.bytes = Buffer.concat([this.bytes.subarray(0, offset), this.bytes.subarray(end)]); break;
    }
  }
}

describe('Files RPCs round-trip against a model', function () {
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;
  let client: DaxClient;
  let raw: RawClients;

  before(async function () {
    tmp = tempDir();
    server = await startServer({ volumePath: path.join(tmp.dir, 'files.vol'), size: '256M' });
    client = clientFor(server);
    raw = rawClients(server.address);
  });

  after(async function () {
    client?.close();
    raw?.close();
    if (server) assert.deepEqual(await server.stop(), { code: 0, signal: null });
    tmp?.remove();
  });

  it('Create, Lookup, Stat agree; Create without exclusive returns the existing file', async function () {
    const created = await client.create('alpha', { exclusive: true });
    assert.equal(created.name, 'alpha');
    assert.equal(created.size, 0);
    assert.deepEqual(await client.lookup('alpha'), created);
    assert.deepEqual(await client.stat(created.ino), created);
    assert.deepEqual(await client.create('alpha'), created);
  });

  it('a random sequence of writes, truncates and fallocates matches the model', async function () {
    const rng = seededRng(20240611);
    const rand = (n: number): number => randInt(rng, 0, n - 1);
    const files = await Promise.all(['m0', 'm1', 'm2'].map((n) => client.create(n)));
    const models = files.map(() => new ModelFile());
    const modes: FallocateMode[] = ['ALLOCATE', 'KEEP_SIZE', 'PUNCH_HOLE', 'ZERO_RANGE', 'COLLAPSE_RANGE'];
    for (let step = 0; step < 300; step++) {
      const i = rand(files.length);
      const { ino } = files[i];
      const model = models[i];
      const choice = rand(10);
      if (choice < 5) {
        const offset = rand(64) * 1000 + rand(PAGE);
        const data = Buffer.alloc(1 + rand(3 * PAGE), step & 0xff);
        // Alternate the unary Write and the pipelined WriteStream (the SDK).
        const outcome = step % 2 === 0
          ? await call<{ written: string; size: string }>((cb) => raw.files.Write({ ino, offset, data }, cb))
          : await client.write(ino, offset, data);
        model.write(offset, data);
        assert.equal(Number(outcome.written), data.length);
        assert.equal(Number(outcome.size), model.bytes.length);
      } else if (choice < 7) {
        const size = rand(80 * 1000);
        await client.truncate(ino, size);
        model.resize(size);
      } else {
        const mode = modes[rand(modes.length)];
        let offset = rand(40) * 1000 + rand(100);
        let length = 1 + rand(5 * PAGE);
        if (mode === 'COLLAPSE_RANGE') {
          const pages = Math.floor(model.bytes.length / PAGE);
          if (pages < 2) continue;
          offset = rand(pages - 1) * PAGE;
          length = (1 + rand(pages - 1 - offset / PAGE)) * PAGE;
          if (offset + length >= model.bytes.length) continue;
        }
        await client.fallocate(ino, mode, offset, length);
        model.fallocate(mode, offset, length);
      }
      if (step % 25 === 0 || step === 299) await assertMatches(client, raw, ino, model, `step ${step}`);
    }
  });

  it('reads and writes larger than one message are chunked and pipelined by the SDK', async function () {
    const file = await client.create('big');
    const data = Buffer.alloc(9 * MiB + 123);
    for (let i = 0; i + 4 <= data.length; i += 4) data.writeUInt32LE(i, i);
    await client.write(file.ino, 77, data);
    const back = await client.read(file.ino, 77, data.length + 1000);
    assert.equal(back.length, data.length);
    assert.ok(back.equals(data));
    assert.equal((await client.stat(file.ino)).size, 77 + data.length);
  });

  it('64 concurrent 4 KiB reads and writes through the pipeline each get their own answer', async function () {
    const file = await client.create('concurrent');
    await Promise.all(Array.from({ length: 64 }, (_, i) => client.write(file.ino, i * PAGE, Buffer.alloc(PAGE, i))));
    const pages = await Promise.all(Array.from({ length: 64 }, (_, i) => client.read(file.ino, i * PAGE, PAGE)));
    pages.forEach((page, i) => assert.ok(page.equals(Buffer.alloc(PAGE, i)), `page ${i}`));
  });

  it('3000 concurrent ops (beyond the 1024-op window of both ends) all complete correctly', async function () {
    const file = await client.create('window');
    const n = 3000;
    const tag = (i: number) => Buffer.from(`op-${String(i).padStart(5, '0')}`);
    await Promise.all(Array.from({ length: n }, (_, i) => client.write(file.ino, i * 16, tag(i))));
    const back = await Promise.all(Array.from({ length: n }, (_, i) => client.read(file.ino, i * 16, 8)));
    back.forEach((data, i) => assert.ok(data.equals(tag(i)), `op ${i}`));
  });

  it('regression: reads of 1 MiB - 1 and 4 MiB in one ReadStream message come back in separate replies (message limit)', async function () {
    const file = await client.create('two-big-reads');
    const data = Buffer.alloc(8 * MiB, 0x42);
    await client.write(file.ino, 0, data);
    const stream = raw.files.ReadStream();
    const outcome = streamOutcome(stream);
    stream.write({ ops: [{ id: 1, ino: file.ino, offset: 0, length: MiB - 1 }, { id: 2, ino: file.ino, offset: 4 * MiB, length: 4 * MiB }] });
    stream.end();
    const { messages, error } = await outcome;
    assert.equal(error, null);
    const results = messages.flatMap((m) => m.results);
    assert.deepEqual(results.map((r) => [r.id, r.data.length, r.error]).sort(), [[1, MiB - 1, null], [2, 4 * MiB, null]]);
  });

  it('Read is short at end of file and empty beyond it; holes read as zeros', async function () {
    const file = await client.create('sparse');
    await client.write(file.ino, 3 * PAGE, Buffer.from('end'));
    const all = await client.read(file.ino, 0, 10 * PAGE);
    assert.equal(all.length, 3 * PAGE + 3);
    assert.ok(all.subarray(0, 3 * PAGE).every((b) => b === 0));
    assert.equal((await client.read(file.ino, 5 * PAGE, 10)).length, 0);
  });

  it('Write with sync and Fsync succeed and keep the data', async function () {
    const file = await client.create('durable');
    await client.write(file.ino, 0, Buffer.from('synced'), { sync: true });
    await client.fsync(file.ino, { datasync: true });
    await client.fsync(file.ino);
    assert.equal((await client.read(file.ino, 0, 6)).toString(), 'synced');
  });

  it('List pages through names in byte order, by prefix', async function () {
    const names = Array.from({ length: 23 }, (_, i) => `list/${String.fromCharCode(0x61 + (i % 26))}${i}`);
    names.push('list/é', 'list/z', 'list/Z');
    for (const name of names) await client.create(name);
    const expected = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    const seen: string[] = [];
    let pageToken = '';
    do {
      const page = await client.list({ prefix: 'list/', pageToken, pageSize: 7 });
      assert.ok(page.files.length <= 7);
      seen.push(...page.files.map((f) => f.name));
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    assert.deepEqual(seen, expected);
    const all: string[] = [];
    for await (const file of client.listAll('list/')) all.push(file.name);
    assert.deepEqual(all, expected);
  });

  it('Unlink removes the name; StatVolume counts files and blocks', async function () {
    const keeper = await client.create('keeper');
    const before = await client.statVolume();
    const file = await client.create('doomed');
    await client.write(file.ino, 0, Buffer.alloc(MiB, 1));
    const during = await client.statVolume();
    assert.equal(during.files, before.files + 1);
    assert.ok(during.blocksFree <= before.blocksFree - MiB / PAGE, 'the write allocated at least 256 blocks');
    await client.unlink('doomed');
    await assert.rejects(client.lookup('doomed'), { reason: 'ENOENT' });
    // Freed blocks count as free once the journal commits them; an fsync commits.
    await client.fsync(keeper.ino);
    const after = await client.statVolume();
    assert.equal(after.files, before.files);
    // Frees of earlier tests may land meanwhile, so at least the 256 blocks come back.
    assert.ok(after.blocksFree >= during.blocksFree + MiB / PAGE, 'the unlink freed the blocks');
    assert.equal(after.blockSize, PAGE);
    assert.equal(after.maxIoBytes, 4 * MiB);
    assert.equal(after.size, 256 * MiB);
  });
});

async function assertMatches(client: DaxClient, raw: RawClients, ino: number, model: ModelFile, where: string): Promise<void> {
  const stat = await client.stat(ino);
  assert.equal(stat.size, model.bytes.length, `${where}: size`);
  const viaStream = await client.read(ino, 0, model.bytes.length + PAGE);
  assert.ok(viaStream.equals(model.bytes), `${where}: content via ReadStream`);
  const length = Math.min(model.bytes.length + 10, 4 * MiB);
  const viaUnary = await call<{ data: Buffer }>((cb) => raw.files.Read({ ino, offset: 0, length }, cb));
  assert.ok(viaUnary.data.equals(model.bytes.subarray(0, length)), `${where}: content via Read`);
}
