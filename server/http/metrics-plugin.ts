/** GET /metrics: the registry (server/metrics.ts) in the Prometheus text format. */
import type { FastifyInstance } from 'fastify';
import type { HttpDeps } from './deps';

export async function metricsPlugin(app: FastifyInstance, opts: { deps: HttpDeps }): Promise<void> {
  const { registry } = opts.deps.metrics;
  app.get('/metrics', async (_request, reply) => {
    reply.type(registry.contentType).header('cache-control', 'no-store');
    return registry.metrics();
  });
}
