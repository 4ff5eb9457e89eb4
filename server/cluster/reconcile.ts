/**
 * The start-up reconcile pass: the local names against the placement keys naming this
 * node, after a crash between a local change and its key (placement.ts):
 *   - a key naming this node whose file is not here (crash after the key of a Create, or
 *     after the local unlink of an Unlink): the key is removed, in a transaction that also
 *     checks the node's name is bound to this volume (binding.ts): never on a mismatch;
 *   - a key naming this node with another inode (crash before a Create recorded it): the
 *     inode is recorded;
 *   - a local file without a key (a volume that joined with files, or a key lost): the
 *     key is created (only if absent);
 *   - a local file whose name is placed on another node: reported as a conflict and left
 *     alone (this node answers NOT_OWNER for it; nothing is deleted), except the two
 *     leftovers of a drain (drain.ts) below.
 * Drains (drain.ts; a crash of either node mid-file):
 *   - a key naming this node with `moving: T` (this node crashed while draining, before
 *     the switch): `moving` is dropped, the file stays here (a rerun moves it again);
 *     T's partial copy is removed by T's own reconcile, or overwritten by the rerun;
 *   - a local file whose name is placed `{S, moving: this node}` (this node, the target,
 *     restarted during a copy): the partial copy is removed, the key left to S;
 *   - a local file whose name is placed `{T, from: {this node, its inode}}` (this node
 *     crashed after the switch, before its copy was removed): the local file is removed
 *     (and committed), then `from` dropped. The copy on T is the registered one.
 * Runs before the node takes mutating calls (it is fenced until then).
 */
import type { Etcd3 } from 'etcd3';
import type { FileSystemApi } from '../fs/types';
import { LIST_PAGE_ENTRIES_MAX } from '../rpc/limits';
import type { ClusterKeys } from './keys';
import { bindingValue, parsePlacementRecord, placementJson } from './keys';
import { placementValue } from './placement';
import { readPrefix } from './etcd';

export interface ReconcileReport {
  removed: string[];
  inoRecorded: string[];
  registered: string[];
  conflicts: Array<{ name: string; node: string }>;
  /** Drains interrupted on this node before a switch: `moving` dropped, the file kept here. */
  movesAbandoned: string[];
  /** Partial copies of an interrupted drain of another node, removed here. */
  copiesRemoved: string[];
  /** Files moved away whose local copy was left by a crash, removed here. */
  movedRemoved: string[];
}

export async function reconcile(etcd: Etcd3, keys: ClusterKeys, self: string, fs: FileSystemApi): Promise<ReconcileReport> {
  const report: ReconcileReport = { removed: [], inoRecorded: [], registered: [], conflicts: [], movesAbandoned: [], copiesRemoved: [], movedRemoved: [] };
  const local = new Map<string, number>();
  // Bounded: at most max_files names, LIST_PAGE_ENTRIES_MAX per page.
  for (let token = ''; ;) {
    const page = fs.list('', token, LIST_PAGE_ENTRIES_MAX);
    for (const f of page.files) local.set(f.name, f.ino);
    token = page.nextPageToken;
    if (token === '') break;
  }
  const placed = new Map<string, { node: string; ino: number; raw: string }>();
  // Paged (etcd.ts readPrefix): one reply of every placement would pass grpc-js's 4 MiB.
  for (const kv of (await readPrefix(etcd, keys.files)).kvs) {
    const value = kv.value.toString('utf8');
    const record = parsePlacementRecord(value);
    if (record !== null) placed.set(kv.key.toString('utf8').slice(keys.files.length), { ...record, raw: value });
  }
  // Drain leftovers first: they remove local files and change keys the passes below look at.
  let unlinked = false;
  for (const [name, p] of placed) {
    const key = keys.file(name);
    const ino = local.get(name);
    const record = parsePlacementRecord(p.raw)!;
    if (p.node === self && record.moving !== undefined) {
      const { moving: _moving, ...kept } = record;
      const r = await etcd.if(key, 'Value', '==', p.raw).then(etcd.put(key).value(placementJson(kept))).commit();
      if (r.succeeded) {
        report.movesAbandoned.push(name);
        p.raw = placementJson(kept);
      }
    } else if (p.node !== self && ino !== undefined && (record.moving === self || (record.from?.node === self && record.from.ino === ino))) {
      await fs.unlink(name);
      unlinked = true;
      local.delete(name);
      (record.moving === self ? report.copiesRemoved : report.movedRemoved).push(name);
    }
  }
  if (unlinked) await fs.sync();
  for (const [name, p] of placed) {
    const record = parsePlacementRecord(p.raw)!;
    if (p.node === self || record.from?.node !== self || report.copiesRemoved.includes(name)) continue;
    if (local.has(name)) continue;
    // Moved away and the local copy is gone: `from` goes.
    const key = keys.file(name);
    const { from: _from, ...rest } = record;
    await etcd.if(key, 'Value', '==', p.raw).then(etcd.put(key).value(placementJson(rest))).commit();
  }
  // A key is removed only while the name is bound to this volume (binding.ts): never on a volume mismatch.
  const bound = bindingValue(fs.statVolume().uuid);
  for (const [name, p] of placed) {
    if (p.node !== self) continue;
    const key = keys.file(name);
    const ino = local.get(name);
    if (ino === undefined) {
      const r = await etcd.if(key, 'Value', '==', p.raw).and(keys.binding(self), 'Value', '==', bound).then(etcd.delete().key(key)).commit();
      if (r.succeeded) report.removed.push(name);
    } else if (ino !== p.ino) {
      const r = await etcd.if(key, 'Value', '==', p.raw).then(etcd.put(key).value(placementValue(self, ino))).commit();
      if (r.succeeded) report.inoRecorded.push(name);
    }
  }
  for (const [name, ino] of local) {
    const p = placed.get(name);
    if (p !== undefined) {
      if (p.node !== self) report.conflicts.push({ name, node: p.node });
      continue;
    }
    const key = keys.file(name);
    const r = await etcd.if(key, 'Create', '==', 0).then(etcd.put(key).value(placementValue(self, ino))).commit();
    if (r.succeeded) report.registered.push(name);
  }
  return report;
}
