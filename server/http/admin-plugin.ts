/**
 * The admin API, read-only JSON under /api/v1 (schemas: admin-schemas.ts, README "HTTP"):
 *   GET /api/v1/volume     volume usage, journal, mount report, server facts
 *   GET /api/v1/files      one page of the namespace (?prefix, ?page_token, ?page_size)
 *   GET /api/v1/sessions   open sessions
 *   GET /api/v1/pins       DMA pins, oldest first (?limit)
 *   GET /api/v1/locks      entry locks held, longest-held first, with their waiters (?limit)
 *   GET /api/v1/nbd        the NBD listener and its open connections, oldest first (?limit)
 *   GET /api/v1/cluster    the cluster as this node sees it (--etcd): nodes, health, capacity, files
 * Session and pin ids appear as prefixes: the whole ids are capabilities (S7).
 */
import type { FastifyInstance } from 'fastify';
import { DaxError } from '../errors';
import {
  errorSchema, filesQuerySchema, filesSchema, locksSchema, pinsSchema, rowsQuerySchema, sessionsSchema, volumeSchema,
} from './admin-schemas';
import { clusterSchema, nbdSchema } from './admin-schemas';
import { filesView, locksView, pinsView, sessionsView, volumeView } from './admin-views';
import { clusterView, nbdView } from './admin-views';
import type { HttpDeps } from './deps';

interface FilesQuery {
  prefix?: string;
  page_token?: string;
  page_size?: number;
}

interface RowsQuery {
  limit?: number;
}

const errors = { 400: errorSchema };

export async function adminPlugin(app: FastifyInstance, opts: { deps: HttpDeps }): Promise<void> {
  const { deps } = opts;
  app.addHook('onSend', async (_request, reply, payload) => {
    reply.header('cache-control', 'no-store');
    return payload;
  });
  // Engine errors on bad input (a page token that is not one, a malformed prefix) are 400s.
  app.setErrorHandler((err, _request, reply) => {
    if (err instanceof DaxError) return reply.code(err.code === 'EINVAL' || err.code === 'ENAMETOOLONG' ? 400 : 500).send({ statusCode: reply.statusCode, error: err.code, message: err.message });
    return reply.send(err);
  });
  app.get('/api/v1/volume', { schema: { response: { 200: volumeSchema } } }, async () => volumeView(deps));
  app.get<{ Querystring: FilesQuery }>('/api/v1/files', { schema: { querystring: filesQuerySchema, response: { 200: filesSchema, ...errors } } },
    async (request) => filesView(deps, request.query));
  app.get('/api/v1/sessions', { schema: { response: { 200: sessionsSchema } } }, async () => sessionsView(deps));
  app.get<{ Querystring: RowsQuery }>('/api/v1/pins', { schema: { querystring: rowsQuerySchema, response: { 200: pinsSchema, ...errors } } },
    async (request) => pinsView(deps, request.query.limit));
  app.get<{ Querystring: RowsQuery }>('/api/v1/locks', { schema: { querystring: rowsQuerySchema, response: { 200: locksSchema, ...errors } } },
    async (request) => locksView(deps, request.query.limit));
  app.get<{ Querystring: RowsQuery }>('/api/v1/nbd', { schema: { querystring: rowsQuerySchema, response: { 200: nbdSchema, ...errors } } },
    async (request) => nbdView(deps, request.query.limit));
  app.get('/api/v1/cluster', { schema: { response: { 200: clusterSchema } } }, async () => clusterView(deps));
}
