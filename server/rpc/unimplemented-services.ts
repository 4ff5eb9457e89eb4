/**
 * Mapping and Dma: declared in the proto and registered, so clients see every RPC of the
 * contract, but not built yet. Each RPC answers UNIMPLEMENTED with reason ENOTSUP: a
 * half-built capability stays behind a clear error.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { NotSupportedError } from '../errors';
import { unary } from './unary';

/** A handler answering ENOTSUP for every unary method of `definition`. */
export function unimplementedHandlers(serviceName: string, definition: grpc.ServiceDefinition, log: Logger): grpc.UntypedServiceImplementation {
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const [method, def] of Object.entries(definition)) {
    // Every Mapping and Dma RPC is unary; a streaming one would need its own stub.
    if (def.requestStream || def.responseStream) throw new Error(`${serviceName}.${method} is streaming: no stub for it`);
    handlers[method] = unary(log, `${serviceName}.${method}`, () => {
      throw new NotSupportedError(`${serviceName}.${method}`);
    });
  }
  return handlers;
}
