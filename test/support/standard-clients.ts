/**
 * Raw grpc-js clients of the standard services (server/rpc/standard-services.ts), built
 * from the packages' own .proto files, never from daxd's code: grpc.health.v1.Health and
 * grpc.reflection.v1.ServerReflection, as a generic tool (grpcurl, a probe) calls them.
 * And the services daxd.proto declares, read from the file's text (the expected lists of
 * the tests are the proto's, not a copy).
 */
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as HEALTH_PROTO_PATH } from 'grpc-health-check';
import { REPO_ROOT } from './start-server';

const LOADER: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

export const DAXD_PROTO_FILE = path.join(REPO_ROOT, 'proto', 'daxd', 'v1', 'daxd.proto');

/** "daxd.v1.Session", ...: `package` + each `service NAME {` of daxd.proto, in file order. */
export function protoServiceNames(file = DAXD_PROTO_FILE): string[] {
  const text = fs.readFileSync(file, 'utf8').replace(/\/\/.*$/gm, '');
  const pkg = /^\s*package\s+([\w.]+)\s*;/m.exec(text)?.[1];
  if (pkg === undefined) throw new Error(`${file}: no package`);
  return [...text.matchAll(/^\s*service\s+(\w+)\s*\{/gm)].map((m) => `${pkg}.${m[1]}`);
}

/** The rpc names of one service of daxd.proto ("Files" -> ["Create", ...]). */
export function protoMethodNames(service: string, file = DAXD_PROTO_FILE): string[] {
  const text = fs.readFileSync(file, 'utf8').replace(/\/\/.*$/gm, '');
  const start = new RegExp(`^\\s*service\\s+${service}\\s*\\{`, 'm').exec(text);
  if (start === null) throw new Error(`no service ${service}`);
  const body = text.slice(start.index, text.indexOf('\n}', start.index));
  return [...body.matchAll(/\brpc\s+(\w+)\s*\(/g)].map((m) => m[1]);
}

function clientConstructor(protoFile: string, includeDir: string, service: string): grpc.ServiceClientConstructor {
  const def = protoLoader.loadSync(path.relative(includeDir, protoFile), { ...LOADER, includeDirs: [includeDir] });
  let node: unknown = grpc.loadPackageDefinition(def);
  for (const part of service.split('.')) node = (node as Record<string, unknown>)[part];
  return node as grpc.ServiceClientConstructor;
}

export type HealthStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

export interface HealthClient extends grpc.Client {
  check(request: { service: string }, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<{ status: HealthStatus }>): grpc.ClientUnaryCall;
  watch(request: { service: string }, metadata?: grpc.Metadata): grpc.ClientReadableStream<{ status: HealthStatus }>;
}

/** A grpc.health.v1.Health client (health.proto of grpc-health-check); channels with different options get their own connection. */
export function healthClient(address: string, options: grpc.ChannelOptions = {}): HealthClient {
  const Ctor = clientConstructor(HEALTH_PROTO_PATH, path.resolve(path.dirname(HEALTH_PROTO_PATH), '..', '..'), 'grpc.health.v1.Health');
  return new Ctor(address, grpc.credentials.createInsecure(), options) as unknown as HealthClient;
}

/** Health.Check as a promise: the status, or the gRPC error. */
export function healthCheck(client: HealthClient, service: string, metadata = new grpc.Metadata()): Promise<HealthStatus> {
  return new Promise((resolve, reject) => {
    client.check({ service }, metadata, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res!.status)));
  });
}

/** The reflection.proto that @grpc/reflection serves (v1). */
function reflectionProto(): { file: string; root: string } {
  const root = path.resolve(path.dirname(require.resolve('@grpc/reflection')), '..', 'proto');
  return { file: path.join(root, 'grpc', 'reflection', 'v1', 'reflection.proto'), root };
}

export interface ReflectionResponse {
  list_services_response?: { service: Array<{ name: string }> };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
  message_response: string;
}

/** One request on a fresh ServerReflectionInfo stream: its one answer, or the call's error. */
export function reflect(address: string, request: Record<string, unknown>, metadata = new grpc.Metadata()): Promise<ReflectionResponse> {
  const { file, root } = reflectionProto();
  const Ctor = clientConstructor(file, root, 'grpc.reflection.v1.ServerReflection');
  const client = new Ctor(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & { ServerReflectionInfo(md: grpc.Metadata, o: grpc.CallOptions): grpc.ClientDuplexStream<unknown, ReflectionResponse> };
  return new Promise((resolve, reject) => {
    const stream = client.ServerReflectionInfo(metadata, { deadline: Date.now() + 10_000 });
    let answer: ReflectionResponse | null = null;
    stream.on('data', (m: ReflectionResponse) => {
      answer = m;
      stream.end();
    });
    stream.on('error', (err) => {
      client.close();
      reject(err);
    });
    stream.on('end', () => {
      client.close();
      if (answer === null) reject(new Error('reflection stream ended without an answer'));
      else resolve(answer);
    });
    stream.write({ host: '', ...request });
  });
}
