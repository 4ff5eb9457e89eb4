/**
 * The HTTP side with `--auth` (server/http/auth-hook.ts), against a live daxd in this
 * process over real TCP: who may fetch what.
 *
 *   /api/v1/* (and unknown paths)  admin token; none or a bad one 401 EAUTH with
 *                                  WWW-Authenticate: Bearer; a non-admin one 403 EACCES
 *   /healthz, /readyz, /, assets   open
 *   /api/v1/auth                   open: {required, metrics}
 *   /metrics                       open (--metrics-auth none), or any principal's token (token)
 *   a peer failing too often       429 AUTH_RATE_LIMITED with Retry-After, even with a good token
 *
 * Tokens are random per run; the principals hold only their SHA-256. Failures count per
 * peer address, so each test that fails on purpose connects from its own loopback
 * address (127.0.0.N): one test's failures never limit another's.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Authenticator, sha256 } from '../../server/auth/authenticator';
import { AUTH_FAILURES_PER_WINDOW_MAX, AUTH_FAILURE_WINDOW_MS } from '../../server/auth/limits';
import { Principal, type Role } from '../../server/auth/principal';
import { volumeSchema } from '../../server/http/admin-schemas';
import { authInfoSchema } from '../../server/http/auth-hook';
import { buildHttpApp } from '../../server/http/http-server';
import { startHttpDaxd, validate, type HttpDaxd } from './fixture';

const ADMIN_ROUTES = ['/api/v1/volume', '/api/v1/files', '/api/v1/sessions', '/api/v1/pins', '/api/v1/locks', '/api/v1/nbd', '/api/v1/cluster'];
const OPEN_ROUTES = ['/healthz', '/readyz', '/', '/dashboard.js', '/dashboard.css', '/api/v1/auth'];

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json(): Record<string, unknown>;
}

/** GET over node:http (fetch cannot pick the local address): token as Bearer, or a raw Authorization header. */
function get(base: string, path: string, opts: { token?: string; authorization?: string; localAddress?: string } = {}): Promise<Reply> {
  const headers: http.OutgoingHttpHeaders = {};
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  if (opts.authorization !== undefined) headers.authorization = opts.authorization;
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}${path}`, { headers, localAddress: opts.localAddress, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode!, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, unknown> });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

function token(): string {
  return randomBytes(24).toString('base64url');
}

/** An authenticator over three principals (admin, rw, ro), and their tokens. */
function principals() {
  const tokens: Record<Role, string> = { admin: token(), rw: token(), ro: token() };
  const list = (Object.keys(tokens) as Role[]).map((role) => new Principal(`p-${role}`, role, '', {}, { tokenSha256: sha256(tokens[role]) }));
  return { tokens, auth: new Authenticator(list) };
}

function assertRefused(reply: Reply, status: 401 | 403 | 429, what: string): Record<string, unknown> {
  assert.equal(reply.status, status, `${what}: ${reply.text}`);
  const body = reply.json();
  assert.equal(body.reason, { 401: 'EAUTH', 403: 'EACCES', 429: 'AUTH_RATE_LIMITED' }[status], what);
  assert.equal(body.statusCode, status, what);
  assert.equal(typeof body.error, 'string', what);
  assert.equal(reply.headers['cache-control'], 'no-store', what);
  if (status === 401) assert.match(String(reply.headers['www-authenticate']), /^Bearer\b/, what);
  return body;
}

describe('HTTP with --auth: tokens, roles, open probes, --metrics-auth, rate limit', function () {
  this.timeout(60_000);

  describe('--metrics-auth none (the default)', function () {
    let s: HttpDaxd;
    let tokens: Record<Role, string>;

    before(async function () {
      const p = principals();
      tokens = p.tokens;
      // trace: whatever the HTTP side logs, the token check below sees it.
      s = await startHttpDaxd('http-auth', { auth: p.auth, level: 'trace' });
    });

    after(async function () {
      await s?.stop();
    });

    it('/api/v1/* without a token, or with a bad one: 401 EAUTH with WWW-Authenticate: Bearer', async function () {
      const from = { localAddress: '127.0.0.3' };
      for (const route of ADMIN_ROUTES) {
        assertRefused(await get(s.base, route, from), 401, `${route} without a token`);
        assertRefused(await get(s.base, route, { ...from, token: token() }), 401, `${route} with an unknown token`);
      }
      for (const authorization of [`Basic ${Buffer.from(`admin:${tokens.admin}`).toString('base64')}`, `Bearer`, `Bearer short`, `bearer ${tokens.admin}`, `Bearer ${tokens.admin}x`]) {
        assertRefused(await get(s.base, '/api/v1/volume', { ...from, authorization }), 401, `authorization ${authorization.slice(0, 12)}…`);
      }
    });

    it('/api/v1/* with an rw or ro token: 403 EACCES; with the admin token: 200', async function () {
      for (const route of ADMIN_ROUTES) {
        for (const role of ['rw', 'ro'] as const) {
          const body = assertRefused(await get(s.base, route, { token: tokens[role] }), 403, `${route} as ${role}`);
          assert.match(String(body.message), new RegExp(`p-${role}`));
        }
        const ok = await get(s.base, route, { token: tokens.admin });
        assert.equal(ok.status, 200, `${route} as admin: ${ok.text}`);
      }
      validate(volumeSchema, (await get(s.base, '/api/v1/volume', { token: tokens.admin })).json(), '/api/v1/volume as admin');
    });

    it('a path no route has is refused like /api/v1/* (401, 403), and only an admin learns it is a 404', async function () {
      const from = { localAddress: '127.0.0.4' };
      for (const route of ['/api/v1/nope', '/nope', '/api/v1/volume/', '/API/V1/VOLUME', '/api/v1/%76olume?x=1']) {
        const anonymous = await get(s.base, route, from);
        // A spelling the router maps to /api/v1/volume is that route: still 401.
        assertRefused(anonymous, 401, `${route} without a token`);
        const asRo = await get(s.base, route, { token: tokens.ro });
        assertRefused(asRo, 403, `${route} as ro`);
        const asAdmin = await get(s.base, route, { token: tokens.admin });
        assert.ok(asAdmin.status === 404 || asAdmin.status === 200, `${route} as admin: ${asAdmin.status}`);
      }
      assert.equal((await get(s.base, '/api/v1/nope', { token: tokens.admin })).status, 404);
    });

    it('/healthz, /readyz, the dashboard page and its assets, and /api/v1/auth stay open', async function () {
      for (const route of OPEN_ROUTES) {
        const reply = await get(s.base, route);
        assert.equal(reply.status, 200, `${route}: ${reply.text.slice(0, 200)}`);
        // A bad token on an open route is not looked at (and not counted as a failure).
        assert.equal((await get(s.base, route, { token: token() })).status, 200, `${route} with a bad token`);
      }
      const info = (await get(s.base, '/api/v1/auth')).json();
      validate(authInfoSchema, info, '/api/v1/auth');
      assert.deepEqual(info, { required: true, metrics: 'none' });
    });

    it('/metrics is open under --metrics-auth none, with or without a token', async function () {
      const open = await get(s.base, '/metrics');
      assert.equal(open.status, 200);
      assert.match(open.text, /^# HELP /m);
      assert.equal((await get(s.base, '/metrics', { token: token() })).status, 200);
    });

    it(`${AUTH_FAILURES_PER_WINDOW_MAX} failures from one address limit it: of 100 wrong tokens the rest are 429 with Retry-After, and so is a good token; other addresses are not limited`, async function () {
      const from = { localAddress: '127.0.0.2' };
      const statuses: number[] = [];
      let lastLimited: Reply | undefined;
      for (let i = 0; i < 100; i++) {
        const reply = await get(s.base, '/api/v1/volume', { ...from, token: token() });
        statuses.push(reply.status);
        if (reply.status === 429) lastLimited = reply;
      }
      assert.deepEqual(statuses.slice(0, AUTH_FAILURES_PER_WINDOW_MAX), Array(AUTH_FAILURES_PER_WINDOW_MAX).fill(401));
      assert.deepEqual(statuses.slice(AUTH_FAILURES_PER_WINDOW_MAX), Array(100 - AUTH_FAILURES_PER_WINDOW_MAX).fill(429));
      assertRefused(lastLimited!, 429, 'the 100th wrong token');
      const retryAfter = Number(lastLimited!.headers['retry-after']);
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= AUTH_FAILURE_WINDOW_MS / 1000, `Retry-After ${lastLimited!.headers['retry-after']}`);
      // Limited: the admin token is refused too, unchecked.
      assertRefused(await get(s.base, '/api/v1/volume', { ...from, token: tokens.admin }), 429, 'the admin token from the limited address');
      // Probes stay open to it; another address is not limited.
      assert.equal((await get(s.base, '/healthz', from)).status, 200);
      assert.equal((await get(s.base, '/api/v1/volume', { token: tokens.admin })).status, 200);
    });

    it('no log line carries a token, and request loggers censor an authorization header', async function () {
      // Requests with each token (on top of the tests above): accepted, refused, wrong role.
      for (const t of Object.values(tokens)) await get(s.base, '/api/v1/volume', { token: t });
      await get(s.base, '/metrics', { token: tokens.ro });
      for (const t of Object.values(tokens)) {
        const leaked = s.logs.filter((line) => JSON.stringify(line).includes(t));
        assert.deepEqual(leaked, [], 'a token reached the log');
      }
      // The HTTP side did log (trace): the check above looked at real lines.
      assert.ok(s.logs.some((line) => line.component === 'http' && line.url === '/api/v1/volume'), 'the HTTP side logged its requests');
      // A route that logs its request's headers (as a careless handler might), on an app
      // built as the server builds it. (Not under `req`: fastify's req serializer keeps no
      // headers at all.)
      const lines: Array<Record<string, unknown>> = [];
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const l of chunk.toString('utf8').split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
          done();
        },
      });
      const d = s.daxd;
      const app = buildHttpApp({
        fs: d.fs, dax: d.dax, sessions: d.rpc.sessions, metrics: d.metrics, auth: d.auth, metricsAuth: 'none',
        facts: { version: 'test', volumePath: s.volumePath, grpcAddress: s.grpc, httpAddress: '', startedAtMs: Date.now(), mount: d.fs.mountReport },
        readiness: () => ({ volumeMounted: true, journalReplayed: true, acceptingCalls: true }),
      }, pino({ level: 'info' }, sink));
      app.get('/logs-its-headers', async (request) => {
        request.log.info({ headers: request.headers, request: { headers: request.headers } }, 'headers');
        return {};
      });
      try {
        const res = await app.inject({ method: 'GET', url: '/logs-its-headers', headers: { authorization: `Bearer ${tokens.admin}`, 'x-kept': 'yes' } });
        assert.equal(res.statusCode, 200, res.body);
      } finally {
        await app.close();
      }
      const line = lines.find((l) => l.msg === 'headers') as { headers: Record<string, string>; request: { headers: Record<string, string> } } | undefined;
      assert.ok(line, 'the line was logged');
      assert.ok(!JSON.stringify(line).includes(tokens.admin), JSON.stringify(line));
      for (const h of [line.headers, line.request.headers]) {
        assert.equal(h.authorization, '[Redacted]');
        assert.equal(h['x-kept'], 'yes', 'other headers are logged as they are');
      }
    });
  });

  describe('--metrics-auth token', function () {
    let s: HttpDaxd;
    let tokens: Record<Role, string>;

    before(async function () {
      const p = principals();
      tokens = p.tokens;
      s = await startHttpDaxd('http-auth-metrics', { auth: p.auth, metricsAuth: 'token' });
    });

    after(async function () {
      await s?.stop();
    });

    it('/metrics needs a token, of any principal; /api/v1/auth says so; the probes stay open', async function () {
      const from = { localAddress: '127.0.0.5' };
      assertRefused(await get(s.base, '/metrics', from), 401, '/metrics without a token');
      assertRefused(await get(s.base, '/metrics', { ...from, token: token() }), 401, '/metrics with an unknown token');
      for (const role of ['admin', 'rw', 'ro'] as const) {
        const reply = await get(s.base, '/metrics', { token: tokens[role] });
        assert.equal(reply.status, 200, `/metrics as ${role}`);
        assert.match(reply.text, /^# HELP /m);
      }
      assert.deepEqual((await get(s.base, '/api/v1/auth')).json(), { required: true, metrics: 'token' });
      for (const route of ['/healthz', '/readyz']) assert.equal((await get(s.base, route)).status, 200, route);
      assertRefused(await get(s.base, '/api/v1/volume', { token: tokens.ro }), 403, '/api/v1/volume as ro');
    });
  });

  describe('auth off', function () {
    let s: HttpDaxd;

    before(async function () {
      s = await startHttpDaxd('http-auth-off');
    });

    after(async function () {
      await s?.stop();
    });

    it('everything stays open, an authorization header is ignored, and /api/v1/auth says no token is needed', async function () {
      for (const route of [...ADMIN_ROUTES, ...OPEN_ROUTES, '/metrics']) {
        assert.equal((await get(s.base, route)).status, 200, route);
        assert.equal((await get(s.base, route, { token: token() })).status, 200, `${route} with a stray token`);
      }
      assert.deepEqual((await get(s.base, '/api/v1/auth')).json(), { required: false, metrics: 'none' });
    });
  });
});
