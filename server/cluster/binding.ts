/**
 * The binding of a node name to its volume: PREFIX/bindings/NAME -> {volumeUuid}, with no
 * lease, written by the node's registration transaction (membership.ts).
 *
 * Why: placements name a node, not a volume. A node started under its name with another
 * volume (a mistyped --volume creates a fresh, empty one) would otherwise register once
 * the old lease expired, and its reconcile pass would remove every placement naming it
 * whose file it lacks: all of them. So at registration:
 *   - no binding: the name is bound to this volume (first registration);
 *   - bound to this volume: nothing to decide;
 *   - bound to another volume while placements still name the node: the start is refused
 *     (EBUSY, naming the bound volume and how to proceed); nothing is changed;
 *   - bound to another volume and no placement names the node: rebound to this one.
 * The registration transaction compares the binding with the value read here, so a
 * binding changed meanwhile makes it retry the decision. Reconcile deletes a placement only
 * while the binding names its volume (reconcile.ts compares it in the same transaction).
 */
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { BusyError } from '../errors';
import { readPrefix } from './etcd';
import { parseBindingRecord, parsePlacementRecord, type ClusterKeys } from './keys';

/**
 * Decides the binding of `name` for `volumeUuid`; returns the binding value read (null:
 * absent), which the registration transaction must find unchanged. Throws BusyError when
 * the name is bound to another volume that placements still need.
 */
export async function checkBinding(etcd: Etcd3, keys: ClusterKeys, name: string, volumeUuid: string, log: Logger): Promise<string | null> {
  const raw = await etcd.get(keys.binding(name)).string();
  if (raw === null) return null;
  const bound = parseBindingRecord(raw);
  if (bound !== null && bound.volumeUuid === volumeUuid) return raw;
  const boundTo = bound?.volumeUuid ?? `(unreadable binding ${JSON.stringify(raw.slice(0, 100))})`;
  const placed = await placementsNaming(etcd, keys, name);
  if (placed > 0) {
    throw new BusyError(`node ${name} is bound to volume ${boundTo} and ${placed} placements name it, but it was started with volume ${volumeUuid}: `
      + `start it with volume ${boundTo} again; if that volume is lost for good, delete the key ${keys.binding(name)} from etcd `
      + `(the next start then binds this volume and drops the ${placed} placements whose files it lacks)`);
  }
  log.warn({ node: name, from: boundTo, to: volumeUuid }, 'cluster: no placement names this node: binding its name to the new volume');
  return raw;
}

/** How many placements name `node` (a paged read of the files prefix). */
async function placementsNaming(etcd: Etcd3, keys: ClusterKeys, node: string): Promise<number> {
  let n = 0;
  for (const kv of (await readPrefix(etcd, keys.files)).kvs) if (parsePlacementRecord(kv.value.toString('utf8'))?.node === node) n++;
  return n;
}
