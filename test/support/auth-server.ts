/**
 * A real `daxd serve --auth FILE` for the authentication and authorization tests: an
 * --auth file written at test time with a fresh random token per principal (only its
 * SHA-256 goes into the file, as `daxd token` prints it), the server started on it, and
 * SDK clients acting as each principal.
 *
 * The principals every test may use (PRINCIPALS below): admin; alice and bob (rw, confined
 * to "alice/" and "bob/"); reader (ro, all names); and one principal per quota, each
 * confined to its own prefix so its usage is its own.
 *
 * Failed authentications count per peer address (127.0.0.1 for every test client) and
 * AUTH_FAILURES_PER_WINDOW_MAX of them refuse the address for a minute: a test that fails
 * on purpose more than a few times starts its own server.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { newToken as newCliToken } from '../../cli/token-command';
import type { DaxClient, DaxClientOptions } from '../../client';
import { BLOCK_SIZE } from '../../server/limits';
import { clientFor, startServer, tempDir, type StartedServer } from './start-server';

export interface PrincipalSpec {
  name: string;
  role: 'admin' | 'rw' | 'ro';
  prefix?: string;
  cert_cn?: string;
  quotas?: { sessions?: number; pins?: number; pinned_blocks?: number; allocated_bytes?: number; files?: number };
}

/** Quota edges of the quota'd principals (small, so a test reaches them in a few calls). */
export const QUOTA = { sessions: 2, pins: 2, pinnedBlocks: 8, allocatedBlocks: 16 } as const;
export const BLOCK_BYTES = BLOCK_SIZE;

export const PRINCIPALS: readonly PrincipalSpec[] = [
  { name: 'admin', role: 'admin' },
  { name: 'alice', role: 'rw', prefix: 'alice/', cert_cn: 'alice' },
  { name: 'bob', role: 'rw', prefix: 'bob/', cert_cn: 'bob' },
  { name: 'reader', role: 'ro' },
  { name: 'q-sessions', role: 'rw', prefix: 'q-sessions/', quotas: { sessions: QUOTA.sessions } },
  { name: 'q-pins', role: 'rw', prefix: 'q-pins/', quotas: { pins: QUOTA.pins } },
  { name: 'q-blocks', role: 'rw', prefix: 'q-blocks/', quotas: { pinned_blocks: QUOTA.pinnedBlocks } },
  { name: 'q-bytes', role: 'rw', prefix: 'q-bytes/', quotas: { allocated_bytes: QUOTA.allocatedBlocks * BLOCK_BYTES } },
];

/** A token as `daxd token` makes one. */
export function newToken(): string {
  return newCliToken().token;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export interface AuthServer {
  server: StartedServer;
  /** Each principal's token, by name. */
  tokens: Record<string, string>;
  authFile: string;
  /** An SDK client acting as `name` (closed by stop()). */
  as(name: string, options?: DaxClientOptions): DaxClient;
  /** An SDK client with these options and no token unless given (closed by stop()). */
  client(options?: DaxClientOptions): DaxClient;
  stop(): Promise<void>;
}

/** Write the --auth file (JSON) for `principals` with fresh tokens; returns the tokens. */
export function writeAuthFile(file: string, principals: readonly PrincipalSpec[]): Record<string, string> {
  const tokens: Record<string, string> = {};
  const entries = principals.map((p) => {
    tokens[p.name] = newToken();
    return { ...p, token_sha256: sha256Hex(tokens[p.name]) };
  });
  fs.writeFileSync(file, JSON.stringify({ principals: entries }, null, 2));
  return tokens;
}

/** Start `daxd serve --auth FILE` (plus `extraArgs`) on a fresh volume. */
export async function startAuthServer(options: { principals?: readonly PrincipalSpec[]; extraArgs?: string[]; size?: string } = {}): Promise<AuthServer> {
  const tmp = tempDir('daxd-auth-');
  const authFile = path.join(tmp.dir, 'auth.json');
  const tokens = writeAuthFile(authFile, options.principals ?? PRINCIPALS);
  let server: StartedServer;
  try {
    server = await startServer({ volumePath: path.join(tmp.dir, 'v.vol'), size: options.size ?? '64M', extraArgs: ['--auth', authFile, ...(options.extraArgs ?? [])] });
  } catch (err) {
    tmp.remove();
    throw err;
  }
  const clients: DaxClient[] = [];
  const client = (o: DaxClientOptions = {}) => {
    const c = clientFor(server, o);
    clients.push(c);
    return c;
  };
  return {
    server, tokens, authFile, client,
    as: (name, o = {}) => {
      const token = tokens[name];
      if (token === undefined) throw new Error(`no principal ${name}`);
      return client({ ...o, token });
    },
    stop: async () => {
      for (const c of clients) c.close();
      await server.stop();
      tmp.remove();
    },
  };
}
