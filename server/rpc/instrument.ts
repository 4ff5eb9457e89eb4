/**
 * Every call of the four services passes here first (rpc-server.ts wraps the handlers of
 * each service): it gets a request id (the client's `daxd-request-id` metadata when it
 * sends a sane one, else a new one), unary calls are timed into daxd_rpc_duration_seconds
 * by method and status code and their data bytes counted (io-accounting.ts), and each
 * call is logged with its id: at debug, or at warn when it took SLOW_RPC_MS or more. A
 * failed call returns its request id in the trailer `daxd-request-id`, so a client error
 * report leads to the server's log lines.
 *
 * Here too every call is admitted (server/auth/call-principal.ts): authenticated (with
 * --auth) and checked against its role, before its handler runs. A refused call is
 * answered here and counted like any other failure.
 */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { statusName, type Metrics } from '../metrics';
import { DaxError } from '../errors';
import { IO_ACCOUNTING } from './io-accounting';
import { toServiceError } from './status';
import { idLength } from './validate';
import { REQUEST_ID_METADATA_KEY } from '../../wire/metadata';
import type { Authenticator } from '../auth/authenticator';
import { admitCall } from '../auth/call-principal';
import { ruleOf } from '../auth/method-actions';

/** A unary call this slow (or slower) is logged at warn. */
export const SLOW_RPC_MS = 1000;

const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]+$/;
const ID_PREFIX = randomBytes(4).toString('hex');
let lastId = 0;
const requestIds = new WeakMap<object, string>();

/** A fresh server-side request id. */
export function newRequestId(): string {
  return `${ID_PREFIX}-${(++lastId).toString(36)}`;
}

/** "/daxd.v1.Files/Read" -> "Files.Read": a bounded metric label (one value per RPC). */
export function methodLabel(path: string): string {
  return path.slice(path.lastIndexOf('.') + 1).replace('/', '.');
}

/** The request id instrument() gave this call (undefined for a call that bypassed it). */
export function requestIdOf(call: object): string | undefined {
  return requestIds.get(call);
}

/**
 * The call's request id: the client's when it sends a sane one, else a new one. A client
 * id longer than ID_BYTES_MAX is refused (EINVAL) rather than replaced: ids are bounded
 * everywhere (issue 10, defect 4). Returns the id and that refusal, if any.
 */
function assignRequestId(call: { metadata: grpc.Metadata }): { id: string; refusal: DaxError | null } {
  const given = call.metadata.get(REQUEST_ID_METADATA_KEY)[0];
  let refusal: DaxError | null = null;
  let id: string | null = null;
  if (typeof given === 'string') {
    try {
      if (CLIENT_REQUEST_ID.test(idLength(given, REQUEST_ID_METADATA_KEY))) id = given;
    } catch (err) {
      if (!(err instanceof DaxError)) throw err;
      refusal = err;
    }
  }
  id ??= newRequestId();
  requestIds.set(call, id);
  return { id, refusal };
}

type AnyHandler = (call: never, callback?: never) => void;

/**
 * Admits the call (authentication, role); the refusal, if any. Runs after the request id
 * is assigned, so a refused call's trailer carries it too.
 */
function admission(call: Parameters<typeof admitCall>[0], method: string, request: unknown, auth: Authenticator | null, log: Logger): DaxError | null {
  try {
    admitCall(call, method, request, auth);
    return null;
  } catch (err) {
    if (!(err instanceof DaxError)) throw err;
    // Who failed, never with what: credentials are not logged. A limited address is at
    // debug, so a guessing peer cannot flood the log (its first failures are at info).
    const level = err.code === 'AUTH_RATE_LIMITED' ? 'debug' : 'info';
    log[level]({ peer: call.getPeer(), method, reason: err.code }, 'call refused');
    return err;
  }
}

/** The same handlers, instrumented; `service` is the generated service definition. `auth` null = auth off. */
export function instrument<H extends object>(service: grpc.ServiceDefinition, handlers: H, metrics: Metrics, log: Logger, auth: Authenticator | null = null): H {
  const out: Record<string, unknown> = {};
  for (const [name, handler] of Object.entries(handlers) as Array<[string, AnyHandler]>) {
    const def = service[name];
    if (!def) throw new Error(`bug: handler ${name} is not a method of the service`);
    const method = methodLabel(def.path);
    if (ruleOf(method) === undefined) throw new Error(`bug: ${method} has no entry in METHOD_ACTIONS (server/auth/method-actions.ts)`);
    out[name] = def.requestStream || def.responseStream
      ? streamCall(method, handler as unknown as (call: grpc.ServerReadableStream<unknown, unknown>) => void, log, auth)
      : unaryCall(method, handler as unknown as grpc.handleUnaryCall<unknown, unknown>, metrics, log, auth);
  }
  return out as H;
}

function unaryCall(method: string, handler: grpc.handleUnaryCall<unknown, unknown>, metrics: Metrics, log: Logger, auth: Authenticator | null): grpc.handleUnaryCall<unknown, unknown> {
  const account = IO_ACCOUNTING[method];
  return (call, callback) => {
    const startMs = performance.now();
    const { id: reqId, refusal: badId } = assignRequestId(call);
    const refusal = badId ?? admission(call, method, call.request, auth, log);
    const run: grpc.handleUnaryCall<unknown, unknown> = refusal === null ? handler : (_call, callback) => callback(toServiceError(refusal, log, method));
    run(call, (err, value, trailer, flags) => {
      const durationMs = performance.now() - startMs;
      const code = statusName(err ? (err.code ?? grpc.status.UNKNOWN) : grpc.status.OK);
      metrics.rpcFinished(method, code, durationMs / 1000);
      if (err) {
        if (!(err.metadata instanceof grpc.Metadata)) err.metadata = new grpc.Metadata();
        err.metadata.set(REQUEST_ID_METADATA_KEY, reqId);
      } else if (account) {
        account(call.request, value, metrics);
      }
      if (durationMs >= SLOW_RPC_MS) {
        log.warn({ reqId, method, code, durationMs: Math.round(durationMs) }, 'slow rpc');
      } else if (log.isLevelEnabled('debug')) {
        log.debug({ reqId, method, code, durationMs: Math.round(durationMs * 1000) / 1000 }, 'rpc');
      }
      callback(err, value, trailer, flags);
    });
  };
}

function streamCall(method: string, handler: (call: grpc.ServerReadableStream<unknown, unknown>) => void, log: Logger, auth: Authenticator | null) {
  return (call: grpc.ServerReadableStream<unknown, unknown>): void => {
    const { id: reqId, refusal: badId } = assignRequestId(call);
    // A server stream (Events) has its request already; a client stream's rule is a constant.
    const refusal = badId ?? admission(call, method, (call as { request?: unknown }).request, auth, log);
    if (log.isLevelEnabled('debug')) log.debug({ reqId, method }, 'rpc stream opened');
    if (refusal !== null) {
      const err = toServiceError(refusal, log, method);
      err.metadata?.set(REQUEST_ID_METADATA_KEY, reqId);
      call.emit('error', err);
      return;
    }
    handler(call);
  };
}
