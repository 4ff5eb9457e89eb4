/**
 * The per-session page table (server/dax/page-table.ts) against a Map model, its memory
 * per PTE (a structural bound: array bytes, deterministic), and the tokens it backs
 * (server/dax/pte.ts): 128 random bits each, routed to their table, stale once revoked,
 * and an altered or foreign token answers as one never issued (S7).
 */
import assert from 'node:assert/strict';
import type { AddressSpace, SessionMapping } from '../../server/dax/address-space';
import { VPN_MAX, PageTable } from '../../server/dax/page-table';
import { PteTable } from '../../server/dax/pte';
import { expectCode, freshDax, writtenFile } from '../support/dax-volume';
import { randInt, seededRng } from '../support/rng';
import { TestOwner } from '../support/test-owner';

const key = (vpn: number, salt: number): Uint32Array => Uint32Array.of(vpn >>> 0, salt, (vpn * 7) >>> 0, 0xdeadbeef ^ salt);

describe('per-session page table', function () {
  it('matches a Map model over 20k random inserts, removes and lookups (tombstones, growth, clear)', function () {
    const rng = seededRng(14);
    const t = new PageTable();
    const model = new Map<number, Uint32Array>();
    for (let i = 0; i < 20_000; i++) {
      // Small and huge vpns alike (up to VPN_MAX): the hash takes both halves.
      const vpn = rng() < 0.1 ? VPN_MAX - randInt(rng, 0, 50) : randInt(rng, 0, 3000);
      const op = rng();
      if (op < 0.5) {
        if (model.has(vpn)) continue;
        const k = key(vpn, i);
        t.insert(vpn, k, 0);
        model.set(vpn, k);
      } else if (op < 0.8) {
        assert.equal(t.remove(vpn), model.delete(vpn), `remove ${vpn}`);
      } else {
        const k = model.get(vpn);
        assert.equal(t.find(vpn) >= 0, k !== undefined, `find ${vpn}`);
        if (k) {
          assert.ok(t.matches(vpn, k[0], k[1], k[2], k[3]), `key of ${vpn}`);
          assert.ok(!t.matches(vpn, k[0], k[1], k[2], k[3] ^ 1), `a key one bit off, ${vpn}`);
        }
      }
      assert.equal(t.size, model.size);
    }
    assert.deepEqual(t.vpnList().sort((a, b) => a - b), [...model.keys()].sort((a, b) => a - b));
    for (const vpn of [...model.keys()]) t.remove(vpn);
    assert.equal(t.size, 0);
    assert.ok(t.bytes <= 8 * 24, 'an emptied table shrinks back to its first size');
  });

  it('memory: at most 64 bytes of arrays per PTE for 1k to 300k dense pages (24 bytes a slot, load >= 0.375)', function () {
    for (const n of [1_000, 4_096, 100_000, 300_000]) {
      const t = new PageTable();
      const k = new Uint32Array(4);
      for (let pg = 0; pg < n; pg++) {
        k[0] = pg;
        t.insert(pg * 2, k, 0);
      }
      assert.ok(t.bytes / n <= 64, `${n} PTEs: ${(t.bytes / n).toFixed(1)} bytes each`);
    }
  });

  it('tokens: 36 base64url characters; any altered character, a truncated or padded one, is PTE_STALE; another session\'s is too', async function () {
    const v = await freshDax();
    const ino = await writtenFile(v, 'f', 2, () => 0x61);
    const a = new TestOwner('a');
    const b = new TestOwner('b');
    const token = (await v.dax.fault(a, ino, 1, 'READ', false)).pte?.token ?? '';
    assert.match(token, /^[A-Za-z0-9_-]{36}$/);
    assert.deepEqual(v.dax.load(a, token, 0, 2), Buffer.from('aa'));
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (let i = 0; i < token.length; i++) {
      const other = alphabet[(alphabet.indexOf(token[i]) + 1) % 64];
      await expectCode(() => v.dax.load(a, token.slice(0, i) + other + token.slice(i + 1), 0, 1), 'PTE_STALE', `character ${i} changed`);
    }
    for (const bad of [token.slice(0, 35), `${token}A`, `${token.slice(0, 34)}==`, token.replace(/./, '+'), '']) {
      await expectCode(() => v.dax.load(a, bad, 0, 1), 'PTE_STALE', `malformed ${JSON.stringify(bad)}`);
    }
    await expectCode(() => v.dax.load(b, token, 0, 1), 'PTE_STALE', 'another session');
    // A second fault of the page by the same session: the same PTE; by another: its own.
    assert.equal((await v.dax.fault(a, ino, 1, 'READ', false)).pte?.token, token);
    const tb = (await v.dax.fault(b, ino, 1, 'READ', false)).pte?.token ?? '';
    assert.notEqual(tb, token);
    assert.deepEqual(v.dax.load(b, tb, 0, 1), Buffer.from('a'));
    await expectCode(() => v.dax.load(a, tb, 0, 1), 'PTE_STALE', 'b\'s token used by a');
  });

  it('a revoked PTE stays stale when its page is mapped again: the new PTE has new random bits', async function () {
    const v = await freshDax();
    const ino = await writtenFile(v, 'f', 1, () => 0x62);
    const a = new TestOwner('a');
    const first = (await v.dax.fault(a, ino, 0, 'READ', false)).pte?.token ?? '';
    v.dax.unmap(a, ino, 0, 0); // the mapping goes with its last PTE
    const second = (await v.dax.fault(a, ino, 0, 'READ', false)).pte?.token ?? '';
    assert.notEqual(second, first);
    await expectCode(() => v.dax.load(a, first, 0, 1), 'PTE_STALE', 'the token of the dropped mapping');
    assert.deepEqual(v.dax.load(a, second, 0, 1), Buffer.from('b'));
    // Within one mapping too: a writeback downgrade, then a new WRITE fault.
    const w1 = (await v.dax.fault(a, ino, 0, 'WRITE', false)).pte?.token ?? '';
    await v.dax.msync(ino, 0, 0);
    const w2 = (await v.dax.fault(a, ino, 0, 'WRITE', false)).pte?.token ?? '';
    assert.notEqual(w2, w1);
    await expectCode(() => v.dax.store(a, w1, 0, Buffer.from('x')), 'PTE_STALE', 'the downgraded writable token');
    v.dax.store(a, w2, 0, Buffer.from('y'));
    assert.deepEqual(v.dax.load(a, second, 0, 1), Buffer.from('y'), 'the read-only PTE survived the downgrade');
    assert.equal(v.dax.stats().ptes, 2);
    await a.end();
    assert.equal(v.dax.stats().ptes, 0);
    await expectCode(() => v.dax.load(a, second, 0, 1), 'PTE_STALE', 'after the session ended');
  });
});

describe('session mapping ids', function () {
  it('wrap past 2^32 - 1 to the lowest free id, skipping live ones (a server never runs out)', function () {
    const table = new PteTable();
    const owner = new TestOwner('ids');
    const as = {} as AddressSpace;
    const make = (id: number) => ({ id, owner, as, table: new PageTable() }) as unknown as SessionMapping;
    const live = table.newMapping(owner, as, make); // id 1 stays live throughout
    assert.equal(live.id, 1);
    // White box: as if 2^32 - 3 mappings had come and gone since.
    (table as unknown as { nextMappingId: number }).nextMappingId = 2 ** 32 - 2;
    const ids: number[] = [];
    for (let i = 0; i < 4; i++) {
      const m = table.newMapping(owner, as, make);
      ids.push(m.id);
      table.dropMapping(m);
    }
    // 2^32 - 2, 2^32 - 1, then past the top: 1 is live, so 2, then 3.
    assert.deepEqual(ids, [2 ** 32 - 2, 2 ** 32 - 1, 2, 3]);
  });
});
