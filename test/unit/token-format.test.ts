/**
 * The shape of a token `daxd token` prints. A token is passed on command lines as
 * `--token VALUE`, so it must never start with "-": the argument parser would read it as an
 * option (a base64url token starts with "-" once in 64). The `daxd_` prefix also lets secret
 * scanners recognise a leaked token.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { newToken, TOKEN_RANDOM_BYTES } from '../../cli/token-command';

const DRAWS = 2_000;

describe('daxd token format', function () {
  it(`daxd_ then ${TOKEN_RANDOM_BYTES} bytes of base64url, never a leading "-" (${DRAWS} draws)`, function () {
    const seen = new Set<string>();
    for (let i = 0; i < DRAWS; i++) {
      const { token, sha256 } = newToken();
      assert.match(token, /^daxd_[A-Za-z0-9_-]{43}$/);
      assert.equal(Buffer.from(token.slice('daxd_'.length), 'base64url').length, TOKEN_RANDOM_BYTES);
      assert.equal(createHash('sha256').update(token, 'utf8').digest('hex'), sha256);
      seen.add(token);
    }
    assert.equal(seen.size, DRAWS);
  });
});
