/**
 * Roles and name prefixes over gRPC against `daxd serve --auth FILE`:
 *   - an `ro` principal may read (Read, ReadStream, List, READ faults and loads, read-only
 *     pins and their DMA reads) but every write is PERMISSION_DENIED / EACCES: Files.Write
 *     (unary and stream), Create, Truncate, Fallocate, Unlink, a WRITE fault, a store
 *     through a mapping, a writable pin; and none of them changed the file;
 *   - a principal confined to "alice/" cannot Lookup, Stat, Read, Write, Unlink, Create,
 *     fault or pin bob's file, by name or by inode number (EACCES, the file unchanged), and
 *     List and StatVolume show only its own files.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { DaxAuthError, type DaxClient, type DaxSession, type FileInfo } from '../../client';
import { startAuthServer, type AuthServer } from '../support/auth-server';
import { call, failure } from '../support/raw-rpc';

const PAGE = 4096;

async function denied(promise: Promise<unknown>, what: string): Promise<void> {
  const err = await failure(promise);
  assert.ok(err instanceof DaxAuthError, `${what}: expected DaxAuthError, got ${err.name}: ${err.message}`);
  assert.deepEqual([err.code, err.reason], [grpc.status.PERMISSION_DENIED, 'EACCES'], `${what}: ${err.message}`);
}

describe('auth: roles (ro) and name prefixes over gRPC', function () {
  this.timeout(60_000);
  let auth: AuthServer;
  let admin: DaxClient;
  const content = Buffer.alloc(2 * PAGE, 0x5a);

  before(async function () {
    auth = await startAuthServer();
    admin = auth.as('admin');
  });

  after(async function () {
    await auth?.stop();
  });

  /** The file as admin sees it: size and bytes. */
  async function snapshot(file: FileInfo): Promise<{ size: number; data: Buffer }> {
    const now = await admin.stat(file.ino);
    return { size: now.size, data: await admin.read(file.ino, 0, Math.max(now.size, 4 * PAGE)) };
  }

  describe('an ro principal', function () {
    let file: FileInfo;
    let reader: DaxClient;
    let session: DaxSession;

    before(async function () {
      file = await admin.create('common/ro-target');
      await admin.write(file.ino, 0, content, { sync: true });
      reader = auth.as('reader');
      session = await reader.openSession({ clientName: 'ro' });
    });

    after(async function () {
      await session?.close();
    });

    it('reads: Read, ReadStream, List, Stat, a READ fault and load, a read-only pin and its DMA read', async function () {
      assert.deepEqual(await reader.read(file.ino, 0, content.length), content);
      const unary = await call<{ data: Buffer }>((cb) => reader.raw.files.Read({ ino: file.ino, offset: 0, length: 10 }, cb));
      assert.deepEqual(unary.data, content.subarray(0, 10));
      assert.ok((await reader.list()).files.some((f) => f.name === 'common/ro-target'));
      assert.equal((await reader.stat(file.ino)).size, content.length);
      const map = session.mmap(file.ino, { shared: true });
      assert.deepEqual(await map.read(PAGE, 16), content.subarray(PAGE, PAGE + 16));
      await map.unmap();
      const pin = await reader.pin(file.ino, 0, 1, { session });
      assert.deepEqual(await pin.dmaRead(0, 0, 8), content.subarray(0, 8));
      await pin.unpin();
    });

    it('every write is PERMISSION_DENIED / EACCES, and the file is unchanged', async function () {
      const before = await snapshot(file);
      const ones = Buffer.alloc(PAGE, 1);
      await denied(call((cb) => reader.raw.files.Write({ ino: file.ino, offset: 0, data: ones }, cb)), 'Files.Write');
      await denied(reader.write(file.ino, 0, ones), 'WriteStream');
      await denied(reader.create('common/ro-new'), 'Create');
      await denied(reader.truncate(file.ino, 0), 'Truncate');
      await denied(reader.fallocate(file.ino, 'ALLOCATE', 0, 8 * PAGE), 'Fallocate');
      await denied(reader.unlink('common/ro-target'), 'Unlink');
      await denied(reader.fsync(file.ino), 'Fsync');
      await denied(call((cb) => reader.raw.mapping.Fault({ session_id: session.id, ino: file.ino, pgoff: 0, kind: 'WRITE' }, cb)), 'WRITE fault');
      await denied(call((cb) => reader.raw.mapping.Fault({ session_id: session.id, ino: file.ino, pgoff: 5, kind: 'COW' }, cb)), 'COW fault');
      const map = session.mmap(file.ino, { shared: true, writable: true });
      await denied(map.write(0, ones), 'store through a mapping');
      await denied(reader.pin(file.ino, 0, 1, { session, writable: true }), 'writable pin');
      assert.deepEqual(await snapshot(file), before);
      await assert.rejects(admin.lookup('common/ro-new'), /ENOENT/);
    });
  });

  describe('a principal confined to its prefix', function () {
    let bobs: FileInfo;
    let alice: DaxClient;

    before(async function () {
      const bob = auth.as('bob');
      bobs = await bob.create('bob/secret');
      await bob.write(bobs.ino, 0, content, { sync: true });
      alice = auth.as('alice');
      await alice.create('alice/one');
      await alice.create('alice/two');
    });

    it('cannot use bob\'s file by name or by inode: EACCES, and the file is unchanged', async function () {
      const before = await snapshot(bobs);
      await denied(alice.lookup('bob/secret'), 'Lookup by name');
      await denied(alice.lookup('bob/no-such-file'), 'Lookup of a missing name (same answer)');
      await denied(alice.stat(bobs.ino), 'Stat by ino');
      await denied(alice.read(bobs.ino, 0, 10), 'ReadStream by ino');
      await denied(call((cb) => alice.raw.files.Read({ ino: bobs.ino, offset: 0, length: 10 }, cb)), 'Files.Read by ino');
      await denied(alice.write(bobs.ino, 0, Buffer.from('alice was here')), 'WriteStream by ino');
      await denied(call((cb) => alice.raw.files.Write({ ino: bobs.ino, offset: 0, data: Buffer.from('x') }, cb)), 'Files.Write by ino');
      await denied(alice.truncate(bobs.ino, 0), 'Truncate by ino');
      await denied(alice.unlink('bob/secret'), 'Unlink by name');
      await denied(alice.create('bob/planted'), 'Create in bob\'s prefix');
      const session = await alice.openSession();
      try {
        await denied(call((cb) => alice.raw.mapping.Fault({ session_id: session.id, ino: bobs.ino, pgoff: 0, kind: 'READ' }, cb)), 'READ fault by ino');
        await denied(alice.pin(bobs.ino, 0, 1, { session }), 'pin by ino');
      } finally {
        await session.close();
      }
      assert.deepEqual(await snapshot(bobs), before);
      await assert.rejects(admin.lookup('bob/planted'), /ENOENT/);
    });

    it('List shows only its own files, whatever prefix it asks for; StatVolume counts only them', async function () {
      const names = async (prefix?: string) => (await alice.list({ prefix })).files.map((f) => f.name);
      assert.deepEqual(await names(), ['alice/one', 'alice/two']);
      assert.deepEqual(await names('bob/'), []);
      assert.deepEqual(await names('a'), ['alice/one', 'alice/two']);
      assert.ok((await admin.list()).files.some((f) => f.name === 'bob/secret'), 'admin sees every file');
      assert.equal((await alice.statVolume()).files, 2);
    });
  });
});
