/**
 * Pure parts of the cluster (server/cluster): weighted rendezvous hashing, the flag
 * parser, and the record parsers that keep foreign etcd values out of the cache.
 */
import assert from 'node:assert/strict';
import { clusterConfigFromFlags, ClusterConfigError } from '../../server/cluster/config';
import { parseNodeRecord, parsePlacementRecord } from '../../server/cluster/keys';
import { rendezvous } from '../../server/cluster/rendezvous';

const names = (n: number) => [...Array(n).keys()].map((i) => `file-${i}`);

describe('cluster: rendezvous placement', function () {
  it('spreads names in proportion to the weights', () => {
    const counts = new Map<string, number>();
    for (const name of names(6000)) {
      const node = rendezvous([{ name: 'a', weight: 1 }, { name: 'b', weight: 2 }, { name: 'c', weight: 3 }], name)!;
      counts.set(node, (counts.get(node) ?? 0) + 1);
    }
    for (const [node, share] of [['a', 1 / 6], ['b', 2 / 6], ['c', 3 / 6]] as const) {
      const got = counts.get(node)! / 6000;
      assert.ok(Math.abs(got - share) < 0.03, `${node}: ${got} vs ${share}`);
    }
  });

  it('removing a node moves only the names it held; the same inputs give the same answer everywhere', () => {
    const three = [{ name: 'a', weight: 5 }, { name: 'b', weight: 5 }, { name: 'c', weight: 5 }];
    const two = three.filter((n) => n.name !== 'b');
    for (const name of names(2000)) {
      const before = rendezvous(three, name);
      const after = rendezvous(two, name);
      if (before !== 'b') assert.equal(after, before, name);
      assert.equal(rendezvous([...three].reverse(), name), before, 'order of the members does not matter');
    }
  });

  it('never picks a node of weight 0 while another has space; none without candidates', () => {
    for (const name of names(200)) assert.equal(rendezvous([{ name: 'full', weight: 0 }, { name: 'x', weight: 1 }], name), 'x');
    assert.equal(rendezvous([], 'x'), null);
    assert.ok(['p', 'q'].includes(rendezvous([{ name: 'p', weight: 0 }, { name: 'q', weight: 0 }], 'x')!));
  });
});

describe('cluster: flags and records', function () {
  it('parses good flags and names the flag of a bad one', () => {
    assert.deepEqual(clusterConfigFromFlags({ etcd: 'http://127.0.0.1:2379,https://e2:2379/', nodeName: 'n-1.a_b' }), {
      etcdUrls: ['http://127.0.0.1:2379', 'https://e2:2379'], nodeName: 'n-1.a_b', prefix: '/daxd', ttlS: 10, advertise: undefined,
    });
    const bad: Array<[Parameters<typeof clusterConfigFromFlags>[0], string]> = [
      [{ etcd: 'http://h:1/path', nodeName: 'a' }, '--etcd'],
      [{ etcd: 'http://h', nodeName: 'a' }, '--etcd'],
      [{ etcd: 'http://u:p@h:1', nodeName: 'a' }, '--etcd'],
      [{ etcd: Array(17).fill('http://h:1').join(','), nodeName: 'a' }, '--etcd'],
      [{ etcd: 'http://h:1', nodeName: 'x'.repeat(64) }, '--node-name'],
      [{ etcd: 'http://h:1', nodeName: 'a/b' }, '--node-name'],
      [{ etcd: 'http://h:1', nodeName: 'a', prefix: 'daxd' }, '--etcd-prefix'],
      [{ etcd: 'http://h:1', nodeName: 'a', prefix: '/daxd/' }, '--etcd-prefix'],
      [{ etcd: 'http://h:1', nodeName: 'a', ttlS: '301' }, '--node-ttl-s'],
      [{ etcd: 'http://h:1', nodeName: 'a', ttlS: '2.5' }, '--node-ttl-s'],
      [{ etcd: 'http://h:1', nodeName: 'a', advertise: 'h:0' }, '--advertise'],
      [{ etcd: 'http://h:1', nodeName: 'a', advertise: 'h' }, '--advertise'],
    ];
    for (const [flags, flag] of bad) {
      assert.throws(() => clusterConfigFromFlags(flags), (err: ClusterConfigError) => err instanceof ClusterConfigError && err.flag === flag, JSON.stringify(flags).slice(0, 80));
    }
  });

  it('takes only records daxd writes from etcd', () => {
    const node = { name: 'a', grpc: 'h:1', nbd: '', http: '', volumeUuid: 'u', capacity: 1, free: 1, version: 'v', startedAtMs: 1 };
    assert.deepEqual(parseNodeRecord(JSON.stringify(node)), node);
    for (const bad of ['', 'null', '[]', '{"name":"a"}', JSON.stringify({ ...node, free: -1 }), JSON.stringify({ ...node, capacity: 1.5 }), 'x'.repeat(5000)]) {
      assert.equal(parseNodeRecord(bad), null, bad.slice(0, 40));
    }
    assert.deepEqual(parsePlacementRecord('{"node":"a","ino":3}'), { node: 'a', ino: 3 });
    for (const bad of ['{"node":"a"}', '{"node":1,"ino":3}', '{"node":"a","ino":"3"}', '{']) assert.equal(parsePlacementRecord(bad), null, bad);
  });
});
