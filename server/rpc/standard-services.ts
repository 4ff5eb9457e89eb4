/**
 * The standard gRPC services next to daxd's own: grpc.health.v1.Health (npm
 * grpc-health-check) and server reflection, v1 and v1alpha (npm @grpc/reflection).
 *
 * Health: one status for the server as a whole (service "") and one per service of
 * daxd.proto ("daxd.v1.Files", ...), all the same: SERVING while the server is ready to
 * take calls, NOT_SERVING otherwise (starting, draining, fenced, shutting down; Daxd
 * decides, server.ts). One more name, "liveness", for liveness probes: SERVING until
 * the server shuts down. Check of a name that is none of those is NOT_FOUND. Health is
 * open: it needs no token (probes carry none) and says nothing but the statuses. A Watch
 * of a name that is none of those is answered SERVICE_UNKNOWN (the spec's answer) and
 * kept open; the names never change while the server runs. Watches are bounded
 * (HEALTH_WATCHES_MAX) and end with ESHUTDOWN when the server stops (endWatches), after
 * the NOT_SERVING they were sent.
 *
 * Reflection: describes daxd.proto and health.proto (every service, method and message),
 * so generic tools (grpcurl, Postman, grpcui) list and call every RPC. It follows the
 * read role like the other reads (instrument.ts admits each call; with --auth, a token
 * with at least role ro: SECURITY.md says why). A stream whose client stops reading
 * its answers stops being read (backpressure), so it cannot grow the server's memory.
 *
 * Both services' requests are decoded by the guarded deserializer below: bytes that do
 * not decode are INVALID_ARGUMENT / EBADMSG (wire-guard.ts), never INTERNAL.
 */
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as HEALTH_PROTO_PATH, type ServingStatus } from 'grpc-health-check';
import type { Logger } from 'pino';
import { LimitError, ShutdownError } from '../errors';
import type { Metrics } from '../metrics';
import type { Authenticator } from '../auth/authenticator';
import { PROTO_LOADER_OPTIONS, PROTO_PATH } from '../../wire/proto';
import { instrument } from './instrument';
import { HEALTH_WATCHES_MAX } from './limits';
import { toServiceError } from './status';
import { MalformedRequest } from './strict-decode';

/** The health service's own full name. */
export const HEALTH_SERVICE = 'grpc.health.v1.Health';

/**
 * The health name for liveness probes: SERVING from the moment gRPC listens until the
 * server starts to shut down, whatever readiness says. A node that drains or is fenced
 * (etcd unreachable) is not ready but alive: restarting it would not help.
 */
export const LIVENESS_HEALTH_NAME = 'liveness';

/** The full names of daxd.proto's services ("daxd.v1.Files", ...), read from the loaded definition. */
export function daxdServiceNames(definition: protoLoader.PackageDefinition): string[] {
  return Object.entries(definition)
    .filter(([name, def]) => name.startsWith('daxd.') && !('format' in def) && !('fileDescriptorProtos' in def))
    .map(([name]) => name);
}

/** daxd.proto and health.proto, loaded for reflection (their descriptors). */
function reflectedDefinition(): protoLoader.PackageDefinition {
  const daxdRoot = path.resolve(path.dirname(PROTO_PATH), '..', '..');
  const healthRoot = path.resolve(path.dirname(HEALTH_PROTO_PATH), '..', '..');
  return protoLoader.loadSync([path.relative(daxdRoot, PROTO_PATH), path.relative(healthRoot, HEALTH_PROTO_PATH)], {
    ...PROTO_LOADER_OPTIONS, includeDirs: [daxdRoot, healthRoot],
  });
}

/** The same service, its requests decoded so that undecodable bytes become a MalformedRequest (wire-guard.ts answers it). */
function guarded(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, def] of Object.entries(service) as Array<[string, grpc.MethodDefinition<unknown, unknown>]>) {
    out[name] = {
      ...def,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return def.requestDeserialize(bytes);
        } catch (err) {
          return new MalformedRequest(def.path, `the request does not decode as ${def.path.slice(1, def.path.lastIndexOf('/'))}'s request (${err instanceof Error ? err.message.slice(0, 200) : 'malformed'})`);
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

type WatchCall = grpc.ServerWritableStream<{ service?: unknown }, { status: string }>;

interface Watch {
  /** The name watched, when it is one of healthNames (else it is told SERVICE_UNKNOWN once and nothing after). */
  name: string | null;
  /** Ends the call with ESHUTDOWN (the server stops). */
  end(): void;
  write(status: ServingStatus): void;
}

export class StandardServices {
  /** Check and List (grpc-health-check's); Watch is ours (watch() below). */
  private readonly health: HealthImplementation;
  /** "" and the full name of each daxd service: readiness. */
  readonly readinessNames: readonly string[];
  /** readinessNames and LIVENESS_HEALTH_NAME. */
  readonly healthNames: readonly string[];
  private status: ServingStatus = 'NOT_SERVING';
  private live: ServingStatus = 'SERVING';
  private readonly watches = new Set<Watch>();
  private readonly definition: protoLoader.PackageDefinition;

  constructor(private readonly log: Logger) {
    this.definition = reflectedDefinition();
    this.readinessNames = ['', ...daxdServiceNames(this.definition)];
    this.healthNames = [...this.readinessNames, LIVENESS_HEALTH_NAME];
    // Readiness NOT_SERVING until the server says it is ready (Daxd.start, at the end).
    this.health = new HealthImplementation(Object.fromEntries(this.healthNames.map((n) => [n, this.statusOf(n)])));
  }

  /** The status a health name answers now. */
  statusOf(name: string): ServingStatus {
    return name === LIVENESS_HEALTH_NAME ? this.live : this.status;
  }

  /**
   * Sets the readiness names' status (and liveness: NOT_SERVING only once shutting down),
   * tells the watches; logs a change with its reason.
   */
  setServing(serving: boolean, why: string, live = true): void {
    const status: ServingStatus = serving ? 'SERVING' : 'NOT_SERVING';
    const liveStatus: ServingStatus = live ? 'SERVING' : 'NOT_SERVING';
    if (status === this.status && liveStatus === this.live) return;
    if (status !== this.status) this.log.info({ status, why }, `grpc health: ${status}`);
    this.status = status;
    this.live = liveStatus;
    for (const name of this.healthNames) this.health.setStatus(name, this.statusOf(name));
    for (const watch of this.watches) if (watch.name !== null) watch.write(this.statusOf(watch.name));
  }

  /** Ends every Watch (ESHUTDOWN): the server is stopping, and they would never end on their own. */
  endWatches(): void {
    for (const watch of [...this.watches]) watch.end();
  }

  /** Adds Health (open) and reflection (admitted as a read, like daxd's reads) to the server. */
  addToServer(server: grpc.Server, metrics: Metrics, auth: Authenticator | null): void {
    this.health.addToServer({
      addService: (service: grpc.ServiceDefinition, handlers: grpc.UntypedServiceImplementation) => {
        server.addService(guarded(service), { ...handlers, watch: (call: WatchCall) => this.watch(call) });
      },
    } as unknown as Parameters<HealthImplementation['addToServer']>[0]);
    new ReflectionService(this.definition).addToServer({
      addService: (service: grpc.ServiceDefinition, handlers: grpc.UntypedServiceImplementation) => {
        server.addService(guarded(service), instrument(service, withBackpressure(handlers), metrics, this.log, auth));
      },
    });
  }

  /**
   * Health.Watch: the current status at once, then each change, until the client cancels
   * or the server stops. Bounded in number (HEALTH_WATCHES_MAX); a status is a few bytes
   * and changes rarely, so what one call buffers stays small.
   */
  private watch(call: WatchCall): void {
    if (this.watches.size >= HEALTH_WATCHES_MAX) {
      call.emit('error', toServiceError(new LimitError('HEALTH_WATCHES_MAX', this.watches.size + 1, HEALTH_WATCHES_MAX), this.log, 'Health.Watch'));
      return;
    }
    let ended = false;
    let last: ServingStatus | null = null;
    const asked = call.request.service;
    const watch: Watch = {
      name: typeof asked === 'string' && this.healthNames.includes(asked) ? asked : null,
      // Each change once (the names share setServing, so a call may see its status set again).
      write: (status) => {
        if (ended || status === last) return;
        last = status;
        call.write({ status });
      },
      end: () => {
        if (ended) return;
        ended = true;
        this.watches.delete(watch);
        call.emit('error', toServiceError(new ShutdownError(), this.log, 'Health.Watch'));
      },
    };
    this.watches.add(watch);
    call.on('cancelled', () => {
      ended = true;
      this.watches.delete(watch);
    });
    // SERVICE_UNKNOWN: the spec's answer for a name the server does not serve; it never will (the names are fixed).
    if (watch.name !== null) watch.write(this.statusOf(watch.name));
    else call.write({ status: 'SERVICE_UNKNOWN' });
  }
}

/** Each stream handler's call stops being read while its answers wait in the socket's buffer ('drain' resumes it). */
function withBackpressure(handlers: grpc.UntypedServiceImplementation): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(handlers)) {
    out[name] = ((call: grpc.ServerDuplexStream<unknown, unknown>) => {
      const write = call.write.bind(call) as (message: unknown) => boolean;
      call.write = ((message: unknown) => {
        const ok = write(message);
        if (!ok && !call.isPaused()) {
          call.pause();
          call.once('drain', () => call.resume());
        }
        return ok;
      }) as typeof call.write;
      (handler as (call: grpc.ServerDuplexStream<unknown, unknown>) => void)(call);
    }) as grpc.UntypedHandleCall;
  }
  return out;
}
