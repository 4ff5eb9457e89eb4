/**
 * GET / : the live dashboard, a self-contained page (server/http/dashboard/: HTML, CSS,
 * vanilla JS; no CDN, no build step). It polls /metrics and /api/v1/* from the same
 * origin; the Content-Security-Policy allows nothing else.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const ASSETS: Record<string, string> = {
  '/': 'index.html',
  '/dashboard.js': 'dashboard.js',
  '/dashboard.css': 'dashboard.css',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** The asset folder: beside this module in the sources, or under the repository root when running from dist/. */
export function dashboardDir(): string {
  let dir = __dirname;
  for (;;) {
    const candidate = path.join(dir, 'server', 'http', 'dashboard');
    if (fs.existsSync(path.join(__dirname, 'dashboard', 'index.html'))) return path.join(__dirname, 'dashboard');
    if (fs.existsSync(path.join(candidate, 'index.html'))) return candidate;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`dashboard assets not found above ${__dirname}`);
    dir = up;
  }
}

export async function dashboardPlugin(app: FastifyInstance): Promise<void> {
  const dir = dashboardDir();
  for (const [route, file] of Object.entries(ASSETS)) {
    // Read once: the page is small and never changes while the server runs.
    const body = fs.readFileSync(path.join(dir, file));
    const type = TYPES[path.extname(file)];
    app.get(route, async (_request, reply) => {
      reply.type(type).header('content-security-policy', CSP).header('x-content-type-options', 'nosniff').header('cache-control', 'no-cache');
      return body;
    });
  }
}
