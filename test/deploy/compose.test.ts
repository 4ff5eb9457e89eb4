/**
 * deploy/compose.yaml (read with js-yaml, merge keys as compose resolves them): the
 * services of each profile, their ports, volumes, healthchecks, secrets and the files
 * they mount; and the daxd service's environment and secrets run for real: daxd-container
 * with that environment, the secrets deploy/make-secrets.sh makes, bound to 127.0.0.2
 * (which daxd counts as remote, as 0.0.0.0 in the container) serves TLS with --auth.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import { serveArgsFromEnv } from '../../cli/container';
import { DaxClient } from '../../client';
import { tempDir } from '../support/start-server';
import { envOfStage, readDockerfile } from './dockerfile';
import { CONTAINER_BIN, DEPLOY_DIR, cleanEnv, loadYaml, makeSecrets, run, startServing } from './support';

type Obj = Record<string, unknown>;
const at = (value: unknown, ...keys: Array<string | number>): unknown => keys.reduce<unknown>((v, k) => (v as Record<string | number, unknown> | undefined)?.[k], value);

const compose = loadYaml(path.join(DEPLOY_DIR, 'compose.yaml'))[0] as Obj;
const services = compose.services as Record<string, Obj>;
const dockerfile = fs.readFileSync(path.join(DEPLOY_DIR, 'Dockerfile'), 'utf8');
/** The runtime stage's ENV defaults (DAXD_GRPC=0.0.0.0:7070 ...). */
const imageEnv = envOfStage(readDockerfile(), 'runtime');
const envOf = (name: string) => ({ ...imageEnv, ...(services[name].environment as Record<string, string>) });
const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
/** "127.0.0.1:7171:7070" -> { host: '127.0.0.1', published: 7171, target: 7070 }. */
function ports(name: string): Array<{ host: string; published: number; target: number }> {
  return ((services[name].ports ?? []) as string[]).map((p) => {
    const m = /^([\d.]+):(\d+):(\d+)$/.exec(p);
    assert.ok(m, `${name}: port ${p} names the host address`);
    return { host: m[1], published: Number(m[2]), target: Number(m[3]) };
  });
}
const DAXD_NODES = ['daxd-1', 'daxd-2', 'daxd-3'];

describe('deploy: compose.yaml', function () {
  this.timeout(60_000);

  it('runs daxd, Prometheus and Grafana by default, and etcd with daxd-1..3 under the profile "cluster"', function () {
    const byProfile = (profile: string | undefined) => Object.keys(services).filter((s) => (at(services[s], 'profiles') as string[] | undefined)?.[0] === profile).sort();
    assert.deepEqual(byProfile(undefined), ['daxd', 'grafana', 'prometheus']);
    assert.deepEqual(byProfile('cluster'), ['daxd-1', 'daxd-2', 'daxd-3', 'etcd']);
    for (const s of Object.keys(services)) assert.ok(((at(services[s], 'profiles') as string[] | undefined) ?? []).length <= 1, s);
  });

  it('every daxd is the image of deploy/Dockerfile, with its data volume, healthcheck, and a stop grace above the server\'s', function () {
    const volumeDir = /^VOLUME \["([^"]+)"\]$/m.exec(dockerfile)?.[1];
    const healthcheck = /^HEALTHCHECK .* CMD (\[.*\])$/m.exec(dockerfile)?.[1];
    assert.ok(volumeDir && healthcheck);
    const names = new Set<string>();
    for (const name of ['daxd', ...DAXD_NODES]) {
      const s = services[name];
      assert.deepEqual(s.build, { context: '..', dockerfile: 'deploy/Dockerfile' }, name);
      assert.ok(fs.existsSync(path.join(DEPLOY_DIR, '..', 'deploy', 'Dockerfile')));
      const volumes = s.volumes as string[];
      const data = volumes.find((v) => v.endsWith(`:${volumeDir}`));
      assert.ok(data, `${name} mounts a volume at ${volumeDir}`);
      const volume = data.split(':')[0];
      assert.ok(volume in (compose.volumes as Obj), `${volume} is a named volume`);
      assert.ok(!names.has(volume), `${name} has a volume of its own`);
      names.add(volume);
      assert.deepEqual(at(s, 'healthcheck', 'test'), ['CMD', ...(JSON.parse(healthcheck) as string[])], `${name}: the image's HEALTHCHECK`);
      assert.match(String(s.stop_grace_period), /^(\d+)s$/);
      assert.ok(Number(String(s.stop_grace_period).slice(0, -1)) > 11, 'above SHUTDOWN_GRACE_MS + SHUTDOWN_FORCE_MS');
    }
  });

  it('daxd publishes gRPC, HTTP and NBD on the host\'s loopback, and serves TLS with --auth from compose secrets', function () {
    const env = envOf('daxd');
    assert.deepEqual(ports('daxd').map((p) => p.target).sort(), [portOf(env.DAXD_GRPC), portOf(env.DAXD_HTTP), portOf(env.DAXD_NBD)].sort());
    for (const name of ['daxd', 'prometheus', 'grafana', ...DAXD_NODES]) for (const p of ports(name)) assert.equal(p.host, '127.0.0.1', `${name} publishes on loopback`);
    const secrets = compose.secrets as Record<string, { file: string }>;
    for (const name of ['daxd', ...DAXD_NODES]) {
      const e = envOf(name);
      const args = serveArgsFromEnv(e);
      assert.ok(!args.includes('--insecure-allow-remote'), name);
      for (const variable of ['DAXD_TLS_CERT', 'DAXD_TLS_KEY', 'DAXD_AUTH']) {
        const secret = /^\/run\/secrets\/(.+)$/.exec(e[variable])?.[1];
        assert.ok(secret && (services[name].secrets as string[]).includes(secret), `${name}: ${variable} is a mounted secret`);
        assert.match(secrets[secret].file, /^\.\/secrets\/[\w.]+$/);
      }
    }
  });

  it('Prometheus scrapes every daxd over https with the CA it mounts; Grafana gets the provisioning and dashboards', function () {
    const prometheus = services.prometheus;
    const config = (prometheus.volumes as string[]).find((v) => v.endsWith(':/etc/prometheus/prometheus.yml:ro'));
    assert.equal(config, './prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro');
    const scrape = yaml.load(fs.readFileSync(path.join(DEPLOY_DIR, 'prometheus', 'prometheus.yml'), 'utf8')) as Obj;
    const jobs = scrape.scrape_configs as Obj[];
    const caTarget = (prometheus.secrets as Obj[]).find((s) => s.source === 'daxd-ca')?.target;
    const targets: string[] = [];
    for (const job of jobs) {
      assert.equal(job.scheme, 'https', String(job.job_name));
      assert.equal(at(job, 'tls_config', 'ca_file'), caTarget);
      targets.push(...(job.static_configs as Obj[]).flatMap((c) => c.targets as string[]));
    }
    assert.deepEqual(targets.sort(), ['daxd', ...DAXD_NODES].map((s) => `${s}:${portOf(envOf(s).DAXD_HTTP)}`).sort());
    const grafana = services.grafana.volumes as string[];
    assert.ok(grafana.includes('./grafana/provisioning:/etc/grafana/provisioning:ro'));
    const provider = yaml.load(fs.readFileSync(path.join(DEPLOY_DIR, 'grafana', 'provisioning', 'dashboards', 'daxd.yml'), 'utf8')) as Obj;
    assert.ok(grafana.includes(`./grafana/dashboards:${at(provider, 'providers', 0, 'options', 'path')}:ro`));
    const datasource = yaml.load(fs.readFileSync(path.join(DEPLOY_DIR, 'grafana', 'provisioning', 'datasources', 'prometheus.yml'), 'utf8')) as Obj;
    assert.equal(at(datasource, 'datasources', 0, 'url'), `http://prometheus:${ports('prometheus')[0].target}`);
    for (const v of [...grafana, ...(prometheus.volumes as string[])].filter((v) => v.startsWith('./'))) {
      assert.ok(fs.existsSync(path.join(DEPLOY_DIR, v.split(':')[0])), `${v}: the mounted file exists`);
    }
  });

  it('the cluster profile: three named nodes on the one etcd, each advertising its published port, started after etcd is healthy', function () {
    const etcd = services.etcd;
    const advertised = (etcd.command as string[]).find((a) => a.startsWith('--advertise-client-urls='))?.split('=')[1];
    assert.equal(advertised, 'http://etcd:2379');
    assert.ok(at(etcd, 'healthcheck', 'test'));
    const published = new Set<number>();
    for (const name of DAXD_NODES) {
      const env = envOf(name);
      assert.equal(env.DAXD_ETCD, advertised);
      assert.equal(env.DAXD_NODE_NAME, name);
      const grpcPort = ports(name).find((p) => p.target === portOf(env.DAXD_GRPC));
      assert.ok(grpcPort, `${name} publishes gRPC`);
      assert.equal(env.DAXD_ADVERTISE, `127.0.0.1:${grpcPort.published}`);
      for (const p of ports(name)) {
        assert.ok(!published.has(p.published), `${name}: host port ${p.published} is its own`);
        published.add(p.published);
      }
      assert.deepEqual(at(services[name], 'depends_on', 'etcd'), { condition: 'service_healthy' });
    }
  });

  it('with deploy/make-secrets.sh\'s files, the daxd service\'s environment starts daxd on a remote address, TLS and tokens required', async function () {
    const tmp = tempDir('daxd-compose-');
    try {
      const secrets = await makeSecrets(path.join(tmp.dir, 'secrets'));
      const files = compose.secrets as Record<string, { file: string }>;
      for (const [name, { file }] of Object.entries(files)) assert.ok(fs.existsSync(path.join(secrets.dir, path.basename(file))), `make-secrets.sh writes ${file} (${name})`);
      // The service's environment, its /run/secrets/NAME files at their place here, and
      // the listeners on 127.0.0.2 (remote for daxd's policy, as 0.0.0.0 is) port 0.
      const env: Record<string, string> = {};
      for (const [key, value] of Object.entries(envOf('daxd'))) {
        const secret = /^\/run\/secrets\/(.+)$/.exec(value)?.[1];
        env[key] = secret === undefined ? value : path.join(secrets.dir, path.basename(files[secret].file));
      }
      Object.assign(env, { DAXD_VOLUME: path.join(tmp.dir, 'daxd.vol'), DAXD_SIZE: '64M', DAXD_GRPC: '127.0.0.2:0', DAXD_HTTP: '127.0.0.2:0', DAXD_NBD: '127.0.0.2:0' });
      const server = await startServing(CONTAINER_BIN, [], { cwd: tmp.dir, env: cleanEnv(env) });
      try {
        const probe = await run(process.execPath, [CONTAINER_BIN, 'probe', 'http'], { env: cleanEnv({ ...env, DAXD_HTTP: server.http }) });
        assert.equal(probe.code, 0, probe.stderr);
        assert.equal(probe.stderr, '', 'nothing on stderr (no SNI warning for an IP address)');
        const grpcProbe = await run(process.execPath, [CONTAINER_BIN, 'probe', 'grpc'], { env: cleanEnv({ ...env, DAXD_GRPC: server.grpc }) });
        assert.equal(grpcProbe.code, 0, grpcProbe.stderr);
        assert.equal(grpcProbe.stderr, '');
        const ca = fs.readFileSync(path.join(secrets.dir, 'ca.crt'));
        const health = await fetch(`http://${server.http}/healthz`).then(() => 'answered', (err: Error) => err.message);
        assert.equal(health, 'fetch failed', 'plaintext HTTP is not served');
        const anonymous = DaxClient.connect(server.grpc, { tls: { ca, servername: 'daxd' }, deadlineMs: 10_000 });
        const admin = DaxClient.connect(server.grpc, { tls: { ca, servername: 'daxd' }, token: secrets.token, deadlineMs: 10_000 });
        try {
          await assert.rejects(anonymous.statVolume(), /EAUTH|UNAUTHENTICATED/);
          const volume = await admin.statVolume();
          assert.equal(Number(volume.size), 64 * 1024 * 1024, 'the volume DAXD_SIZE made');
        } finally {
          anonymous.close();
          admin.close();
        }
      } finally {
        assert.equal((await server.stop()).code, 0, server.stderr());
      }
      // 127.0.0.2 is remote for daxd: without the --auth file the same start is refused.
      const withoutAuth = Object.fromEntries(Object.entries(env).filter(([key]) => key !== 'DAXD_AUTH'));
      const refused = await run(process.execPath, [CONTAINER_BIN], { env: cleanEnv(withoutAuth), cwd: tmp.dir });
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, /--auth/);
    } finally {
      tmp.remove();
    }
  });
});
