/**
 * `daxd token`: a fresh bearer token for a principal of the --auth file. Prints the token
 * (`daxd_` and 32 bytes from the CSPRNG in base64url: 48 characters), its SHA-256 in hex, and a principal
 * entry to paste under `principals:` of the --auth file. Only the hash goes into the file;
 * the token goes to the client (--token or $DAXD_TOKEN) and is not stored by daxd.
 */
import { createHash, randomBytes } from 'node:crypto';
import { EXIT_OK, stringOption, UsageError, type Parsed } from './args';
import type { Command } from './command';

/** Bytes of randomness in a token. */
export const TOKEN_RANDOM_BYTES = 32;
/**
 * Every token starts with this. It keeps a token from starting with "-" (a base64url string
 * does once in 64), which `--token VALUE` would read as an option, and it lets secret
 * scanners recognise a leaked token.
 */
export const TOKEN_PREFIX = 'daxd_';
const ROLES = ['admin', 'rw', 'ro'];
const NAME = /^[A-Za-z0-9._@-]{1,128}$/;

export function newToken(): { token: string; sha256: string } {
  const token = TOKEN_PREFIX + randomBytes(TOKEN_RANDOM_BYTES).toString('base64url');
  return { token, sha256: createHash('sha256').update(token, 'utf8').digest('hex') };
}

async function token(parsed: Parsed): Promise<number> {
  const name = stringOption(parsed.values, 'name') ?? 'NAME';
  const role = stringOption(parsed.values, 'role') ?? 'rw';
  const prefix = stringOption(parsed.values, 'prefix');
  if (!NAME.test(name)) throw new UsageError(`--name: ${JSON.stringify(name)} is not 1..128 characters of [A-Za-z0-9._@-]`);
  if (!ROLES.includes(role)) throw new UsageError(`--role: ${JSON.stringify(role)} is not one of ${ROLES.join(', ')}`);
  const made = newToken();
  if (parsed.values.json === true) {
    process.stdout.write(`${JSON.stringify({ token: made.token, token_sha256: made.sha256, principal: { name, role, ...(prefix === undefined ? {} : { prefix }), token_sha256: made.sha256 } })}\n`);
    return EXIT_OK;
  }
  const lines = [
    `token:        ${made.token}`,
    `token_sha256: ${made.sha256}`,
    '',
    '# give the token to the client (--token, or DAXD_TOKEN in its environment);',
    '# paste this under `principals:` of the --auth file (it holds only the hash):',
    `  - name: ${name}`,
    `    role: ${role}`,
    ...(prefix === undefined ? [] : [`    prefix: ${JSON.stringify(prefix)}`]),
    `    token_sha256: ${made.sha256}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return EXIT_OK;
}

export const tokenCommand: Command = {
  name: 'token',
  summary: 'make a bearer token and its SHA-256 for the --auth file',
  help: 'usage: daxd token [--name NAME] [--role admin|rw|ro] [--prefix PREFIX] [--json]\n\n'
    + `Prints a fresh random token (${TOKEN_PREFIX} and ${TOKEN_RANDOM_BYTES} random bytes in base64url), its SHA-256 (hex), and a principal\n`
    + 'entry for the --auth file of `daxd serve` (which stores only the hash).\n'
    + '  --name NAME       the principal\'s name in the entry (default NAME)\n'
    + '  --role ROLE       admin, rw or ro (default rw)\n'
    + '  --prefix PREFIX   confine the principal to names starting with PREFIX\n'
    + '  --json            one JSON line: token, token_sha256, principal',
  options: { name: { type: 'string' }, role: { type: 'string' }, prefix: { type: 'string' }, json: { type: 'boolean' } },
  positionals: { min: 0, max: 0 },
  run: token,
};
