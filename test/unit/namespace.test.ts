import assert from 'node:assert/strict';
import { DaxError } from '../../server/errors';
import { NAME_BYTES_MAX } from '../../server/limits';
import { Namespace, validateName } from '../../server/fs/namespace';

function isCode(code: string): (err: unknown) => boolean {
  return (err) => err instanceof DaxError && err.code === code;
}

function utf8Order(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Names whose UTF-8 byte order differs from JavaScript's UTF-16 order (astral vs U+E000..U+FFFF). */
const NAMES = [
  'a', 'b', 'ab', 'aa', 'a\u{1F600}', 'a\uFF21', 'a\u00E9', 'a\uE000', 'a\u{10000}', 'A', 'Z', '~', ' x',
  '\u{10000}', '\uFFFF', '\uE000', '\uFF21\uFF21', '\uFF21b', '\u{1F600}', '\u{1F600}a', '\u00E9', 'z\u{1F600}', 'zz',
  '\uFF21\u{1F600}', '\uFF21\uFF3A',
];

/** Walks every page of `ns` for `prefix`, `limit` names at a time, with continuation tokens. */
function walk(ns: Namespace, prefix: string, limit: number): string[] {
  const out: string[] = [];
  let after = '';
  for (let pages = 0; pages < 1000; pages++) {
    const { names, more } = ns.page(prefix, after, limit);
    assert.ok(names.length <= limit);
    out.push(...names);
    if (!more) return out;
    assert.equal(names.length, limit, 'a page that is not the last one is full');
    after = names[names.length - 1];
  }
  assert.fail('paging did not end');
}

function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

describe('namespace', () => {
  describe('validateName', () => {
    it('refuses the empty name (EINVAL)', () => {
      assert.throws(() => validateName(''), isCode('EINVAL'));
    });

    it('counts bytes of UTF-8, not characters: 255 is fine, 256 is ENAMETOOLONG', () => {
      assert.equal(NAME_BYTES_MAX, 255);
      const fits = ['a'.repeat(255), '\u00E9'.repeat(127) + 'a', '\u20AC'.repeat(85), '\u{1F600}'.repeat(63) + 'abc'];
      const tooLong = ['a'.repeat(256), '\u00E9'.repeat(128), '\u20AC'.repeat(85) + 'a', '\u{1F600}'.repeat(64), 'b'.repeat(1000)];
      for (const name of fits) {
        assert.equal(Buffer.byteLength(name), 255);
        assert.doesNotThrow(() => validateName(name));
      }
      for (const name of tooLong) {
        assert.ok(Buffer.byteLength(name) > 255);
        assert.throws(() => validateName(name), (err: unknown) => isCode('ENAMETOOLONG')(err) && /vs\. max 255/.test((err as Error).message), `${name.length} chars`);
      }
    });

    it('refuses NUL anywhere (EINVAL)', () => {
      for (const name of ['\0', 'a\0', '\0a', 'a\0b']) assert.throws(() => validateName(name), isCode('EINVAL'), JSON.stringify(name));
    });

    it('refuses lone surrogates (EINVAL), accepts paired ones', () => {
      for (const name of ['\uD800', 'a\uDC00', '\uDE00\uD83D', 'x\uD83Dy']) assert.throws(() => validateName(name), isCode('EINVAL'), JSON.stringify(name));
      assert.doesNotThrow(() => validateName('\uD83D\uDE00'));
      assert.doesNotThrow(() => validateName('with space/and.dots'));
    });
  });

  describe('Namespace', () => {
    it('add, get, remove, size; duplicate names are assertion failures', () => {
      const ns = new Namespace();
      ns.add('x', 1);
      ns.add('y', 2);
      assert.equal(ns.size, 2);
      assert.equal(ns.get('x'), 1);
      assert.equal(ns.get('z'), undefined);
      assert.throws(() => ns.add('x', 3), assert.AssertionError);
      ns.remove('x');
      assert.equal(ns.get('x'), undefined);
      assert.equal(ns.size, 1);
      assert.throws(() => ns.remove('x'), assert.AssertionError);
      assert.throws(() => new Namespace().loadAll([['d', 1], ['d', 2]]), assert.AssertionError);
    });

    it('lists in UTF-8 byte order, whatever the insertion order (add or loadAll)', () => {
      const expected = [...NAMES].sort(utf8Order);
      assert.notDeepEqual(expected, [...NAMES].sort(), 'the sample must tell UTF-8 from UTF-16 order');
      for (const seed of [1, 2, 3]) {
        const added = new Namespace();
        shuffled(NAMES, seed).forEach((n, i) => added.add(n, i));
        assert.deepEqual(added.page('', '', 1000).names, expected);
        const loaded = new Namespace();
        loaded.loadAll(shuffled(NAMES, seed + 10).map((n, i) => [n, i] as [string, number]));
        assert.deepEqual(loaded.page('', '', 1000).names, expected);
      }
    });

    it('paging with a prefix and tokens returns each name exactly once, in UTF-8 byte order', () => {
      const ns = new Namespace();
      shuffled(NAMES, 7).forEach((n, i) => ns.add(n, i));
      for (const prefix of ['', 'a', '\uFF21', '\u{1F600}', 'z', 'nothing']) {
        const expected = NAMES.filter((n) => n.startsWith(prefix)).sort(utf8Order);
        for (const limit of [1, 2, 3, 7, 100]) {
          const got = walk(ns, prefix, limit);
          assert.deepEqual(got, expected, `prefix ${JSON.stringify(prefix)}, limit ${limit}`);
        }
      }
    });

    it('a page is exactly full at the end: more is false', () => {
      const ns = new Namespace();
      ['p1', 'p2', 'q'].forEach((n, i) => ns.add(n, i));
      assert.deepEqual(ns.page('p', '', 2), { names: ['p1', 'p2'], more: false });
      assert.deepEqual(ns.page('p', '', 1), { names: ['p1'], more: true });
      assert.deepEqual(ns.page('p', 'p1', 1), { names: ['p2'], more: false });
    });

    it('a token whose name was removed (or added) between pages neither skips nor repeats', () => {
      const ns = new Namespace();
      ['a1', 'a2', 'a3', 'a4', 'a5'].forEach((n, i) => ns.add(n, i));
      const first = ns.page('a', '', 2);
      assert.deepEqual(first.names, ['a1', 'a2']);
      ns.remove('a2');
      ns.add('a25', 9);
      ns.add('a0', 10);
      assert.deepEqual(ns.page('a', 'a2', 10).names, ['a25', 'a3', 'a4', 'a5']);
    });

    it('regression: a token that sorts after the prefix only in UTF-8 order is not compared in UTF-16 order', () => {
      // '\u{1F600}' (F0 9F ...) is after '\uFF21' (EF BC A1) in UTF-8 but before it in UTF-16:
      // nothing with prefix '\uFF21' is strictly after that token.
      const ns = new Namespace();
      NAMES.forEach((n, i) => ns.add(n, i));
      assert.deepEqual(ns.page('\uFF21', '\u{1F600}', 10), { names: [], more: false });
      // The other way round every name with the prefix is after the token.
      const all = NAMES.filter((n) => n.startsWith('\u{1F600}')).sort(utf8Order);
      assert.deepEqual(ns.page('\u{1F600}', '\uFF21zz', 10).names, all);
    });
  });
});
