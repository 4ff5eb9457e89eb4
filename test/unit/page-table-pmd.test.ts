/**
 * client/page-table.ts with PMD PTEs (no server: the table is plain client state): one
 * PMD PTE serves its 512 pages with offsets from its base, a page's own PTE wins over it,
 * installing a PMD PTE drops the older page PTEs of its range, and every way a PTE goes
 * stale (an Invalidate of any page of it, writeback of a writable one, a PTE_STALE answer
 * for its token, the session's end) drops it; ranges outside leave it alone.
 */
import assert from 'node:assert/strict';
import { PageTable, pmdBase } from '../../client/page-table';
import type { ClientPte } from '../../client/mapping-rpc';
import { PMD_PAGES } from '../../wire/limits';
import { PAGE } from '../support/units';

const pmd = (base: number, token: string, writable = false): ClientPte => ({ pgoff: base, pfn: 0, writable, token, size: 'PMD', fallbackReason: '' });
const page = (pgoff: number, token: string, writable = false): ClientPte => ({ pgoff, pfn: pgoff + 100, writable, token });

describe('PageTable with PMD PTEs (client/page-table.ts)', function () {
  it('a PMD PTE serves each of its 512 pages, at offsets from its base page, and no page outside', function () {
    const table = new PageTable();
    table.install(pmd(PMD_PAGES, 'huge'));
    for (const pg of [PMD_PAGES, PMD_PAGES + 1, PMD_PAGES + 300, 2 * PMD_PAGES - 1]) {
      const pte = table.pte(pg);
      assert.equal(pte?.token, 'huge', `page ${pg}`);
      assert.equal(PageTable.accessOffset(pte!, pg, 5), (pg - PMD_PAGES) * PAGE + 5);
    }
    assert.equal(table.pte(PMD_PAGES - 1), undefined);
    assert.equal(table.pte(2 * PMD_PAGES), undefined);
    assert.deepEqual([table.pteCount, table.pmdCount], [1, 1]);
    assert.equal(pmdBase(PMD_PAGES + 300), PMD_PAGES);
    assert.equal(PageTable.accessOffset(page(7, 'p'), 7, 9), 9, 'a PAGE PTE: the offset in its page');
  });

  it('a page\'s own PTE wins over the PMD PTE covering it; installing a PMD PTE drops the page PTEs of its range only', function () {
    const table = new PageTable();
    table.install(page(3, 'p3'));
    table.install(page(PMD_PAGES + 3, 'outside'));
    table.install(pmd(0, 'huge'));
    assert.equal(table.pte(3)?.token, 'huge', 'the older page PTE of its range is gone');
    assert.equal(table.pte(PMD_PAGES + 3)?.token, 'outside');
    table.install(page(4, 'p4'));
    assert.equal(table.pte(4)?.token, 'p4', 'a newer page PTE wins for its page');
    assert.equal(table.pte(5)?.token, 'huge');
    assert.equal(table.pteCount, 3);
  });

  it('an Invalidate of any page of a PMD drops it; one outside leaves it', function () {
    const table = new PageTable();
    table.install(pmd(PMD_PAGES, 'huge'));
    assert.equal(table.invalidate(0, PMD_PAGES - 1), 0);
    assert.equal(table.invalidate(2 * PMD_PAGES, 10 * PMD_PAGES), 0);
    assert.equal(table.pte(PMD_PAGES + 1)?.token, 'huge');
    assert.equal(table.invalidate(2 * PMD_PAGES - 1, 2 * PMD_PAGES - 1), 1, 'its last page');
    assert.equal(table.pte(PMD_PAGES + 1), undefined);
    assert.equal(table.invalidatedPtes, 1);
    // A wide range over many PMDs (the scan over the cached PMDs, not over the pages).
    for (let i = 0; i < 4; i++) table.install(pmd(i * PMD_PAGES, `h${i}`));
    assert.equal(table.invalidate(PMD_PAGES + 7, Number.MAX_SAFE_INTEGER), 3);
    assert.equal(table.pte(0)?.token, 'h0');
  });

  it('writeback drops a writable PMD PTE touching its range, not a read-only one; a stale answer drops it only by its token', function () {
    const table = new PageTable();
    table.install(pmd(0, 'rw', true));
    table.install(pmd(PMD_PAGES, 'ro', false));
    table.dropWritable(100, PMD_PAGES + 100);
    assert.equal(table.pte(1), undefined);
    assert.equal(table.pte(PMD_PAGES + 1)?.token, 'ro');
    table.dropToken(PMD_PAGES + 9, 'other');
    assert.equal(table.pte(PMD_PAGES + 1)?.token, 'ro');
    table.dropToken(PMD_PAGES + 9, 'ro');
    assert.equal(table.pte(PMD_PAGES + 1), undefined);
  });

  it('the session\'s end drops PMD PTEs too; they count against the cache bound like page PTEs', function () {
    const table = new PageTable(2);
    table.install(pmd(0, 'a'));
    table.install(pmd(PMD_PAGES, 'b'));
    table.install(page(5 * PMD_PAGES, 'c'));
    assert.equal(table.pteCount, 2);
    assert.equal(table.pte(0), undefined, 'the oldest PMD PTE forgotten');
    table.clear(false);
    assert.deepEqual([table.pteCount, table.pmdCount, table.invalidatedPtes], [0, 0, 2]);
  });
});
