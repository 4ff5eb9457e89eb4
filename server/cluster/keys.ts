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
  return {
    name: r.name, grpc: r.grpc, nbd: r.nbd, http: r.http, volumeUuid: r.volumeUuid, capacity: r.capacity, free: r.free, version: r.version, startedAtMs: r.startedAtMs,
  };
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
  return r === null || !str(r.node) || !num(r.ino) ? null : { node: r.node, ino: r.ino };
}
