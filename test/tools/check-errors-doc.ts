/**
 * Lint step: every error reason daxd can return and every named limit is documented in
 * README.md (a row of the "Errors" or "Limits" table naming it in backticks).
 * Exit 1 listing what is missing.
 */
import fs from 'node:fs';
import path from 'node:path';
import { REASONS } from '../../server/errors';
import * as httpLimits from '../../server/http/limits';
import * as engineLimits from '../../server/limits';
import * as nbdLimits from '../../server/nbd/limits';
import * as rpcLimits from '../../server/rpc/limits';
import * as sessionLimits from '../../server/session/limits';
import * as tlsLimits from '../../server/tls/limits';
import * as clusterLimits from '../../server/cluster/limits';
import * as wireLimits from '../../wire/limits';

function repoRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

export function undocumented(readme: string): string[] {
  const limitNames = [wireLimits, engineLimits, rpcLimits, sessionLimits, httpLimits, nbdLimits, tlsLimits, clusterLimits].flatMap((m) => Object.keys(m)).filter((k) => /^[A-Z][A-Z0-9_]+$/.test(k));
  const names = [...Object.keys(REASONS), ...limitNames];
  return names.filter((n) => !readme.includes(`| \`${n}\``));
}

if (require.main === module) {
  const readme = fs.readFileSync(path.join(repoRoot(), 'README.md'), 'utf8');
  const missing = undocumented(readme);
  if (missing.length > 0) {
    console.error(`README.md does not document: ${missing.join(', ')}`);
    process.exit(1);
  }
  console.log(`check-errors-doc: ${Object.keys(REASONS).length} reasons and all limits documented`);
}
