import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BusyError, InvalidArgumentError, IoError } from '../../server/errors';
import { CHUNK_BYTES, MmapStorage } from '../../server/media/mmap-storage';
import { isSyscallError, native } from '../../server/native';
import { MiB } from '../support/units';

const TiB = 1024 * 1024 * MiB;

function expectSyscallError(fn: () => unknown, code: string, syscall: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isSyscallError(err), `not a syscall error: ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.syscall, syscall);
    assert.equal(typeof err.errno, 'number');
    return true;
  });
}

describe('native addon and MmapStorage', function () {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'daxd-native-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes through a mapping, msyncs, and reads the bytes back from the file', async () => {
    const file = path.join(dir, 'vol');
    const fd = native.open(file, 'create', 16 * MiB);
    native.flock(fd);
    assert.equal(native.fstatSize(fd), 16 * MiB);
    const mapping = native.mmap(fd, 0, 16 * MiB);
    assert.equal(mapping.byteLength, 16 * MiB);
    new Uint8Array(mapping, 5 * MiB + 3, 4).set([0xde, 0xad, 0xbe, 0xef]);
    await native.msync(mapping, 5 * MiB + 3, 4);
    native.madvise(mapping, 4096, 8192, 'random');
    native.munmap(mapping);
    native.close(fd);
    assert.deepEqual([...fs.readFileSync(file).subarray(5 * MiB + 3, 5 * MiB + 7)], [0xde, 0xad, 0xbe, 0xef]);
  });

  it('MmapStorage: data flushed through a view is there after re-open', async () => {
    const file = path.join(dir, 'vol');
    const storage = MmapStorage.open(file, { create: { sizeBytes: 16 * MiB } });
    assert.equal(storage.sizeBytes, 16 * MiB);
    storage.view(8 * MiB, 4096).fill(0x5a);
    await storage.flush(8 * MiB, 4096);
    storage.view(4096, 512).fill(0x11);
    storage.flushSync(0, 16 * MiB);
    storage.close();

    const reopened = MmapStorage.open(file);
    assert.ok(reopened.view(8 * MiB, 4096).every((b) => b === 0x5a));
    assert.ok(reopened.view(4096, 512).every((b) => b === 0x11));
    assert.equal(reopened.view(0, 4096)[0], 0);
    reopened.close();
  });

  it('a second open of a volume in use fails with EBUSY, and succeeds once it is closed', () => {
    const file = path.join(dir, 'vol');
    const first = MmapStorage.open(file, { create: { sizeBytes: 16 * MiB } });
    assert.throws(() => MmapStorage.open(file), (err: unknown) => {
      assert.ok(err instanceof BusyError);
      assert.equal(err.code, 'EBUSY');
      assert.match(err.message, /in use by another daxd process \(flock held\)/);
      return true;
    });
    first.close();
    MmapStorage.open(file).close();
  });

  it('flock held elsewhere is code EWOULDBLOCK', () => {
    const file = path.join(dir, 'vol');
    const fd1 = native.open(file, 'create', 16 * MiB);
    const fd2 = native.open(file, 'rw');
    try {
      native.flock(fd1);
      expectSyscallError(() => native.flock(fd2), 'EWOULDBLOCK', 'flock');
    } finally {
      native.close(fd1);
      native.close(fd2);
    }
  });

  it('munmap detaches the ArrayBuffer; close() detaches views', () => {
    const file = path.join(dir, 'vol');
    const fd = native.open(file, 'create', 16 * MiB);
    const mapping = native.mmap(fd, 0, 16 * MiB);
    const view = new Uint8Array(mapping);
    native.munmap(mapping);
    assert.equal(mapping.byteLength, 0);
    assert.equal(view.length, 0);
    expectSyscallError(() => native.munmap(mapping), 'EINVAL', 'munmap');
    native.close(fd);

    const storage = MmapStorage.open(file);
    const storageView = storage.view(0, 4096);
    storage.close();
    assert.equal(storageView.length, 0);
  });

  it('munmap while an msync is in flight: the msync still completes', async () => {
    const file = path.join(dir, 'vol');
    const fd = native.open(file, 'create', 16 * MiB);
    const mapping = native.mmap(fd, 0, 16 * MiB);
    new Uint8Array(mapping).fill(7, 0, MiB);
    const pending = native.msync(mapping, 0, MiB);
    native.munmap(mapping);
    assert.equal(mapping.byteLength, 0);
    await pending;
    native.close(fd);
    assert.equal(fs.readFileSync(file)[MiB - 1], 7);
  });

  it('open of a missing path is ENOENT from open, shaped like a Node error', () => {
    const file = path.join(dir, 'missing');
    expectSyscallError(() => native.open(file, 'rw'), 'ENOENT', 'open');
    assert.throws(() => MmapStorage.open(file), (err: unknown) => {
      assert.ok(isSyscallError(err));
      assert.equal(err.code, 'ENOENT');
      assert.equal(err.syscall, 'open');
      assert.equal(err.errno, os.constants.errno.ENOENT);
      assert.equal(err.path, file);
      assert.equal(err.message, `ENOENT: no such file or directory, open '${file}'`);
      return true;
    });
  });

  it('create never resizes an existing file (EEXIST)', () => {
    const file = path.join(dir, 'vol');
    fs.writeFileSync(file, 'not a volume');
    expectSyscallError(() => MmapStorage.open(file, { create: { sizeBytes: 16 * MiB } }), 'EEXIST', 'open');
    assert.equal(fs.statSync(file).size, 12);
  });

  it('refuses files whose size is not a volume size', () => {
    const file = path.join(dir, 'vol');
    fs.writeFileSync(file, Buffer.alloc(8 * MiB));
    assert.throws(() => MmapStorage.open(file), InvalidArgumentError);
    assert.throws(() => MmapStorage.open(path.join(dir, 'odd'), { create: { sizeBytes: 16 * MiB + 1 } }), InvalidArgumentError);
    MmapStorage.open(path.join(dir, 'after'), { create: { sizeBytes: 16 * MiB } }).close();
  });

  it('a 1 TiB sparse volume opens in 1 GiB chunks without writing or reading it', async function () {
    this.timeout(120_000);
    const file = path.join(dir, 'big');
    const storage = MmapStorage.open(file, { create: { sizeBytes: TiB } });
    assert.equal(storage.sizeBytes, TiB);
    assert.equal(storage.chunkBytes, CHUNK_BYTES);
    const last = storage.view(TiB - 4096, 4096);
    last.fill(0xa5);
    await storage.flush(TiB - 4096, 4096);
    // A flush across a chunk boundary is split per chunk.
    storage.view(CHUNK_BYTES - 4096, 4096).fill(1);
    storage.view(CHUNK_BYTES, 4096).fill(2);
    await storage.flush(CHUNK_BYTES - 4096, 8192);
    assert.throws(() => storage.view(CHUNK_BYTES - 4096, 8192), /crosses a chunk boundary/);
    storage.close();

    const stat = fs.statSync(file);
    assert.equal(stat.size, TiB);
    assert.ok(stat.blocks * 512 <= 4 * MiB, `allocated ${stat.blocks * 512} bytes`);
    const fd = fs.openSync(file, 'r');
    const tail = Buffer.alloc(4096);
    fs.readSync(fd, tail, 0, 4096, TiB - 4096);
    fs.closeSync(fd);
    assert.ok(tail.every((b) => b === 0xa5));
  });

  it('flush errors are IoError with the syscall error as cause', async () => {
    const file = path.join(dir, 'vol');
    const storage = MmapStorage.open(file, { create: { sizeBytes: 16 * MiB } });
    // Force the failure path: msync on a mapping that is gone reports EINVAL from the addon.
    const chunk = (storage as unknown as { chunks: ArrayBuffer[] }).chunks[0];
    native.munmap(chunk);
    await assert.rejects(storage.flush(0, 4096), (err: unknown) => {
      assert.ok(err instanceof IoError);
      assert.equal(err.code, 'EIO');
      assert.ok(isSyscallError(err.cause));
      assert.equal(err.cause.syscall, 'msync');
      return true;
    });
    assert.throws(() => storage.flushSync(0, 4096), IoError);
    (storage as unknown as { chunks: ArrayBuffer[] }).chunks.length = 0;
    storage.close();
  });
});
