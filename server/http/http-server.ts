/**
 * The HTTP side of daxd (fastify), on `serve --http HOST:PORT`: one plugin per concern.
 *
 *   metrics-plugin.ts    GET /metrics            Prometheus text (server/metrics.ts)
 *   health-plugin.ts     GET /healthz, /readyz   liveness, readiness
 *   admin-plugin.ts      GET /api/v1/...         volume, files, sessions, pins, locks (JSON)
 *   dashboard-plugin.ts  GET /                   the live dashboard (self-contained page)
 *
 *   auth-hook.ts         with --auth: who may fetch what (tokens); GET /api/v1/auth (open)
 *
 * Everything is read-only. Without --auth it is unauthenticated: bind it to loopback (the
 * default) or to a network only operators reach; a non-loopback bind is logged at warn.
 * Requests are logged at debug with their request id (never their headers);
 * buildHttpApp serves tests through inject().
 */
import type https from 'node:https';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { refuseUnverifiedPeers } from '../tls/client-auth';
import type { TlsMaterial } from '../tls/material';
import { isLoopbackHost } from '../bind-policy';
import { adminPlugin } from './admin-plugin';
import { installHttpAuth, redactingChildLogger } from './auth-hook';
import { dashboardPlugin } from './dashboard-plugin';
import type { HttpDeps } from './deps';
import { healthPlugin } from './health-plugin';
import { metricsPlugin } from './metrics-plugin';

/** The HTTP address could not be bound (in use, not local, malformed). */
export class HttpListenError extends Error {
  constructor(address: string, cause: Error) {
    super(`cannot listen on ${address} (http): ${cause.message}`, { cause });
    this.name = 'HttpListenError';
  }
}

export interface HttpServer {
  /** host:port with the real port. */
  readonly address: string;
  readonly app: FastifyInstance;
  close(): Promise<void>;
}

let lastRequestId = 0;

/** With `tls`, the app serves https with the material's certificates and client-auth mode. */
export function buildHttpApp(deps: HttpDeps, log: Logger, tls?: TlsMaterial): FastifyInstance {
  const httpLog = log.child({ component: 'http' });
  // fastify types an https app apart from an http one; the routes do not care which.
  const app = Fastify({
    ...(tls === undefined ? {} : { https: tls.serverOptions() }),
    loggerInstance: httpLog as FastifyBaseLogger,
    // fastify's own per-request lines (info) would drown the log: onResponse logs at debug.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'reqId' }),
    genReqId: () => `h-${(++lastRequestId).toString(36)}`,
    // Request loggers censor an authorization header (auth-hook.ts).
    childLoggerFactory: redactingChildLogger,
    // The dashboard keeps a connection open; a stop closes idle ones at once.
    forceCloseConnections: 'idle',
  }) as unknown as FastifyInstance;
  app.addHook('onResponse', async (request, reply) => {
    if (httpLog.isLevelEnabled('debug')) {
      request.log.debug({ method: request.method, url: request.url, status: reply.statusCode, durationMs: Math.round(reply.elapsedTime * 1000) / 1000 }, 'http');
    }
  });
  // First: the auth hook has to be on the root before the plugins add their routes.
  installHttpAuth(app, deps);
  void app.register(metricsPlugin, { deps });
  void app.register(healthPlugin, { deps });
  void app.register(adminPlugin, { deps });
  void app.register(dashboardPlugin);
  return app;
}

/** "127.0.0.1:7071" / "[::1]:0" -> host and port. */
export function parseHostPort(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || port > 65535) throw new HttpListenError(address, new Error('expected HOST:PORT'));
  return { host: m[1] ?? m[2], port };
}

/**
 * With `tls`: https, and a reload of the material reaches new connections through the
 * Node server's setSecureContext (open connections keep their certificate).
 */
export async function startHttpServer(deps: HttpDeps, log: Logger, address: string, tls?: TlsMaterial): Promise<HttpServer> {
  const { host, port } = parseHostPort(address);
  const app = buildHttpApp(deps, log, tls);
  let unsubscribe: () => void = () => undefined;
  if (tls !== undefined) {
    const server = app.server as unknown as https.Server;
    if (tls.clientAuth === 'request') refuseUnverifiedPeers(server, (reason) => log.debug({ reason }, 'http: refused a client certificate that does not verify'));
    unsubscribe = tls.onReload((snapshot) => server.setSecureContext(snapshot.options));
  }
  try {
    await app.listen({ host, port });
  } catch (err) {
    unsubscribe();
    await app.close();
    throw new HttpListenError(address, err as Error);
  }
  const bound = app.server.address();
  const boundPort = typeof bound === 'object' && bound !== null ? bound.port : port;
  const bracketed = host.includes(':') ? `[${host}]` : host;
  const httpAddress = `${bracketed}:${boundPort}`;
  deps.facts.httpAddress = httpAddress;
  if (!isLoopbackHost(host) && deps.auth === null) log.warn({ http: httpAddress }, 'the HTTP admin API and dashboard have no authentication: bound beyond loopback');
  return {
    address: httpAddress, app, close: () => {
      unsubscribe();
      return app.close();
    },
  };
}
