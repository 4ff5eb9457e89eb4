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
import { Etcd3, GRPCDeadlineExceededError, GRPCOutOfRangeError, GRPCResourceExhastedError, GRPCUnavailableError, type IKeyValue } from 'etcd3';
import { DaxError, EtcdUnavailableError } from '../errors';
import { ETCD_CALL_MS, ETCD_RANGE_PAGE_KEYS } from './limits';

/** readPrefix starts over at most this many times when the revision it pinned is compacted away. */
const READ_PREFIX_ATTEMPTS_MAX = 3;

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

/** Every key under a prefix as of one revision. */
export interface PrefixSnapshot {
  /** In key order. */
  kvs: IKeyValue[];
  revision: string;
}

/**
 * Every key under `prefix`, read in pages of `pageKeys` (each page: the keys after the
 * last one of the page before), all at the revision of the first page, so the result is
 * one consistent snapshot however large (one unpaged read fails past grpc-js's 4 MiB
 * reply limit). A page refused as too large is read again with half the keys; a pinned
 * revision compacted meanwhile starts the read over (READ_PREFIX_ATTEMPTS_MAX). Bounded:
 * every page either advances past at least one key or halves the page size.
 */
export async function readPrefix(etcd: Etcd3, prefix: string, pageKeys = ETCD_RANGE_PAGE_KEYS): Promise<PrefixSnapshot> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await readPages(etcd, Buffer.from(prefix, 'utf8'), pageKeys);
    } catch (err) {
      if (!(err instanceof GRPCOutOfRangeError && /compacted/.test(err.message)) || attempt >= READ_PREFIX_ATTEMPTS_MAX) throw err;
    }
  }
}

async function readPages(etcd: Etcd3, prefix: Buffer, pageKeys: number): Promise<PrefixSnapshot> {
  const end = prefixEnd(prefix);
  const kvs: IKeyValue[] = [];
  let from = prefix;
  let revision: string | undefined;
  let limit = Math.max(1, pageKeys);
  for (;;) {
    let page;
    try {
      page = await etcd.kv.range({ key: from, range_end: end, limit, revision });
    } catch (err) {
      if (err instanceof GRPCResourceExhastedError && limit > 1) {
        limit = Math.ceil(limit / 2);
        continue;
      }
      throw err;
    }
    revision ??= page.header.revision;
    for (const kv of page.kvs) kvs.push(kv);
    if (!page.more || page.kvs.length === 0) return { kvs, revision };
    from = Buffer.concat([page.kvs[page.kvs.length - 1]!.key, Buffer.from([0])]);
  }
}

/** The range end that covers every key starting with `prefix` (its last byte below 0xff incremented). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // every key
}

/** Is `err` etcd not answering (down, unreachable, too slow), as opposed to answering with a failure? */
export function isEtcdUnreachable(err: unknown): boolean {
  return err instanceof GRPCUnavailableError || err instanceof GRPCDeadlineExceededError;
}
