/**
 * The principal of each gRPC call: authenticated once, when the call arrives
 * (server/rpc/instrument.ts), then looked up by the handlers. With auth off every call
 * acts for OPEN_ACCESS.
 */
import assert from 'node:assert';
import type * as grpc from '@grpc/grpc-js';
import { PermissionDeniedError } from '../errors';
import type { Authenticator } from './authenticator';
import { actionOf } from './method-actions';
import { OPEN_ACCESS, type Principal } from './principal';

/** The metadata key of bearer tokens (`authorization: Bearer TOKEN`). */
export const AUTHORIZATION_METADATA_KEY = 'authorization';

const principals = new WeakMap<object, Principal>();

type IncomingCall = Pick<grpc.ServerUnaryCall<unknown, unknown>, 'metadata' | 'getPeer'> & { getAuthContext?: grpc.ServerUnaryCall<unknown, unknown>['getAuthContext'] };

/**
 * Authenticates the call and checks that its principal's role allows `method` for this
 * request (undefined for streams); throws EAUTH, AUTH_RATE_LIMITED or EACCES.
 */
export function admitCall(call: IncomingCall, method: string, request: unknown, auth: Authenticator | null): Principal {
  let principal = OPEN_ACCESS;
  if (auth !== null) {
    const header = call.metadata.get(AUTHORIZATION_METADATA_KEY)[0];
    principal = auth.authenticate({
      authorization: typeof header === 'string' ? header : undefined,
      certificate: call.getAuthContext?.()?.sslPeerCertificate ?? null,
      peer: call.getPeer(),
    });
  }
  principals.set(call, principal);
  const action = actionOf(method, request);
  if (!principal.can(action)) throw new PermissionDeniedError(`${principal.name} (role ${principal.role}) may not call ${method}${action === 'write' ? ' to change data' : ''}`);
  return principal;
}

/** The principal admitCall() gave this call. */
export function principalOf(call: object): Principal {
  const p = principals.get(call);
  assert(p !== undefined, 'bug: a call reached a handler without admitCall()');
  return p;
}
