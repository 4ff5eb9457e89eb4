/**
 * Authentication of the HTTP side (`daxd serve --auth FILE`, `--metrics-auth none|token`).
 * With auth off (no Authenticator) nothing is installed and every route stays open.
 *
 * With auth on, one onRequest hook on the root instance decides, from the route the
 * router matched (never from the raw URL, so no spelling of a path slips past it):
 *
 *   /healthz, /readyz                      open (probes carry no data)
 *   /, /dashboard.js, /dashboard.css       open (the page holds no data; it asks for a token)
 *   /api/v1/auth                           open: `{required, metrics}`, how the dashboard
 *                                          learns that it must ask for a token
 *   /metrics                               open under --metrics-auth none (the default);
 *                                          any principal's token under --metrics-auth token
 *   everything else (/api/v1/*, and paths  an admin principal's token
 *   no route matches)
 *
 * The token comes as `Authorization: Bearer TOKEN` (server/auth/authenticator.ts checks it
 * in constant time and counts failures per peer address: request.socket.remoteAddress, the
 * TCP peer, never a forwarded-for header a client could write). Refusals, with a JSON
 * body `{statusCode, error, reason, message}` and `cache-control: no-store`:
 *   401 EAUTH              no token, or one no principal has; `WWW-Authenticate: Bearer`
 *   403 EACCES             a valid token whose principal is not an admin (on an admin route)
 *   429 AUTH_RATE_LIMITED  this peer address failed too often lately; `Retry-After` seconds
 * A refused request never reaches its handler: a 404 for an unknown path is only given to
 * an admin, so an unauthenticated peer cannot even map the routes.
 *
 * The header is never logged: fastify's request logging is off (http-server.ts logs method,
 * url and status only), and every request's logger (redactingChildLogger) censors it
 * should a line ever carry the request's headers.
 */
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
import type { Authenticator } from '../auth/authenticator';
import type { Principal } from '../auth/principal';
import { AuthRateLimitedError, DaxError, PermissionDeniedError, UnauthenticatedError } from '../errors';
import type { HttpDeps, MetricsAuth } from './deps';

/** pino redact paths for request loggers: an `authorization` header wherever headers are logged. */
export const HTTP_LOG_REDACT = ['headers.authorization', '*.headers.authorization', '*.*.headers.authorization'];

/** One redacting child per parent logger: pino compiles the redaction once, not per request. */
const redactingParents = new WeakMap<FastifyBaseLogger, FastifyBaseLogger>();

/** fastify's childLoggerFactory: request loggers are children of a redacting child of the app's logger. */
export const redactingChildLogger: NonNullable<FastifyServerOptions['childLoggerFactory']> = (logger, bindings, opts) => {
  let parent = redactingParents.get(logger);
  if (parent === undefined) {
    parent = logger.child({}, { redact: HTTP_LOG_REDACT });
    redactingParents.set(logger, parent);
  }
  return parent.child(bindings, opts);
};

/** Routes anyone may fetch, auth on or off (matched route patterns). */
const OPEN_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/', '/dashboard.js', '/dashboard.css', '/api/v1/auth']);

/** What a route asks of the caller. */
type Need = 'nothing' | 'principal' | 'admin';

export function routeNeeds(route: string | undefined, metricsAuth: MetricsAuth): Need {
  if (route !== undefined && OPEN_ROUTES.has(route)) return 'nothing';
  if (route === '/metrics') return metricsAuth === 'token' ? 'principal' : 'nothing';
  // /api/v1/* and anything unmatched: default deny.
  return 'admin';
}

/** The body of GET /api/v1/auth (open): whether this server wants a token, and for /metrics. */
export interface AuthInfo {
  required: boolean;
  metrics: MetricsAuth;
}

export const authInfoSchema = {
  type: 'object',
  required: ['required', 'metrics'],
  additionalProperties: false,
  properties: { required: { type: 'boolean' }, metrics: { type: 'string', enum: ['none', 'token'] } },
} as const;

const HTTP_STATUS: Partial<Record<DaxError['code'], { status: number; error: string }>> = {
  EAUTH: { status: 401, error: 'Unauthorized' },
  EACCES: { status: 403, error: 'Forbidden' },
  AUTH_RATE_LIMITED: { status: 429, error: 'Too Many Requests' },
};

/**
 * Installs GET /api/v1/auth and, with auth on, the hook. Call on the root instance before
 * the other plugins are registered, so the hook runs for every route they add.
 */
export function installHttpAuth(app: FastifyInstance, deps: Pick<HttpDeps, 'auth' | 'metricsAuth'>): void {
  const { auth, metricsAuth } = deps;
  // A token nobody can present would lock Prometheus out for good: refuse the combination
  // here too (`daxd serve` reports it as a usage error before anything starts).
  if (metricsAuth === 'token' && auth === null) throw new Error('--metrics-auth token needs --auth FILE');
  app.get('/api/v1/auth', { schema: { response: { 200: authInfoSchema } } }, async (_request, reply): Promise<AuthInfo> => {
    reply.header('cache-control', 'no-store');
    return { required: auth !== null, metrics: metricsAuth };
  });
  if (auth === null) return;
  app.addHook('onRequest', async (request, reply) => {
    const need = routeNeeds(request.routeOptions.url, metricsAuth);
    if (need === 'nothing') return;
    try {
      const principal = authenticate(auth, request);
      if (need === 'admin' && !principal.can('admin')) {
        throw new PermissionDeniedError(`principal ${principal.name} has role ${principal.role}: ${request.routeOptions.url === undefined ? 'this path' : 'the admin API'} needs an admin token`);
      }
    } catch (err) {
      if (err instanceof DaxError && HTTP_STATUS[err.code] !== undefined) return refuse(reply, err);
      throw err;
    }
  });
}

function authenticate(auth: Authenticator, request: FastifyRequest): Principal {
  // remoteAddress is undefined only once the socket is gone; such a request gets no answer anyway.
  return auth.authenticate({ authorization: request.headers.authorization, peer: request.socket.remoteAddress ?? 'unknown' });
}

function refuse(reply: FastifyReply, err: DaxError): FastifyReply {
  const { status, error } = HTTP_STATUS[err.code]!;
  reply.code(status).header('cache-control', 'no-store');
  if (err instanceof UnauthenticatedError) reply.header('www-authenticate', 'Bearer realm="daxd"');
  if (err instanceof AuthRateLimitedError) reply.header('retry-after', String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))));
  return reply.send({ statusCode: status, error, reason: err.code, message: err.message });
}
