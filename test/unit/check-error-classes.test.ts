import assert from 'node:assert/strict';
import path from 'node:path';
import { checkErrorClasses, offencesIn } from '../tools/check-error-classes';

describe('check-error-classes (the lint step that keeps every DaxError class in server/errors.ts)', function () {
  it('flags new DaxError( and extends DaxError outside server/errors.ts, with their lines', function () {
    const src = [
      "import { DaxError } from '../errors';",
      "export class LocalError extends DaxError { constructor() { super('EIO', 'x'); } }",
      "export const e = new DaxError('ESHUTDOWN', 'bare reason');",
      "// new DaxError('EIO', 'in a comment') and 'extends DaxError' in a string do not count",
    ].join('\n');
    assert.deepEqual(offencesIn('server/rpc/x.ts', src), [
      { file: 'server/rpc/x.ts', line: 2, what: 'extends DaxError' },
      { file: 'server/rpc/x.ts', line: 3, what: 'new DaxError' },
    ]);
    assert.deepEqual(offencesIn('server/errors.ts', src), [], 'the error table may define them');
  });

  it('this repository has no offence', function () {
    assert.deepEqual(checkErrorClasses(path.resolve(__dirname, '../../..')), []);
  });
});
