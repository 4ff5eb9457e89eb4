/**
 * The gRPC health status of a cluster node follows its fencing (server/rpc/standard-services.ts,
 * Cluster.onReadinessChange): a raw grpc.health.v1 Watch sees NOT_SERVING when the node fences
 * itself (the keep-alive failpoint: no renewal for ⅔ TTL) and SERVING once it has renewed
 * again; Check answers the same for every service of daxd.proto meanwhile, while the
 * "liveness" name stays SERVING (a fenced node must not be restarted by its liveness probe).
 */
import assert from 'node:assert/strict';
import { LIVENESS_HEALTH_NAME } from '../../server/rpc/standard-services';
import { assertEtcdInstalled, startEtcd, type StartedEtcd } from '../support/etcd';
import { healthCheck, healthClient, protoServiceNames, type HealthClient, type HealthStatus } from '../support/standard-clients';
import { until } from '../support/until';
import { startNode, TEST_TTL_S, type InProcessNode } from './fixture';

const TTL_MS = TEST_TTL_S * 1000;

describe('cluster: gRPC health follows fencing', function () {
  this.timeout(60_000);
  let etcd: StartedEtcd;
  let a: InProcessNode;
  let health: HealthClient;

  before(async () => {
    assertEtcdInstalled();
    etcd = await startEtcd();
    a = await startNode(etcd.url, 'a');
    health = healthClient(a.address);
  });

  after(async () => {
    health?.close();
    if (a) {
      await a.stop();
      a.removeDir();
    }
    await etcd?.stop();
  });

  it('keep-alives dropped (failpoint): Watch sees NOT_SERVING when the node fences, SERVING after it renews; Check agrees per service, liveness stays SERVING', async () => {
    const statuses: HealthStatus[] = [];
    const stream = health.watch({ service: '' });
    stream.on('data', (m: { status: HealthStatus }) => statuses.push(m.status));
    stream.on('error', () => undefined); // cancelled below
    try {
      await until(() => statuses.includes('SERVING'), 'SERVING once joined', TTL_MS);
      a.daxd.cluster!.dropKeepAlives(true);
      try {
        await until(() => statuses.includes('NOT_SERVING'), 'NOT_SERVING once fenced', 2 * TTL_MS);
        assert.ok(a.daxd.cluster!.fenced, 'the node is fenced');
        assert.equal(a.daxd.notServingReason(), 'fenced');
        for (const name of ['', ...protoServiceNames()]) assert.equal(await healthCheck(health, name), 'NOT_SERVING', `Check(${JSON.stringify(name)}) while fenced`);
        assert.equal(await healthCheck(health, LIVENESS_HEALTH_NAME), 'SERVING', 'a fenced node is alive: no restart');
      } finally {
        a.daxd.cluster!.dropKeepAlives(false);
      }
      await until(() => statuses.at(-1) === 'SERVING', 'SERVING again after a renewal', 4 * TTL_MS);
      assert.equal(a.daxd.cluster!.fenced, false);
      assert.deepEqual(statuses, ['SERVING', 'NOT_SERVING', 'SERVING']);
    } finally {
      stream.cancel();
    }
  });
});
