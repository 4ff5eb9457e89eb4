/**
 * QuotaLedger's reservations: while one allocating change is still running (its blocks not
 * yet allocated), a second change of the same prefix counts the first one's reservation,
 * so the two cannot both pass the last unit; two principals sharing a prefix share it.
 * Once the first change ends, its reservation is gone (nothing leaks).
 */
import assert from 'node:assert/strict';
import { QuotaLedger } from '../../../server/auth/quota';
import { Principal } from '../../../server/auth/principal';
import { DaxError } from '../../../server/errors';
import { SessionTable } from '../../../server/session/session-table';
import { freshDax, sparseFile, type DaxVolume } from '../../support/dax-volume';

const PAGE = 4096;

describe('quota reservations', function () {
  let v: DaxVolume;
  let ledger: QuotaLedger;
  before(async function () {
    v = await freshDax();
    ledger = new QuotaLedger(v.fs, v.dax, new SessionTable({ log: { info: () => undefined, error: () => undefined } }));
  });

  it('a pending change holds its blocks: a second one for the last block is EDQUOT, also for another principal of the prefix, until the first ends', async function () {
    const one = new Principal('one', 'rw', 'p/', { allocatedBytes: 2 * PAGE }, {});
    const two = new Principal('two', 'rw', 'p/', { allocatedBytes: 2 * PAGE }, {});
    const ino = await sparseFile(v, 'p/file', 16 * PAGE);
    let finish!: () => void;
    const pending = ledger.withAllocation(one, ino, 0, 1, () => new Promise<void>((resolve) => (finish = resolve)));
    const refusal = (p: Principal, first: number) => ledger.withAllocation(p, ino, first, first, async () => 'ran').catch((err: unknown) => (err instanceof DaxError ? err.code : err));
    assert.equal(await refusal(one, 5), 'EDQUOT');
    assert.equal(await refusal(two, 6), 'EDQUOT');
    finish();
    await pending;
    assert.equal(await refusal(two, 7), 'ran', 'the reservation went with its change (nothing was allocated by it)');
  });
});
