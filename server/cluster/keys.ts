/**
 * The etcd keys of a cluster and their JSON records:
 *   PREFIX/nodes/NAME   -> NodeRecord       (under the node's lease: gone when it expires)
 *   PREFIX/volumes/UUID -> VolumeRecord     (under the same lease: one server per volume)
 *   PREFIX/files/NAME   -> PlacementRecord  (no lease: a file stays placed while its node is down)
 *   PREFIX/bindings/NAME -> BindingRecord   (no lease: the volume a node name serves; binding.ts)
 * Records read back are checked (parse*): anything else under the prefix is ignored as
 * foreign, never trusted.
 */
import { ETCD_RECORD_BYTES_MAX } from './limits';

export interface NodeRecord {
  name: string;
  grpc: string;
  nbd: string;
  http: string;
  volumeUuid: string;
  capacity: number;
  free: number;
  version: string;
  startedAtMs: number;
  /** Set while the node is being drained (drain.ts): its progress. */
  drain?: DrainProgress;
}

/** A drain's progress (wire DrainStatus). */
export interface DrainProgress {
  filesTotal: number;
  filesMoved: number;
  filesFailed: number;
  bytesTotal: number;
  bytesCopied: number;
  current: string;
  currentTarget: string;
}

export interface VolumeRecord {
  node: string;
}

/** The volume a node name is bound to (binding.ts): written at its first registration. */
export interface BindingRecord {
  volumeUuid: string;
}

export interface PlacementRecord {
  node: string;
  /** 0 while the Create that placed it has not created the file yet. */
  ino: number;
  /** A drain is copying the file to this node (drain.ts step a); `node` still owns it. */
  moving?: string;
  /** A drain moved it here from this node and inode, whose copy is not deleted yet (step f). */
  from?: { node: string; ino: number };
}

export class ClusterKeys {
  constructor(readonly prefix: string) {}
  get nodes(): string { return `${this.prefix}/nodes/`; }
  get volumes(): string { return `${this.prefix}/volumes/`; }
  get files(): string { return `${this.prefix}/files/`; }
  node(name: string): string { return this.nodes + name; }
  volume(uuid: string): string { return this.volumes + uuid; }
  file(name: string): string { return this.files + name; }
  get bindings(): string { return `${this.prefix}/bindings/`; }
  binding(name: string): string { return this.bindings + name; }
}

function parsed(value: string): Record<string, unknown> | null {
  if (value.length > ETCD_RECORD_BYTES_MAX) return null;
  try {
    const v = JSON.parse(value) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : null;
  } catch {
    return null;
  }
}

const str = (v: unknown): v is string => typeof v === 'string';
const num = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

export function parseNodeRecord(value: string): NodeRecord | null {
  const r = parsed(value);
  if (r === null || !str(r.name) || !str(r.grpc) || !str(r.nbd) || !str(r.http) || !str(r.volumeUuid) || !num(r.capacity) || !num(r.free)
    || !str(r.version) || !num(r.startedAtMs)) return null;
  const record: NodeRecord = {
    name: r.name, grpc: r.grpc, nbd: r.nbd, http: r.http, volumeUuid: r.volumeUuid, capacity: r.capacity, free: r.free, version: r.version, startedAtMs: r.startedAtMs,
  };
  const d = r.drain as Record<string, unknown> | undefined;
  if (typeof d === 'object' && d !== null && num(d.filesTotal) && num(d.filesMoved) && num(d.filesFailed) && num(d.bytesTotal) && num(d.bytesCopied)
    && str(d.current) && str(d.currentTarget)) {
    record.drain = {
      filesTotal: d.filesTotal, filesMoved: d.filesMoved, filesFailed: d.filesFailed, bytesTotal: d.bytesTotal, bytesCopied: d.bytesCopied,
      current: d.current, currentTarget: d.currentTarget,
    };
  }
  return record;
}

export function parseVolumeRecord(value: string): VolumeRecord | null {
  const r = parsed(value);
  return r === null || !str(r.node) ? null : { node: r.node };
}

/** The binding value of a volume: written by the registration, compared by reconcile's deletions. */
export function bindingValue(volumeUuid: string): string {
  return JSON.stringify({ volumeUuid });
}

export function parseBindingRecord(value: string): BindingRecord | null {
  const r = parsed(value);
  return r === null || !str(r.volumeUuid) ? null : { volumeUuid: r.volumeUuid };
}

export function parsePlacementRecord(value: string): PlacementRecord | null {
  const r = parsed(value);
  if (r === null || !str(r.node) || !num(r.ino)) return null;
  const record: PlacementRecord = { node: r.node, ino: r.ino };
  if (str(r.moving)) record.moving = r.moving;
  const from = r.from as Record<string, unknown> | undefined;
  if (typeof from === 'object' && from !== null && str(from.node) && num(from.ino)) record.from = { node: from.node, ino: from.ino };
  return record;
}

/** The JSON of a placement record (fields in a fixed order: transactions compare values). */
export function placementJson(p: PlacementRecord): string {
  const out: PlacementRecord = { node: p.node, ino: p.ino };
  if (p.moving !== undefined) out.moving = p.moving;
  if (p.from !== undefined) out.from = { node: p.from.node, ino: p.from.ino };
  return JSON.stringify(out);
}
