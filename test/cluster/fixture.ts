/**
 * Fixtures of the cluster tests: an etcd (test/support/etcd.ts) and daxd nodes joined to
 * it, in this process (Daxd.start: tests reach the membership, e.g. its keep-alive
 * failpoint) or as child processes (`daxd serve --etcd ...`: kill -9 is a real crash).
 * Short leases keep the suite fast: TEST_TTL_S.
 */
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import pino from 'pino';
import { Daxd } from '../../server/server';
import { assertEtcdInstalled, startEtcd, type StartedEtcd } from '../support/etcd';
import { startServer, tempDir, type StartedServer } from '../support/start-server';
import { MiB } from '../support/units';

/** The node lease of the tests, seconds (fencing after 2 s, expiry after 3 s). */
export const TEST_TTL_S = 3;

export interface InProcessNode {
  name: string;
  daxd: Daxd;
  address: string;
  volumePath: string;
  /** Graceful stop (leaves the cluster); the volume file is kept until removeDir(). Idempotent. */
  stop(): Promise<void>;
  removeDir(): void;
}

export async function startNode(etcdUrl: string, name: string, options: { volumePath?: string; ttlS?: number; prefix?: string; nbd?: boolean; failpoints?: boolean } = {}): Promise<InProcessNode> {
  const tmp = tempDir(`daxd-cluster-${name}-`);
  const volumePath = options.volumePath ?? path.join(tmp.dir, `${name}.vol`);
  let daxd: Daxd;
  try {
    daxd = await Daxd.start({
      volumePath, sizeBytes: 64 * MiB, grpcAddress: '127.0.0.1:0', log: pino({ level: 'silent' }), shutdownGraceMs: 2_000,
      nbdAddress: options.nbd === true ? '127.0.0.1:0' : undefined, failpoints: options.failpoints,
      cluster: { etcdUrls: [etcdUrl], nodeName: name, prefix: options.prefix ?? '/daxd', ttlS: options.ttlS ?? TEST_TTL_S },
    });
  } catch (err) {
    tmp.remove();
    throw err;
  }
  let stopped: Promise<void> | null = null;
  return {
    name, daxd, address: daxd.grpcAddress, volumePath,
    stop: () => (stopped ??= daxd.stop()),
    removeDir: () => tmp.remove(),
  };
}

/** `daxd serve --etcd URL --node-name NAME` as a child process, over `volumePath`. */
export function startNodeProcess(etcdUrl: string, name: string, volumePath: string, ttlS = TEST_TTL_S, size?: string, env?: Record<string, string>): Promise<StartedServer> {
  return startServer({ volumePath, size, env, extraArgs: ['--etcd', etcdUrl, '--node-name', name, '--node-ttl-s', String(ttlS), '--log-level', 'info'] });
}

/** What oneNodeCluster's hooks set up: filled in by its before(), stopped by its after(). */
export interface OneNode {
  etcd: StartedEtcd;
  /** The only node, 'a': every name is placed on it. */
  a: InProcessNode;
  /** A client of the same etcd, for the tests' own reads and changes of the keys. */
  kv: Etcd3;
}

/** Registers mocha before/after hooks of a one-node cluster: a fresh etcd, node 'a' (`options`), an etcd client. */
export function oneNodeCluster(options: Parameters<typeof startNode>[2] = {}): OneNode {
  const one = {} as OneNode;
  before(async () => {
    assertEtcdInstalled();
    one.etcd = await startEtcd();
    one.a = await startNode(one.etcd.url, 'a', options);
    one.kv = new Etcd3({ hosts: one.etcd.url });
  });
  after(async () => {
    one.kv?.close();
    if (one.a) { await one.a.stop(); one.a.removeDir(); }
    await one.etcd?.stop();
  });
  return one;
}
