/**
 * deploy/k8s/*.yaml: every object validated against the Kubernetes schemas (npm
 * kubernetes-models: the model class of its apiVersion/kind, then .validate()), every
 * field name checked to exist in those schemas (the validators accept unknown fields;
 * kubectl's strict field validation does not), the ServiceMonitor's required fields by
 * hand, and what the deployment must have: a StatefulSet with per-node claims, a headless
 * and a client Service, gRPC health probes, a locked-down securityContext, a PDB over its
 * pods, TLS and auth from Secrets, and an etcd.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { serveArgsFromEnv } from '../../cli/container';
import { DEPLOY_DIR, loadYaml } from './support';

const K8S_DIR = path.join(DEPLOY_DIR, 'k8s');
const MODELS_DIR = path.dirname(require.resolve('kubernetes-models/package.json', { paths: [__dirname] }));

type Obj = Record<string, unknown>;
interface Validatable { validate(): void }
type ModelClass = new (data: Obj) => Validatable;

// kubernetes-models is ESM only (no "require" export): a real dynamic import, which
// TypeScript's CommonJS output would otherwise turn into require().
const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<Record<string, unknown>>;

/** The model module of an apiVersion/kind: apps/v1 StatefulSet -> kubernetes-models/apps/v1/StatefulSet. */
async function modelOf(apiVersion: string, kind: string): Promise<ModelClass> {
  const module = await importEsm(`kubernetes-models/${apiVersion}/${kind}`);
  const model = module[kind];
  if (typeof model !== 'function') throw new Error(`kubernetes-models has no ${apiVersion} ${kind}`);
  return model as ModelClass;
}

/** Every property name any Kubernetes schema of kubernetes-models checks (data.NAME, data["NAME"]). */
function knownFieldNames(): Set<string> {
  const names = new Set<string>();
  const dir = path.join(MODELS_DIR, '_schemas');
  for (const file of fs.readdirSync(dir).filter((f) => f.startsWith('IoK8s') && f.endsWith('.js'))) {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    for (const m of text.matchAll(/\bdata\.([A-Za-z_$][\w$]*)|\bdata\["([^"]+)"\]/g)) names.add(m[1] ?? m[2]);
  }
  return names;
}

/** Maps whose keys are the user's (labels, resource names, a Service's selector). */
const FREE_MAPS = new Set(['labels', 'annotations', 'matchLabels', 'requests', 'limits', 'nodeSelector', 'data', 'stringData']);

/** Field names of `value` (walked) that no Kubernetes schema knows: "spec.template.spec.containers[0].readinesProbe". */
function unknownFields(value: unknown, known: Set<string>, where: string, kind: string): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => unknownFields(v, known, `${where}[${i}]`, kind));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value as Obj).flatMap(([key, child]) => {
    const at = where === '' ? key : `${where}.${key}`;
    const free = FREE_MAPS.has(key) || (kind === 'Service' && at === 'spec.selector');
    return [...(known.has(key) || FREE_MAPS.has(key) ? [] : [at]), ...(free ? [] : unknownFields(child, known, at, kind))];
  });
}

function manifests(): Array<{ file: string; doc: Obj }> {
  return fs.readdirSync(K8S_DIR).filter((f) => f.endsWith('.yaml')).sort()
    .flatMap((file) => loadYaml(path.join(K8S_DIR, file)).map((doc) => ({ file, doc: doc as Obj })));
}

const find = (docs: Obj[], kind: string, name: string): Obj => {
  const doc = docs.find((d) => d.kind === kind && (d.metadata as Obj).name === name);
  assert.ok(doc, `${kind} ${name} in deploy/k8s`);
  return doc;
};
const at = (value: unknown, ...keys: Array<string | number>): unknown => keys.reduce<unknown>((v, k) => (v as Record<string | number, unknown> | undefined)?.[k], value);
const subsetOf = (small: unknown, big: unknown): boolean => Object.entries(small as Obj).every(([k, v]) => (big as Obj)[k] === v);

describe('deploy: Kubernetes manifests (deploy/k8s)', function () {
  const all = manifests();
  const docs = all.map((m) => m.doc);
  const daxd = find(docs, 'StatefulSet', 'daxd');
  const pod = at(daxd, 'spec', 'template') as Obj;
  const container = (at(pod, 'spec', 'containers') as Obj[]).find((c) => c.name === 'daxd') as Obj;
  const env = Object.fromEntries((container.env as Obj[]).map((e) => [e.name as string, (e.value as string | undefined) ?? '<from a field>']));

  it('every object validates against the Kubernetes schemas of its apiVersion and kind', async function () {
    const kinds = new Set<string>();
    for (const { file, doc } of all) {
      if (doc.apiVersion === 'monitoring.coreos.com/v1') continue; // a CRD: checked below
      const Model = await modelOf(String(doc.apiVersion), String(doc.kind));
      assert.doesNotThrow(() => new Model(doc).validate(), `${file}: ${doc.kind} ${at(doc, 'metadata', 'name')}`);
      kinds.add(`${doc.apiVersion} ${doc.kind}`);
      assert.equal(at(doc, 'metadata', 'namespace') ?? (doc.kind === 'Namespace' ? undefined : 'none'), doc.kind === 'Namespace' ? undefined : 'daxd', `${file}: ${doc.kind} is namespaced in daxd`);
    }
    assert.deepEqual([...kinds].sort(), ['apps/v1 StatefulSet', 'networking.k8s.io/v1 NetworkPolicy', 'policy/v1 PodDisruptionBudget', 'v1 Namespace', 'v1 Service']);
  });

  it('the validation is not vacuous: a wrong type and a misspelt field are caught', async function () {
    const Model = await modelOf('apps/v1', 'StatefulSet');
    const broken = structuredClone(daxd);
    ((at(broken, 'spec', 'template', 'spec', 'containers', 0, 'ports') as Obj[])[0]).containerPort = 'seven';
    assert.throws(() => new Model(broken).validate(), /containerPort must be integer/);
    const misspelt = structuredClone(daxd);
    (at(misspelt, 'spec', 'template', 'spec', 'containers', 0) as Obj).readinesProbe = {};
    assert.deepEqual(unknownFields(misspelt, knownFieldNames(), '', 'StatefulSet'), ['spec.template.spec.containers[0].readinesProbe']);
  });

  it('names no field the Kubernetes schemas do not have', function () {
    const known = knownFieldNames();
    assert.ok(known.size > 500, `${known.size} field names read from kubernetes-models`);
    const unknown = all.filter(({ doc }) => doc.apiVersion !== 'monitoring.coreos.com/v1')
      .flatMap(({ file, doc }) => unknownFields(doc, known, '', String(doc.kind)).map((f) => `${file} ${doc.kind}: ${f}`));
    assert.deepEqual(unknown, []);
  });

  it('daxd: a StatefulSet with a claim per node for the volume, a headless Service and a client Service', function () {
    const templates = at(daxd, 'spec', 'volumeClaimTemplates') as Obj[];
    const claim = templates.find((t) => at(t, 'metadata', 'name') === 'data');
    assert.ok(claim, 'a volumeClaimTemplate "data"');
    assert.deepEqual(at(claim, 'spec', 'accessModes'), ['ReadWriteOnce']);
    const dataMount = (container.volumeMounts as Obj[]).find((m) => m.name === 'data');
    assert.ok(dataMount, 'the claim is mounted');
    assert.ok(env.DAXD_VOLUME.startsWith(`${dataMount.mountPath}/`), `DAXD_VOLUME ${env.DAXD_VOLUME} lies on the claim`);
    const podLabels = at(pod, 'metadata', 'labels');
    assert.ok(subsetOf(at(daxd, 'spec', 'selector', 'matchLabels'), podLabels));
    const headless = find(docs, 'Service', String(at(daxd, 'spec', 'serviceName')));
    assert.equal(at(headless, 'spec', 'clusterIP'), 'None');
    assert.equal(at(headless, 'spec', 'publishNotReadyAddresses'), true);
    const client = find(docs, 'Service', 'daxd');
    assert.notEqual(at(client, 'spec', 'clusterIP'), 'None');
    const containerPorts = new Map((container.ports as Obj[]).map((p) => [p.name, p.containerPort]));
    for (const service of [headless, client]) {
      assert.ok(subsetOf(at(service, 'spec', 'selector'), podLabels), `${at(service, 'metadata', 'name')} selects daxd's pods`);
      const names = (at(service, 'spec', 'ports') as Obj[]).map((p) => { assert.ok(containerPorts.has(p.targetPort), `targetPort ${p.targetPort}`); return p.name; });
      assert.deepEqual(names.sort(), ['grpc', 'http', 'nbd']);
    }
    assert.equal(containerPorts.get('grpc'), Number(env.DAXD_GRPC.split(':')[1]));
    assert.equal(containerPorts.get('http'), Number(env.DAXD_HTTP.split(':')[1]));
    // Each node advertises its stable name under the headless Service.
    assert.equal(env.DAXD_ADVERTISE, `$(DAXD_NODE_NAME).${at(headless, 'metadata', 'name')}.daxd.svc:${containerPorts.get('grpc')}`);
    assert.deepEqual(at(container.env as Obj[], 0), { name: 'DAXD_NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } });
  });

  it('daxd: every variable is one daxd-container knows', function () {
    assert.doesNotThrow(() => serveArgsFromEnv(env));
    const args = serveArgsFromEnv(env);
    for (const flag of ['--etcd', '--node-name', '--advertise', '--tls-cert', '--tls-key', '--auth', '--volume']) assert.ok(args.includes(flag), flag);
    assert.ok(!args.includes('--insecure-allow-remote'));
  });

  it('daxd: liveness, readiness and startup probes are gRPC health checks (Health/Check over TLS, run in the container)', function () {
    const dockerfile = fs.readFileSync(path.join(DEPLOY_DIR, 'Dockerfile'), 'utf8');
    const entry = /^ENTRYPOINT \["node", "([^"]+)"\]$/m.exec(dockerfile)?.[1];
    assert.equal(entry, '/app/bin/daxd-container.js');
    const expected: Record<string, string> = { startupProbe: 'grpc', livenessProbe: 'grpc', readinessProbe: 'grpc-ready' };
    for (const [name, kind] of Object.entries(expected)) {
      const probe = container[name] as Obj;
      assert.deepEqual(at(probe, 'exec', 'command'), ['node', entry, 'probe', kind], name);
      assert.ok(Number(probe.timeoutSeconds) >= 5, `${name}: its timeout covers the probe's own (3 s) and node's start`);
    }
  });

  it('daxd: requests and limits, non-root, read-only root, no capabilities, no privilege escalation', function () {
    for (const c of at(pod, 'spec', 'containers') as Obj[]) {
      for (const r of ['requests', 'limits']) for (const what of ['cpu', 'memory']) assert.ok(at(c, 'resources', r, what), `${c.name}: resources.${r}.${what}`);
      assert.equal(at(c, 'securityContext', 'runAsNonRoot'), true);
      assert.equal(at(c, 'securityContext', 'readOnlyRootFilesystem'), true);
      assert.equal(at(c, 'securityContext', 'allowPrivilegeEscalation'), false);
      assert.deepEqual(at(c, 'securityContext', 'capabilities', 'drop'), ['ALL']);
    }
    // The image's USER: the same numeric user, owning the volume's directory.
    const dockerfile = fs.readFileSync(path.join(DEPLOY_DIR, 'Dockerfile'), 'utf8');
    const user = /^USER (\d+):(\d+)$/m.exec(dockerfile);
    assert.ok(user, 'the Dockerfile has a numeric USER');
    assert.equal(at(pod, 'spec', 'securityContext', 'runAsUser'), Number(user[1]));
    assert.equal(at(pod, 'spec', 'securityContext', 'fsGroup'), Number(user[2]));
    assert.equal(at(pod, 'spec', 'securityContext', 'runAsNonRoot'), true);
    assert.equal(at(pod, 'spec', 'automountServiceAccountToken'), false);
  });

  it('daxd: a PodDisruptionBudget over exactly its pods', function () {
    const pdb = find(docs, 'PodDisruptionBudget', 'daxd');
    assert.deepEqual(at(pdb, 'spec', 'selector', 'matchLabels'), at(daxd, 'spec', 'selector', 'matchLabels'));
    assert.ok(subsetOf(at(pdb, 'spec', 'selector', 'matchLabels'), at(pod, 'metadata', 'labels')));
    assert.equal(at(pdb, 'spec', 'maxUnavailable'), 1);
    const etcd = find(docs, 'StatefulSet', 'etcd');
    assert.ok(!subsetOf(at(pdb, 'spec', 'selector', 'matchLabels'), at(etcd, 'spec', 'template', 'metadata', 'labels')), 'the PDB does not select etcd');
  });

  it('daxd: TLS and the --auth file come from Secrets mounted read-only', function () {
    const volumes = new Map((at(pod, 'spec', 'volumes') as Obj[]).map((v) => [v.name, v]));
    const mounts = container.volumeMounts as Obj[];
    const fileFrom = (variable: string, secretName: string, key: string) => {
      const mount = mounts.find((m) => at(volumes.get(m.name), 'secret', 'secretName') === secretName);
      assert.ok(mount, `Secret ${secretName} is mounted`);
      assert.equal(mount.readOnly, true);
      assert.equal(env[variable], `${mount.mountPath}/${key}`, `${variable} is the Secret's ${key}`);
    };
    fileFrom('DAXD_TLS_CERT', 'daxd-tls', 'tls.crt'); // the keys of a kubernetes.io/tls Secret
    fileFrom('DAXD_TLS_KEY', 'daxd-tls', 'tls.key');
    fileFrom('DAXD_AUTH', 'daxd-auth', 'auth.yaml');
  });

  it('etcd: a StatefulSet with its headless Service, and the Service daxd points at', function () {
    const etcd = find(docs, 'StatefulSet', 'etcd');
    const headless = find(docs, 'Service', String(at(etcd, 'spec', 'serviceName')));
    assert.equal(at(headless, 'spec', 'clusterIP'), 'None');
    assert.ok(subsetOf(at(headless, 'spec', 'selector'), at(etcd, 'spec', 'template', 'metadata', 'labels')));
    assert.ok((at(etcd, 'spec', 'volumeClaimTemplates') as Obj[]).length > 0);
    const url = /^http:\/\/([^.]+)\.daxd\.svc:(\d+)$/.exec(env.DAXD_ETCD);
    assert.ok(url, `DAXD_ETCD ${env.DAXD_ETCD}`);
    const service = find(docs, 'Service', url[1]);
    assert.ok(subsetOf(at(service, 'spec', 'selector'), at(etcd, 'spec', 'template', 'metadata', 'labels')));
    assert.ok((at(service, 'spec', 'ports') as Obj[]).some((p) => p.port === Number(url[2])));
  });

  it('the ServiceMonitor has its CRD\'s required fields and scrapes daxd\'s http port over https', function () {
    const monitor = docs.find((d) => d.kind === 'ServiceMonitor');
    assert.ok(monitor);
    assert.equal(monitor.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(typeof at(monitor, 'metadata', 'name'), 'string');
    const selector = at(monitor, 'spec', 'selector', 'matchLabels');
    assert.ok(selector, 'spec.selector (required)');
    const endpoints = at(monitor, 'spec', 'endpoints') as Obj[];
    assert.ok(Array.isArray(endpoints) && endpoints.length > 0, 'spec.endpoints');
    const selected = docs.filter((d) => d.kind === 'Service' && subsetOf(selector, at(d, 'metadata', 'labels')));
    assert.deepEqual(selected.map((s) => at(s, 'metadata', 'name')), ['daxd-headless'], 'one Service: each node scraped once');
    for (const endpoint of endpoints) {
      assert.ok((at(selected[0], 'spec', 'ports') as Obj[]).some((p) => p.name === endpoint.port), `port ${endpoint.port}`);
      assert.equal(endpoint.path, '/metrics');
      assert.equal(endpoint.scheme, 'https');
      assert.deepEqual(at(endpoint, 'tlsConfig', 'ca', 'secret'), { name: 'daxd-ca', key: 'ca.crt' });
      assert.equal(typeof at(endpoint, 'tlsConfig', 'serverName'), 'string');
    }
    assert.deepEqual(at(monitor, 'spec', 'namespaceSelector', 'matchNames'), ['daxd']);
  });
});
