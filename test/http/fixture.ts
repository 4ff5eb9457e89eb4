/**
 * Fixtures of the HTTP tests (test/http/*.test.ts):
 * - startHttpDaxd: a real daxd (Daxd.start) in this process, gRPC, HTTP and NBD on 127.0.0.1
 *   port 0, over a real volume file, failpoints enabled, its pino log captured as JSON
 *   lines (at `level`) so tests can look for the warn lines of slow operations.
 * - getJson / scrape: the HTTP side over real TCP (fetch).
 * - Prom: a parsed /metrics text; value(name, labels) sums the matching samples.
 * - validate: ajv against the admin API's schemas (server/http/admin-schemas.ts).
 * - rpc: promise wrappers over the generated stubs (the SDK is not needed here, and the
 *   tests need exact control of each call: one RPC is one known effect).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { Writable } from 'node:stream';
import Ajv from 'ajv';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { CLIENT_CHANNEL_OPTIONS, loadDaxdProto } from '../../client';
import { RawClients } from '../../client/raw-clients';
import type { Authenticator } from '../../server/auth/authenticator';
import type { MetricsAuth } from '../../server/http/deps';
import { Daxd, type DaxdOptions } from '../../server/server';
import { call } from '../support/raw-rpc';
import { tempDir } from '../support/start-server';
import { MiB } from '../support/units';

export interface HttpDaxd {
  daxd: Daxd;
  grpc: string;
  /** The NBD export's host:port. */
  nbd: string;
  /** http://127.0.0.1:PORT */
  base: string;
  volumePath: string;
  /** Every log line so far, parsed. */
  logs: Array<Record<string, unknown>>;
  raw: RawClients;
  stop(): Promise<void>;
}

export interface HttpDaxdOptions {
  level?: pino.Level;
  sizeBytes?: number;
  /** --auth: the HTTP side and gRPC want tokens of these principals. */
  auth?: Authenticator;
  metricsAuth?: MetricsAuth;
  /** Any other Daxd option (e.g. NBD TLS). */
  daxd?: Partial<DaxdOptions>;
}

export async function startHttpDaxd(name: string, opts: HttpDaxdOptions = {}): Promise<HttpDaxd> {
  const tmp = tempDir(`daxd-${name}-`);
  const volumePath = path.join(tmp.dir, `${name}.vol`);
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const log = pino({ level: opts.level ?? 'warn' }, sink);
  const daxd = await Daxd.start({
    volumePath, sizeBytes: opts.sizeBytes ?? 64 * MiB, grpcAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', nbdAddress: '127.0.0.1:0', log,
    failpoints: true, shutdownGraceMs: 2_000, auth: opts.auth, metricsAuth: opts.metricsAuth, ...opts.daxd,
  });
  const raw = new RawClients(loadDaxdProto(), daxd.grpcAddress, CLIENT_CHANNEL_OPTIONS);
  return {
    daxd, grpc: daxd.grpcAddress, nbd: daxd.nbdAddress!, base: `http://${daxd.httpAddress}`, volumePath, logs, raw,
    async stop() {
      raw.close();
      try {
        await daxd.stop();
      } finally {
        tmp.remove();
      }
    },
  };
}

export async function getJson<T = Record<string, unknown>>(base: string, urlPath: string): Promise<{ status: number; body: T; headers: Headers }> {
  const res = await fetch(base + urlPath);
  return { status: res.status, body: (await res.json()) as T, headers: res.headers };
}

export class Prom {
  readonly samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  readonly types = new Map<string, string>();

  constructor(readonly text: string) {
    for (const line of text.split('\n')) {
      const type = /^# TYPE (\S+) (\S+)/.exec(line);
      if (type) this.types.set(type[1], type[2]);
      if (line === '' || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
      assert.ok(m, `unparsable metrics line: ${line}`);
      const labels: Record<string, string> = {};
      for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
      this.samples.push({ name: m[1], labels, value: Number(m[3]) });
    }
  }

  /** Sum of the samples named `name` whose labels include `labels`. */
  value(name: string, labels: Record<string, string> = {}): number {
    return this.samples
      .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
      .reduce((a, s) => a + s.value, 0);
  }

  has(name: string, labels: Record<string, string> = {}): boolean {
    return this.samples.some((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }
}

export async function scrape(base: string): Promise<Prom> {
  const res = await fetch(`${base}/metrics`);
  assert.equal(res.status, 200);
  return new Prom(await res.text());
}

const ajv = new Ajv({ strict: false, allErrors: true });

/** Asserts that `body` satisfies `schema` (an admin-schemas.ts schema). */
export function validate(schema: object, body: unknown, what: string): void {
  const check = ajv.compile(schema);
  assert.ok(check(body), `${what} does not match its schema: ${ajv.errorsText(check.errors)}\n${JSON.stringify(body)}`);
}

/** The generated stubs as promises; uint64 fields come back as decimal strings. */
export function rpc(raw: RawClients) {
  const u = <Res>(invoke: (cb: grpc.requestCallback<Res>) => unknown) => call<Res>(invoke);
  return {
    open: (clientName: string) => u<{ session_id: string }>((cb) => raw.session.Open({ client_name: clientName, lease_ms: 0 }, cb)),
    close: (sessionId: string) => u((cb) => raw.session.Close({ session_id: sessionId }, cb)),
    create: (name: string) => u<{ ino: string | number }>((cb) => raw.files.Create({ name, exclusive: true }, cb)).then((f) => Number(f.ino)),
    truncate: (ino: number, size: number, layoutBreak: 'WAIT' | 'FAIL' | 'RECALL' = 'WAIT') =>
      u((cb) => raw.files.Truncate({ ino, size, layout_break: layoutBreak }, cb)),
    fallocate: (ino: number, offset: number, length: number) =>
      u((cb) => raw.files.Fallocate({ ino, mode: 'ALLOCATE', offset, length, layout_break: 'WAIT' }, cb)),
    write: (ino: number, offset: number, data: Buffer) => u((cb) => raw.files.Write({ ino, offset, data, sync: false }, cb)),
    read: (ino: number, offset: number, length: number) => u<{ data: Buffer }>((cb) => raw.files.Read({ ino, offset, length }, cb)),
    lookup: (name: string) => u((cb) => raw.files.Lookup({ name }, cb)),
    fault: (sessionId: string, ino: number, pgoff: number, kind: 'READ' | 'WRITE' | 'COW', sync = false) =>
      u<{ pte: { token: string } | null }>((cb) => raw.mapping.Fault({ session_id: sessionId, ino, pgoff, kind, sync }, cb)),
    store: (sessionId: string, token: string, offset: number, data: Buffer) =>
      u((cb) => raw.mapping.Store({ session_id: sessionId, token, offset, data }, cb)),
    load: (sessionId: string, token: string, offset: number, length: number) =>
      u<{ data: Buffer }>((cb) => raw.mapping.Load({ session_id: sessionId, token, offset, length }, cb)),
    pin: (sessionId: string, ino: number, firstPgoff: number, npages: number, writable: boolean) =>
      u<{ pin_id: string }>((cb) => raw.dma.Pin({ session_id: sessionId, ino, first_pgoff: firstPgoff, npages, writable }, cb)),
    unpin: (sessionId: string, pinId: string) => u((cb) => raw.dma.Unpin({ session_id: sessionId, pin_id: pinId }, cb)),
    dmaWrite: (sessionId: string, pinId: string, page: number, offset: number, data: Buffer) =>
      u((cb) => raw.dma.Write({ session_id: sessionId, pin_id: pinId, page, offset, data }, cb)),
    dmaRead: (sessionId: string, pinId: string, page: number, offset: number, length: number) =>
      u<{ data: Buffer }>((cb) => raw.dma.Read({ session_id: sessionId, pin_id: pinId, page, offset, length }, cb)),
  };
}

