/**
 * The --auth file: principals in JSON or YAML (chosen by content: JSON if it parses as
 * JSON, else YAML). Shape:
 *
 *   principals:
 *     - name: alice            # [A-Za-z0-9._@-], unique
 *       role: rw               # admin | rw | ro
 *       prefix: "alice/"       # optional: names it may see and touch
 *       token_sha256: 9f86...  # optional: hex SHA-256 of its bearer token (`daxd token`)
 *       cert_cn: alice         # optional: client-certificate subject CN
 *       cert_san: "DNS:alice.example"  # optional: one subjectAltName entry
 *       quotas: { sessions: 4, pins: 64, pinned_blocks: 4096, allocated_bytes: 1073741824, files: 1000 }
 *
 * Every principal needs at least one credential. A plaintext `token` is refused: the
 * file holds hashes only, so reading it does not hand out tokens. Tokens and certificate
 * identities must be unique across principals (one credential, one principal).
 * Everything is validated before the server starts; an error names the principal and field.
 */
import fs from 'node:fs';
import { load as loadYaml } from 'js-yaml';
import { AUTH_FILE_BYTES_MAX, PRINCIPAL_NAME_BYTES_MAX, PRINCIPALS_MAX } from './limits';
import { Principal, ROLES, type Quotas, type Role } from './principal';

/** The --auth file is unusable; the message names the file, principal and field. */
export class AuthFileError extends Error {
  constructor(file: string, message: string) {
    super(`--auth ${file}: ${message}`);
    this.name = 'AuthFileError';
  }
}

const NAME = /^[A-Za-z0-9._@-]+$/;
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
const FIELDS = new Set(['name', 'role', 'prefix', 'token_sha256', 'cert_cn', 'cert_san', 'quotas']);
const QUOTA_FIELDS = { sessions: 'sessions', pins: 'pins', pinned_blocks: 'pinnedBlocks', allocated_bytes: 'allocatedBytes', files: 'files' } as const;
const TEXT_BYTES_MAX = 1024;

export function loadAuthFile(file: string): Principal[] {
  let text: string;
  try {
    const size = fs.statSync(file).size;
    if (size > AUTH_FILE_BYTES_MAX) throw new AuthFileError(file, `file is ${size} bytes, more than AUTH_FILE_BYTES_MAX (${AUTH_FILE_BYTES_MAX})`);
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof AuthFileError) throw err;
    throw new AuthFileError(file, (err as Error).message);
  }
  return parsePrincipals(file, text);
}

/** Parses and validates the file's text (exported for tests). */
export function parsePrincipals(file: string, text: string): Principal[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    try {
      doc = loadYaml(text);
    } catch (err) {
      throw new AuthFileError(file, `neither JSON nor YAML: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  const fail = (message: string) => new AuthFileError(file, message);
  if (!isObject(doc) || !Array.isArray(doc.principals)) throw fail('expected an object with a `principals` list');
  const list: unknown[] = doc.principals;
  if (list.length === 0) throw fail('`principals` is empty: with auth on, nobody could call');
  if (list.length > PRINCIPALS_MAX) throw fail(`${list.length} principals, more than PRINCIPALS_MAX (${PRINCIPALS_MAX})`);
  const principals = list.map((entry, i) => parsePrincipal(entry, i, fail));
  unique(principals.map((p) => p.name), 'name', fail);
  unique(principals.flatMap((p) => (p.credentials.tokenSha256 ? [p.credentials.tokenSha256.toString('hex')] : [])), 'token_sha256', fail);
  unique(principals.flatMap((p) => (p.credentials.certCn !== undefined ? [p.credentials.certCn] : [])), 'cert_cn', fail);
  unique(principals.flatMap((p) => (p.credentials.certSan !== undefined ? [p.credentials.certSan] : [])), 'cert_san', fail);
  return principals;
}

function parsePrincipal(entry: unknown, index: number, fail: (m: string) => AuthFileError): Principal {
  if (!isObject(entry)) throw fail(`principals[${index}] is not an object`);
  const where = typeof entry.name === 'string' ? `principal ${JSON.stringify(entry.name.slice(0, 64))}` : `principals[${index}]`;
  const bad = (field: string, what: string) => fail(`${where}: ${field} ${what}`);
  if ('token' in entry) throw bad('token', 'is a plaintext token: store its SHA-256 as token_sha256 instead (`daxd token` prints both)');
  for (const key of Object.keys(entry)) if (!FIELDS.has(key)) throw bad(key, `is not a field (expected one of ${[...FIELDS].join(', ')})`);
  const name = entry.name;
  if (typeof name !== 'string' || !NAME.test(name) || Buffer.byteLength(name) > PRINCIPAL_NAME_BYTES_MAX) {
    throw bad('name', `must be 1..${PRINCIPAL_NAME_BYTES_MAX} characters of [A-Za-z0-9._@-]`);
  }
  const role = entry.role;
  if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) throw bad('role', `must be one of ${ROLES.join(', ')}`);
  const prefix = optionalText(entry.prefix, 'prefix', bad) ?? '';
  const tokenHex = optionalText(entry.token_sha256, 'token_sha256', bad);
  if (tokenHex !== undefined && !SHA256_HEX.test(tokenHex)) throw bad('token_sha256', 'must be 64 hex digits (the SHA-256 of the token)');
  const certCn = optionalText(entry.cert_cn, 'cert_cn', bad);
  const certSan = optionalText(entry.cert_san, 'cert_san', bad);
  if (tokenHex === undefined && certCn === undefined && certSan === undefined) throw bad('credentials', 'are missing: give token_sha256, cert_cn or cert_san');
  return new Principal(name, role as Role, prefix, parseQuotas(entry.quotas, bad), {
    tokenSha256: tokenHex === undefined ? undefined : Buffer.from(tokenHex, 'hex'), certCn, certSan,
  });
}

function parseQuotas(value: unknown, bad: (field: string, what: string) => AuthFileError): Quotas {
  if (value === undefined || value === null) return {};
  if (!isObject(value)) throw bad('quotas', 'must be an object');
  const out: Record<string, number> = {};
  for (const [key, n] of Object.entries(value)) {
    const field = (QUOTA_FIELDS as Record<string, string>)[key];
    if (field === undefined) throw bad(`quotas.${key}`, `is not a quota (expected one of ${Object.keys(QUOTA_FIELDS).join(', ')})`);
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw bad(`quotas.${key}`, 'must be a non-negative integer');
    out[field] = n;
  }
  return out;
}

function optionalText(value: unknown, field: string, bad: (field: string, what: string) => AuthFileError): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.length === 0 || Buffer.byteLength(value) > TEXT_BYTES_MAX) throw bad(field, `must be a non-empty string of at most ${TEXT_BYTES_MAX} bytes`);
  return value;
}

function unique(values: string[], field: string, fail: (m: string) => AuthFileError): void {
  const seen = new Set<string>();
  for (const v of values) {
    if (seen.has(v)) throw fail(`two principals share ${field} ${field === 'token_sha256' ? '(a hash)' : JSON.stringify(v)}: one credential must name one principal`);
    seen.add(v);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
