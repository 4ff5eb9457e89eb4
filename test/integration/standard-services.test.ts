/**
 * The standard gRPC services (server/rpc/standard-services.ts) called with raw grpc-js
 * clients built from the packages' own .proto files, as probes and generic tools do:
 * grpc.health.v1.Health (overall and per service, following readiness: draining via
 * Daxd.setDraining, shutting down) and server reflection (every service of daxd.proto
 * listed; a descriptor from which a call is built and made). The server runs in this
 * process with --auth on, so the tests also show who may call what: Health without a
 * token, reflection as a read.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as descriptor from 'protobufjs/ext/descriptor';
import pino from 'pino';
import { parsePrincipals } from '../../server/auth/auth-file';
import { Authenticator } from '../../server/auth/authenticator';
import { HEALTH_SERVICE, LIVENESS_HEALTH_NAME } from '../../server/rpc/standard-services';
import { HEALTH_WATCHES_MAX } from '../../server/rpc/limits';
import { Daxd } from '../../server/server';
import { REASON_METADATA_KEY } from '../../wire/metadata';
import { sha256Hex } from '../support/auth-server';
import { healthCheck, healthClient, protoMethodNames, protoServiceNames, reflect, type HealthClient, type HealthStatus } from '../support/standard-clients';
import { tempDir } from '../support/start-server';
import { until } from '../support/until';
import { MiB } from '../support/units';

const READER_TOKEN = 'reader-token-standard-services-0123456789';
const AUTH_JSON = JSON.stringify({ principals: [{ name: 'reader', role: 'ro', token_sha256: sha256Hex(READER_TOKEN) }] });

function bearer(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

async function startDaxd(dir: string, name: string): Promise<Daxd> {
  return Daxd.start({
    volumePath: path.join(dir, `${name}.vol`), sizeBytes: 64 * MiB, grpcAddress: '127.0.0.1:0', log: pino({ level: 'silent' }), shutdownGraceMs: 2_000,
    auth: new Authenticator(parsePrincipals('auth.json', AUTH_JSON)),
  });
}

/** A Watch stream's statuses as they come, and how it ended. */
function watchHealth(client: HealthClient, service: string) {
  const statuses: HealthStatus[] = [];
  const stream = client.watch({ service });
  const ended = new Promise<grpc.ServiceError | null>((resolve) => {
    stream.on('error', (err: grpc.ServiceError) => resolve(err));
    stream.on('end', () => resolve(null));
  });
  const waiters: Array<{ status: HealthStatus; resolve(): void }> = [];
  stream.on('data', (m: { status: HealthStatus }) => {
    statuses.push(m.status);
    for (const w of waiters.filter((x) => x.status === m.status)) w.resolve();
  });
  return {
    statuses, ended, cancel: () => stream.cancel(),
    /** Resolves when `status` has been received (already or later). */
    saw: (status: HealthStatus) => new Promise<void>((resolve) => (statuses.includes(status) ? resolve() : waiters.push({ status, resolve }))),
  };
}

describe('standard gRPC services: health and reflection (raw grpc-js clients)', function () {
  this.timeout(30_000);
  let tmp: ReturnType<typeof tempDir>;
  let daxd: Daxd;
  let health: HealthClient;
  const services = protoServiceNames();

  before(async () => {
    tmp = tempDir('daxd-standard-');
    daxd = await startDaxd(tmp.dir, 'main');
    health = healthClient(daxd.grpcAddress);
  });

  after(async () => {
    health?.close();
    await daxd?.stop();
    tmp?.remove();
  });

  it('daxd.proto declares the services the tests expect to find (parsed, not listed here)', () => {
    assert.ok(services.length >= 4, `services of daxd.proto: ${services.join(', ')}`);
    for (const s of services) assert.match(s, /^daxd\.v1\.[A-Z]\w+$/);
  });

  it('Health.Check without a token (auth on): SERVING overall ("") and for every service of daxd.proto', async () => {
    for (const name of ['', ...services, LIVENESS_HEALTH_NAME]) assert.equal(await healthCheck(health, name), 'SERVING', `Check(${JSON.stringify(name)})`);
  });

  it('Health.Check of an unknown service name is NOT_FOUND', async () => {
    for (const name of ['daxd.v1.NoSuchService', 'Files', 'x'.repeat(10_000)]) {
      await assert.rejects(healthCheck(health, name), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.NOT_FOUND, `${name.slice(0, 40)}: ${err.message.slice(0, 200)}`);
        return true;
      });
    }
  });

  it('Health.Watch of an unknown name answers SERVICE_UNKNOWN and stays open', async () => {
    const w = watchHealth(health, 'daxd.v1.NoSuchService');
    await w.saw('SERVICE_UNKNOWN');
    w.cancel();
    assert.equal((await w.ended)?.code, grpc.status.CANCELLED);
    assert.deepEqual(w.statuses, ['SERVICE_UNKNOWN']);
  });

  it('Health.Check with bytes that do not decode is INVALID_ARGUMENT / EBADMSG, never INTERNAL', async () => {
    const raw = new grpc.Client(daxd.grpcAddress, grpc.credentials.createInsecure());
    try {
      // A varint field whose varint is cut off after its tag.
      const err = await new Promise<grpc.ServiceError>((resolve, reject) => {
        raw.makeUnaryRequest(`/${HEALTH_SERVICE}/Check`, (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0x08]), (e) => (e ? resolve(e) : reject(new Error('the call succeeded'))));
      });
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.message);
      assert.equal(err.metadata.get(REASON_METADATA_KEY)[0], 'EBADMSG');
    } finally {
      raw.close();
    }
  });

  it('setDraining(true): Watch sees NOT_SERVING and Check says so for each service; setDraining(false): SERVING again', async () => {
    const overall = watchHealth(health, '');
    const files = watchHealth(health, 'daxd.v1.Files');
    try {
      await overall.saw('SERVING');
      await files.saw('SERVING');
      daxd.setDraining(true);
      await overall.saw('NOT_SERVING');
      await files.saw('NOT_SERVING');
      for (const name of ['', ...services]) assert.equal(await healthCheck(health, name), 'NOT_SERVING', `Check(${JSON.stringify(name)}) while draining`);
      assert.equal(await healthCheck(health, LIVENESS_HEALTH_NAME), 'SERVING', 'a draining server is alive');
      daxd.setDraining(false);
      assert.equal(await healthCheck(health, ''), 'SERVING');
      assert.deepEqual(overall.statuses, ['SERVING', 'NOT_SERVING', 'SERVING']);
    } finally {
      daxd.setDraining(false);
      overall.cancel();
      files.cancel();
    }
  });

  it(`Health.Watch: ${HEALTH_WATCHES_MAX} open at once; one more is RESOURCE_EXHAUSTED / ELIMIT; a freed one is taken again`, async function () {
    this.timeout(60_000);
    // Two channels: one connection carries at most STREAMS_PER_CONNECTION_MAX (1024) streams.
    const clients = [healthClient(daxd.grpcAddress, { 'daxd.test.channel': 1 }), healthClient(daxd.grpcAddress, { 'daxd.test.channel': 2 })];
    const open: Array<ReturnType<typeof watchHealth>> = [];
    try {
      for (let i = 0; i < HEALTH_WATCHES_MAX; i++) open.push(watchHealth(clients[i % 2], ''));
      await Promise.all(open.map((w) => w.saw('SERVING')));
      const over = watchHealth(clients[0], '');
      const err = await over.ended;
      assert.equal(err?.code, grpc.status.RESOURCE_EXHAUSTED, String(err));
      assert.equal(err?.metadata.get(REASON_METADATA_KEY)[0], 'ELIMIT');
      assert.match(err!.details, /HEALTH_WATCHES_MAX exceeded \(1025 vs\. max 1024\)/);
      open.pop()!.cancel();
      // The server learns of the cancel over the network: try until a new watch is taken.
      let taken: ReturnType<typeof watchHealth> | null = null;
      await until(async () => {
        const w = watchHealth(clients[1], '');
        if (await Promise.race([w.saw('SERVING').then(() => true), w.ended.then(() => false)])) taken = w;
        return taken !== null;
      }, 'a watch taken again after one was cancelled', 10_000);
      open.push(taken!);
    } finally {
      for (const w of open) w.cancel();
      for (const c of clients) c.close();
    }
  });

  it('reflection without a token is refused (UNAUTHENTICATED / EAUTH): it follows the read role', async () => {
    await assert.rejects(reflect(daxd.grpcAddress, { list_services: '*' }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAUTHENTICATED, err.message);
      assert.equal(err.metadata.get(REASON_METADATA_KEY)[0], 'EAUTH');
      return true;
    });
  });

  it('reflection list_services (an ro token) names every service of daxd.proto and grpc.health.v1.Health', async () => {
    const answer = await reflect(daxd.grpcAddress, { list_services: '*' }, bearer(READER_TOKEN));
    const listed = answer.list_services_response!.service.map((s) => s.name).sort();
    assert.deepEqual(listed, [...services, HEALTH_SERVICE].sort());
  });

  it('reflection file_containing_symbol returns descriptors from which a call is built (Files.StatVolume, Health.Check) and made', async () => {
    const answer = await reflect(daxd.grpcAddress, { file_containing_symbol: 'daxd.v1.Files' }, bearer(READER_TOKEN));
    const protos = answer.file_descriptor_response!.file_descriptor_proto;
    assert.ok(protos.length >= 1);
    const set = descriptor.FileDescriptorSet.encode({ file: protos.map((b) => descriptor.FileDescriptorProto.decode(b)) } as unknown as descriptor.IFileDescriptorSet).finish();
    const definition = protoLoader.loadFileDescriptorSetFromBuffer(Buffer.from(set), { keepCase: true, longs: String, defaults: true });
    // Every RPC of daxd.proto's Files is in the descriptor, with its path.
    const files = definition['daxd.v1.Files'] as protoLoader.ServiceDefinition;
    assert.deepEqual(Object.keys(files).sort(), protoMethodNames('Files').sort());
    const Files = grpc.makeGenericClientConstructor(files as unknown as grpc.ServiceDefinition, 'Files');
    const client = new Files(daxd.grpcAddress, grpc.credentials.createInsecure()) as unknown as Record<string, (req: object, md: grpc.Metadata, cb: grpc.requestCallback<Record<string, unknown>>) => void> & grpc.Client;
    try {
      const info = await new Promise<Record<string, unknown>>((resolve, reject) => client.StatVolume({}, bearer(READER_TOKEN), (err, res) => (err ? reject(err) : resolve(res!))));
      assert.equal(info.block_size, '4096');
      assert.equal(info.size, String(64 * MiB));
    } finally {
      client.close();
    }
    const healthAnswer = await reflect(daxd.grpcAddress, { file_containing_symbol: `${HEALTH_SERVICE}.Check` }, bearer(READER_TOKEN));
    assert.ok(healthAnswer.file_descriptor_response!.file_descriptor_proto.some((b) => (descriptor.FileDescriptorProto.decode(b) as unknown as { package: string }).package === 'grpc.health.v1'));
  });

  it('reflection of an unknown symbol answers error_response NOT_FOUND (an answer on the stream, not a failed call)', async () => {
    const answer = await reflect(daxd.grpcAddress, { file_containing_symbol: 'daxd.v1.NoSuchThing' }, bearer(READER_TOKEN));
    assert.equal(answer.error_response?.error_code, grpc.status.NOT_FOUND);
  });

  it('shutdown: Watch sees NOT_SERVING before the server goes, then ends UNAVAILABLE / ESHUTDOWN', async () => {
    const second = await startDaxd(tmp.dir, 'second');
    const client = healthClient(second.grpcAddress);
    try {
      const watches = [watchHealth(client, 'daxd.v1.Session'), watchHealth(client, LIVENESS_HEALTH_NAME)];
      for (const w of watches) await w.saw('SERVING');
      const stopped = second.stop();
      for (const w of watches) {
        await w.saw('NOT_SERVING');
        const err = await w.ended;
        assert.equal(err?.code, grpc.status.UNAVAILABLE, String(err));
        assert.equal(err?.metadata.get(REASON_METADATA_KEY)[0], 'ESHUTDOWN');
        assert.deepEqual(w.statuses, ['SERVING', 'NOT_SERVING']);
      }
      await stopped;
    } finally {
      client.close();
      await second.stop();
    }
  });
});
