import assert from 'node:assert/strict';
import { RwLock } from '../../server/fs/rw-lock';

type Release = () => void;

/** A lock request whose grant the test can observe without awaiting it. */
interface Request {
  name: string;
  granted: boolean;
  release: Release | undefined;
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

function request(lock: RwLock, name: string, exclusive: boolean, grants: string[]): Request {
  const req: Request = { name, granted: false, release: undefined };
  void (exclusive ? lock.lockExclusive() : lock.lockShared()).then((release) => {
    req.granted = true;
    req.release = release;
    grants.push(name);
  });
  return req;
}

function release(req: Request): void {
  assert.ok(req.release, `${req.name} was not granted`);
  req.release();
}

describe('rw-lock', () => {
  it('readers share, a writer excludes everyone', async () => {
    const lock = new RwLock();
    const r1 = await lock.lockShared();
    const r2 = await lock.lockShared();
    assert.ok(lock.held);
    assert.ok(!lock.heldExclusive);
    const grants: string[] = [];
    const w = request(lock, 'w', true, grants);
    await settle();
    assert.ok(!w.granted, 'writer waits for readers');
    r1();
    await settle();
    assert.ok(!w.granted, 'writer waits for the last reader');
    r2();
    await settle();
    assert.ok(w.granted);
    assert.ok(lock.heldExclusive);
    const r3 = request(lock, 'r3', false, grants);
    const w2 = request(lock, 'w2', true, grants);
    await settle();
    assert.ok(!r3.granted && !w2.granted);
    release(w);
    await settle();
    assert.ok(r3.granted && !w2.granted);
    release(r3);
    await settle();
    assert.ok(w2.granted);
    release(w2);
    assert.ok(!lock.held);
    assert.equal(lock.waiters, 0);
  });

  it('grants in FIFO order; consecutive readers are granted together', async () => {
    const lock = new RwLock();
    const grants: string[] = [];
    const w1 = request(lock, 'w1', true, grants);
    await settle();
    const queue = [
      request(lock, 'r1', false, grants),
      request(lock, 'w2', true, grants),
      request(lock, 'r2', false, grants),
      request(lock, 'r3', false, grants),
      request(lock, 'w3', true, grants),
      request(lock, 'r4', false, grants),
    ];
    const [r1, w2, r2, r3, w3, r4] = queue;
    await settle();
    assert.equal(lock.waiters, 6);
    assert.deepEqual(grants, ['w1']);

    release(w1);
    await settle();
    assert.deepEqual(grants, ['w1', 'r1'], 'r1 alone: w2 is next in line');
    release(r1);
    await settle();
    assert.deepEqual(grants, ['w1', 'r1', 'w2']);
    release(w2);
    await settle();
    assert.deepEqual(grants, ['w1', 'r1', 'w2', 'r2', 'r3'], 'readers in a row go together');
    release(r3);
    await settle();
    assert.ok(!w3.granted, 'w3 waits for r2 too');
    release(r2);
    await settle();
    assert.deepEqual(grants, ['w1', 'r1', 'w2', 'r2', 'r3', 'w3']);
    release(w3);
    await settle();
    assert.ok(r4.granted);
    release(r4);
    assert.ok(!lock.held);
  });

  it('a waiting writer blocks readers that come after it', async () => {
    const lock = new RwLock();
    const grants: string[] = [];
    const r1 = request(lock, 'r1', false, grants);
    await settle();
    const w = request(lock, 'w', true, grants);
    const r2 = request(lock, 'r2', false, grants);
    await settle();
    assert.ok(r1.granted);
    assert.ok(!w.granted);
    assert.ok(!r2.granted, 'a reader must not overtake a waiting writer (writer starvation)');
    release(r1);
    await settle();
    assert.deepEqual(grants, ['r1', 'w']);
    release(w);
    await settle();
    assert.deepEqual(grants, ['r1', 'w', 'r2']);
    release(r2);
  });

  it('releasing twice throws and does not release someone else\'s hold', async () => {
    const lock = new RwLock();
    const a = await lock.lockShared();
    const b = await lock.lockShared();
    a();
    assert.throws(a, /released twice/);
    assert.ok(lock.held, 'b still holds it');
    b();
    assert.ok(!lock.held);

    const w = await lock.lockExclusive();
    w();
    const grants: string[] = [];
    const other = request(lock, 'other', true, grants);
    await settle();
    assert.ok(other.granted);
    assert.throws(w, /released twice/);
    assert.ok(lock.heldExclusive, 'the stale release did not drop the new holder');
    const late = request(lock, 'late', false, grants);
    await settle();
    assert.ok(!late.granted);
    release(other);
    await settle();
    assert.ok(late.granted);
    release(late);
  });
});
