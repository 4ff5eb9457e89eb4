/**
 * Probes. GET /healthz: the process answers (liveness; never looks at the volume, so a
 * slow disk does not get the server killed). GET /readyz: 200 when the volume is mounted,
 * its journal replayed and the gRPC server accepts calls; 503 otherwise (starting,
 * draining at shutdown), with the checks that failed.
 */
import type { FastifyInstance } from 'fastify';
import { healthSchema, readySchema } from './admin-schemas';
import type { HttpDeps } from './deps';

export async function healthPlugin(app: FastifyInstance, opts: { deps: HttpDeps }): Promise<void> {
  const { deps } = opts;
  app.get('/healthz', { schema: { response: { 200: healthSchema } } }, async () => ({
    status: 'ok' as const, uptimeMs: Date.now() - deps.facts.startedAtMs,
  }));
  app.get('/readyz', { schema: { response: { 200: readySchema, 503: readySchema } } }, async (_request, reply) => {
    const checks = deps.readiness();
    const ready = checks.volumeMounted && checks.journalReplayed && checks.acceptingCalls;
    reply.code(ready ? 200 : 503).header('cache-control', 'no-store');
    return { ready, checks };
  });
}
