/**
 * Fixtures of the Mapping tests (test/integration/mapping-*.test.ts):
 * - startInProcess: a real daxd (Daxd.start) in this process on 127.0.0.1:0, over a real
 *   volume file, with failpoints enabled: race tests pause server requests through
 *   `daxd.dax.failpoints` and talk to it over gRPC like any client.
 * - fsckVolume: server/fsck/fsck.ts on a volume file nobody serves.
 * - prepareFile: a file made zero-filled, fallocated or sparse (holetest preparations).
 * - inspect: Mapping.Inspect with numbers instead of decimal strings.
 * - RawMapping: the Mapping RPCs of one session through the generated stubs (what the SDK
 *   never sends on its own: unary Fault / Load / Store, hand-built batches).
 * - openRawSession: Session.Open without keep-alive or Events (tests watch leases run out).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import pino from 'pino';
import type { DaxClient, DaxSession } from '../../client';
import type { RawClients } from '../../client/raw-clients';
import type { AccessBatchResponse__Output } from '../../wire/generated/daxd/v1/AccessBatchResponse';
import type { AccessOp } from '../../wire/generated/daxd/v1/AccessOp';
import type { AccessResponse__Output } from '../../wire/generated/daxd/v1/AccessResponse';
import type { FaultBatchResponse__Output } from '../../wire/generated/daxd/v1/FaultBatchResponse';
import type { FaultOp } from '../../wire/generated/daxd/v1/FaultOp';
import type { FaultResponse__Output } from '../../wire/generated/daxd/v1/FaultResponse';
import type { InspectResponse__Output } from '../../wire/generated/daxd/v1/InspectResponse';
import type { SessionInfo__Output } from '../../wire/generated/daxd/v1/SessionInfo';
import { fsck } from '../../server/fsck/fsck';
import { MmapStorage } from '../../server/media/mmap-storage';
import { Daxd } from '../../server/server';
import { call } from '../support/raw-rpc';
import { clientFor, tempDir } from '../support/start-server';
import { rawClients } from '../support/raw-rpc';
import { MiB, PAGE } from '../support/units';

export interface InProcessServer {
  daxd: Daxd;
  address: string;
  volumePath: string;
  /** Graceful stop (idempotent), then fsck: the findings ([] when clean). Removes the temp dir. */
  stopAndFsck(): Promise<unknown[]>;
}

export async function startInProcess(name: string, sizeBytes = 64 * MiB): Promise<InProcessServer> {
  const tmp = tempDir(`daxd-${name}-`);
  const volumePath = path.join(tmp.dir, `${name}.vol`);
  const daxd = await Daxd.start({
    volumePath, sizeBytes, grpcAddress: '127.0.0.1:0', log: pino({ level: 'silent' }), failpoints: true, shutdownGraceMs: 2_000,
  });
  return {
    daxd, address: daxd.grpcAddress, volumePath,
    async stopAndFsck() {
      try {
        await daxd.stop();
        return await fsckVolume(volumePath);
      } finally {
        tmp.remove();
      }
    },
  };
}

/** fsck of a volume file that no server holds: the findings ([] when clean). */
export async function fsckVolume(volumePath: string): Promise<unknown[]> {
  const storage = MmapStorage.open(volumePath);
  try {
    return (await fsck(storage)).findings;
  } finally {
    storage.close();
  }
}

export type Prep = 'zero-filled' | 'fallocated' | 'sparse';
export const PREPS: readonly Prep[] = ['zero-filled', 'fallocated', 'sparse'];

/** A fresh file of sizeBytes: zero-filled (WRITTEN), fallocated (UNWRITTEN) or sparse (holes). */
export async function prepareFile(client: DaxClient, name: string, prep: Prep, sizeBytes: number): Promise<number> {
  const { ino } = await client.create(name, { exclusive: true });
  switch (prep) {
    case 'zero-filled':
      await client.write(ino, 0, Buffer.alloc(sizeBytes));
      break;
    case 'fallocated':
      await client.fallocate(ino, 'ALLOCATE', 0, sizeBytes);
      break;
    case 'sparse':
      await client.truncate(ino, sizeBytes);
      break;
  }
  const info = await client.stat(ino);
  assert.equal(info.size, sizeBytes, `${prep} file size`);
  assert.equal(info.blocks, prep === 'sparse' ? 0 : sizeBytes / PAGE, `${prep} file blocks`);
  return ino;
}

export interface Entry {
  pgoff: number;
  state: string;
  pfn: number;
  locked: boolean;
  dirty: boolean;
  towrite: boolean;
  pinCount: number;
  mappers: number;
  waiters: number;
}

export async function inspect(raw: RawClients, ino: number, first: number, last: number): Promise<Entry[]> {
  const r = await call<InspectResponse__Output>((cb) => raw.mapping.Inspect({ ino, first_pgoff: first, last_pgoff: last }, cb));
  return r.entries.map((e) => ({
    pgoff: Number(e.pgoff), state: e.state, pfn: Number(e.pfn), locked: e.locked, dirty: e.dirty, towrite: e.towrite,
    pinCount: e.pin_count, mappers: e.mappers, waiters: e.waiters,
  }));
}

export type Kind = 'READ' | 'WRITE' | 'COW';

/** Mapping RPCs of one session, raw (uint64s as the wire has them: decimal strings). */
export class RawMapping {
  constructor(readonly raw: RawClients, readonly sessionId: string) {}

  fault(ino: number, pgoff: number, kind: Kind, sync = false): Promise<FaultResponse__Output> {
    return call((cb) => this.raw.mapping.Fault({ session_id: this.sessionId, ino, pgoff, kind, sync }, cb));
  }

  /** The token of a READ / WRITE fault. */
  async token(ino: number, pgoff: number, kind: 'READ' | 'WRITE', sync = false): Promise<string> {
    const r = await this.fault(ino, pgoff, kind, sync);
    assert.ok(r.pte, `${kind} fault of page ${pgoff} returned no PTE`);
    return r.pte.token;
  }

  async load(token: string, offset: number, length: number): Promise<Buffer> {
    const r = await call<AccessResponse__Output>((cb) => this.raw.mapping.Load({ session_id: this.sessionId, token, offset, length }, cb));
    return r.data;
  }

  async store(token: string, offset: number, data: Buffer): Promise<void> {
    await call((cb) => this.raw.mapping.Store({ session_id: this.sessionId, token, offset, data }, cb));
  }

  async msync(ino: number, first: number, last: number): Promise<void> {
    await call((cb) => this.raw.mapping.Msync({ session_id: this.sessionId, ino, first_pgoff: first, last_pgoff: last }, cb));
  }

  async unmap(ino: number, first: number, last: number): Promise<void> {
    await call((cb) => this.raw.mapping.Unmap({ session_id: this.sessionId, ino, first_pgoff: first, last_pgoff: last }, cb));
  }

  faultBatch(ino: number, ops: FaultOp[]): Promise<FaultBatchResponse__Output> {
    return call((cb) => this.raw.mapping.FaultBatch({ session_id: this.sessionId, ino, ops }, cb));
  }

  accessBatch(ops: AccessOp[]): Promise<AccessBatchResponse__Output> {
    return call((cb) => this.raw.mapping.AccessBatch({ session_id: this.sessionId, ops }, cb));
  }
}

/** A session opened with Session.Open only: no keep-alive, no Events stream. */
export async function openRawSession(raw: RawClients, leaseMs = 0, clientName = 'raw'): Promise<RawMapping> {
  const info = await call<SessionInfo__Output>((cb) => raw.session.Open({ client_name: clientName, lease_ms: leaseMs }, cb));
  return new RawMapping(raw, info.session_id);
}

/** A deterministic page-sized (or any size) byte pattern. */
export function pattern(seed: number, length = PAGE): Buffer {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = (seed * 31 + i * 7 + 1) & 0xff;
  return data;
}

/** What useSdkServer sets up: filled in by its before hook. */
export interface SdkServer {
  server: InProcessServer;
  client: DaxClient;
  raw: RawClients;
  session: DaxSession;
}

/**
 * Registers the describe block's before/after hooks: one in-process server, an SDK client,
 * raw clients and an SDK session with its Events stream attached. After: all closed, and
 * the volume must be fsck-clean.
 */
export function useSdkServer(name: string): SdkServer {
  const f = {} as SdkServer;
  before(async function () {
    f.server = await startInProcess(name);
    f.client = clientFor(f.server);
    f.raw = rawClients(f.server.address);
    f.session = await f.client.openSession({ clientName: name });
    await f.session.attached;
  });
  after(async function () {
    await f.session?.close();
    f.client?.close();
    f.raw?.close();
    if (f.server) assert.deepEqual(await f.server.stopAndFsck(), []);
  });
  return f;
}
