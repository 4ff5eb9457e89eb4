/**
 * The etcd client of a cluster node (npm etcd3, over the same @grpc/grpc-js as daxd).
 *
 * etcd3's calls are ordinary grpc-js client calls with protobufjs (de)serializers: the two
 * hooks of wire/frame-in-place.ts pass them through untouched (they frame in place only
 * the messages daxd's own bulk encoders built; test/cluster/membership.test.ts runs etcd3
 * calls after the hooks are installed).
 *
 * Fault handling is ours, not etcd3's: no retries and no circuit breaker (which would
 * keep a resumed etcd unused for seconds): every unary call has a deadline of
 * ETCD_CALL_MS, the keep-alive loop (membership.ts) retries on its own schedule, and a
 * lost watch is replaced by the watch cache itself (watch-cache.ts: a fresh snapshot and a
 * new watcher, never etcd3's resume; WATCH_RECONNECT_MS only paces etcd3's own stream).
 */
import { ConstantBackoff, noop } from 'cockatiel';
import { Etcd3 } from 'etcd3';
import { DaxError, EtcdUnavailableError } from '../errors';
import { ETCD_CALL_MS } from './limits';

const WATCH_RECONNECT_MS = 250;

export function etcdClient(urls: readonly string[]): Etcd3 {
  return new Etcd3({
    hosts: [...urls],
    dialTimeout: ETCD_CALL_MS,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + ETCD_CALL_MS }),
    faultHandling: { host: () => noop, global: noop, watchBackoff: watchBackoff() },
  });
}

/**
 * etcd3 1.1.2 types watchBackoff as a backoff but calls it as a factory (`.next()` first,
 * as with its own default, cockatiel's ExponentialBackoff): a ConstantBackoff is one.
 */
function watchBackoff(): NonNullable<NonNullable<ConstructorParameters<typeof Etcd3>[0]>['faultHandling']>['watchBackoff'] {
  return new ConstantBackoff(WATCH_RECONNECT_MS) as unknown as ReturnType<typeof watchBackoff>;
}

/**
 * An etcd call made for a client's call: its failure (etcd3's errors are not DaxErrors,
 * so they would reach the client as INTERNAL) becomes UNAVAILABLE / ETCD_UNAVAILABLE
 * naming `operation`. DaxErrors pass through.
 */
export async function etcdCall<T>(operation: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof DaxError) throw err;
    throw new EtcdUnavailableError(operation, err);
  }
}
