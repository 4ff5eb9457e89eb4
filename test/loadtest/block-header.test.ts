/**
 * Verify mode's page headers: a stamped page checks clean; a flipped byte anywhere (payload
 * or header) is a checksum mismatch; the right page of another file, offset, generation or
 * run is named as such; zeros pass only where nothing was written; and the book's
 * [acked at issue, issued at completion] rule.
 */
import assert from 'node:assert/strict';
import { checkPage, PAGE_BYTES, PayloadPool, stampPage, type PageExpectation } from '../../client/loadtest/block-header';
import { Rng } from '../../client/loadtest/rng';
import { PageLocks, VerifyBook } from '../../client/loadtest/verify-book';

const pool = new PayloadPool(new Rng(1).fill(Buffer.alloc(4096)), 64 * 1024);
const FIELDS = { runTag: 77, file: 3, page: 2 ** 33 + 5, generation: 9, writer: 4 };
const EXPECT: PageExpectation = { runTag: 77, file: 3, page: 2 ** 33 + 5, genMin: 9, genMax: 9 };

function stamped(fields = FIELDS): Buffer {
  const page = Buffer.alloc(PAGE_BYTES);
  stampPage(page, pool, fields);
  return page;
}

describe('loadtest: block header', function () {
  it('a stamped page passes its check', function () {
    assert.equal(checkPage(stamped(), EXPECT), null);
    assert.equal(checkPage(stamped(), { ...EXPECT, genMin: 1, genMax: 12 }), null);
  });

  it('detects a flipped byte at every position of the page (header and payload)', function () {
    const good = stamped();
    for (let at = 0; at < PAGE_BYTES; at += 97) {
      for (const bit of [0x01, 0x80]) {
        const bad = Buffer.from(good);
        bad[at] ^= bit;
        const found = checkPage(bad, EXPECT);
        assert.ok(found !== null, `flip of bit ${bit} at byte ${at} went unnoticed`);
        assert.ok(found.kind === 'checksum' || found.kind === 'magic', `byte ${at}: ${found.kind}`);
      }
    }
  });

  it('names the wrong file, page, generation and run', function () {
    assert.equal(checkPage(stamped({ ...FIELDS, file: 4 }), EXPECT)?.kind, 'file');
    assert.equal(checkPage(stamped({ ...FIELDS, page: FIELDS.page + 1 }), EXPECT)?.kind, 'page');
    assert.equal(checkPage(stamped({ ...FIELDS, generation: 8 }), EXPECT)?.kind, 'generation');
    assert.equal(checkPage(stamped({ ...FIELDS, runTag: 78 }), EXPECT)?.kind, 'run');
    assert.match(checkPage(stamped({ ...FIELDS, generation: 8 }), EXPECT)?.detail ?? '', /generation 8, expected 9/);
  });

  it('zeros pass only where nothing was written (or zeros are allowed), and never-written pages must be zero', function () {
    const zero = Buffer.alloc(PAGE_BYTES);
    assert.equal(checkPage(zero, { ...EXPECT, genMin: 0, genMax: 0 }), null);
    assert.equal(checkPage(zero, { ...EXPECT, allowZero: true }), null);
    assert.equal(checkPage(zero, EXPECT)?.kind, 'magic');
    assert.match(checkPage(zero, EXPECT)?.detail ?? '', /lost write/);
    const junk = Buffer.alloc(PAGE_BYTES);
    junk[100] = 1;
    assert.equal(checkPage(junk, { ...EXPECT, genMin: 0, genMax: 0 })?.kind, 'not-zero');
  });

  it('VerifyBook: a read sees a generation between the one acked at issue and the one issued at completion', async function () {
    const book = new VerifyBook(5, [{ index: 0, ino: 1, name: 'f', pages: 4 }], 5);
    const release = await book.locks.lock(0, 1, 2);
    const g1 = book.beginWrite(0, 1, 2);
    const buf = Buffer.alloc(2 * PAGE_BYTES);
    book.stamp(buf, 0, 1, g1, 0);
    const atIssue = book.snapshot(0, 1, 2); // acked 0: zeros or gen 1 are both right now
    assert.ok(book.check(Buffer.alloc(2 * PAGE_BYTES), 0, 1, atIssue, 'test'));
    assert.ok(book.check(buf, 0, 1, atIssue, 'test'));
    book.endWrite(0, 1, g1);
    release();
    assert.equal(book.check(Buffer.alloc(2 * PAGE_BYTES), 0, 1, book.snapshot(0, 1, 2), 'test'), false, 'zeros after an acked write');
    assert.equal(book.mismatchCount, 2);
    assert.deepEqual(book.mismatches.map((m) => [m.page, m.offset, m.kind]), [[1, PAGE_BYTES, 'magic'], [2, 2 * PAGE_BYTES, 'magic']]);
  });

  it('PageLocks: writers of overlapping pages run one after the other', async function () {
    const locks = new PageLocks();
    const order: string[] = [];
    const a = await locks.lock(0, 0, 4);
    const b = locks.lock(0, 3, 2).then((release) => { order.push('b'); return release; });
    const c = locks.lock(0, 4, 1).then((release) => { order.push('c'); return release; });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, ['c'], 'c does not overlap a; b waits');
    (await c)();
    a();
    (await b)();
    assert.deepEqual(order, ['c', 'b']);
  });
});
