/**
 * Where names live, and the etcd transactions that decide it.
 *
 * Create of NAME at node SELF (after fencing was checked: a fenced node places nothing):
 *   1. The placement key is read from etcd (linearizable). Placed on SELF: create here.
 *      Placed on a live node X: NOT_OWNER(X). On a node that is down: NODE_DOWN (never
 *      re-created elsewhere).
 *   2. Absent: the owner is chosen by weighted rendezvous hashing over the live nodes
 *      (weight = free bytes). Another node: NOT_OWNER(it), and the client sends the Create
 *      there with the `daxd-redirected` metadata; a redirected Create is placed where it
 *      arrives (so two nodes with different views cannot bounce it forever).
 *   3. SELF: the key is created {node: SELF, ino: 0} in a transaction that succeeds only
 *      if it is absent and SELF's node key still has SELF's lease (a node whose lease
 *      expired places nothing, whatever its clock says: FENCED). Of two concurrent
 *      Creates of one name, exactly one wins; the other goes back to 1 and sees the winner.
 *   4. The file is created here, then the key gets its inode in a transaction that
 *      succeeds only if the key still says what the Create found ({SELF, 0} for its own
 *      claim): a key changed meanwhile is never overwritten (the Create fails with where
 *      the name is placed now). A local failure removes the key again, unless the file
 *      exists here after all.
 *   A crash between 3 and 4 leaves a key naming SELF with no file: reconcile.ts removes it
 *   at the next start.
 *
 * Unlink of NAME at SELF: the file is unlinked here first, then the key is removed only
 * if it still says {SELF, that inode} or {SELF, 0} (a Create in flight had not recorded
 * the inode yet); a Create that re-placed the name meanwhile keeps its key. A crash
 * between the two leaves a key without a file: reconcile.ts again.
 *
 * Reads (Lookup) are routed from the watch cache; a local miss is confirmed in etcd
 * before ENOENT (the cache may not have seen a placement made a moment ago elsewhere).
 *
 * Every etcd call here goes through etcdCall (etcd.ts): an etcd that does not answer
 * within ETCD_CALL_MS, or fails, is UNAVAILABLE / ETCD_UNAVAILABLE naming the operation.
 */
import type { Etcd3 } from 'etcd3';
import { quoted } from '../excerpt';
import { FencedError, NodeDownError, NotOwnerError } from '../errors';
import { etcdCall } from './etcd';
import type { ClusterKeys, NodeRecord, PlacementRecord } from './keys';
import { parsePlacementRecord } from './keys';
import { rendezvous } from './rendezvous';
import type { WatchCache } from './watch-cache';

/** The bounded retries of step 3 (a lost transaction re-reads the winner: one retry is enough unless it was removed meanwhile). */
const CLAIM_ATTEMPTS_MAX = 4;

export function placementValue(node: string, ino: number): string {
  return JSON.stringify({ node, ino });
}

export class Placement {
  /** NOT_OWNER redirects answered (daxd_cluster_redirects_total). */
  redirects = 0;

  /**
   * `leaseId`: the lease of SELF's registration now (null: not registered). The claim and
   * unlink transactions compare it on SELF's node key, so a node whose lease expired
   * (whatever its own clock believes) never places or removes a name.
   */
  constructor(private readonly etcd: Etcd3, private readonly keys: ClusterKeys, private readonly cache: WatchCache, readonly self: string,
    private readonly leaseId: () => string | null) {}

  /** The current lease, or FencedError. */
  private lease(): string {
    const id = this.leaseId();
    if (id === null) throw new FencedError('not registered in the cluster');
    return id;
  }

  /** After a transaction that compared the lease failed: FencedError if the lease is what failed. */
  private async assertLeaseHeld(id: string, operation: string): Promise<void> {
    const node = await etcdCall(`read of this node's registration (${operation})`, () => this.etcd.get(this.keys.node(this.self)).exec());
    if (node.kvs[0]?.lease !== id) throw new FencedError(`the lease of this node's registration is gone (${operation})`);
  }

  /** The error for a name placed on `node` (not SELF). */
  elsewhere(name: string, node: string): NotOwnerError | NodeDownError {
    const record = this.cache.nodes.get(node);
    if (record === undefined) return new NodeDownError(name, node);
    this.redirects++;
    return new NotOwnerError(name, node, record.grpc);
  }

  /** The live node `name` would be placed on now (rendezvous over the cached members that are not being drained). */
  choose(name: string): NodeRecord | null {
    const live = [...this.cache.nodes.values()];
    const open = live.filter((n) => n.drain === undefined);
    const chosen = rendezvous((open.length > 0 ? open : live).map((n) => ({ name: n.name, weight: n.free })), name);
    return chosen === null ? null : this.cache.nodes.get(chosen) ?? null;
  }

  /** The placement in etcd (linearizable read), or null. */
  async read(name: string): Promise<PlacementRecord | null> {
    const value = await etcdCall(`read of the placement of ${quoted(name)}`, () => this.etcd.get(this.keys.file(name)).string());
    return value === null ? null : parsePlacementRecord(value);
  }

  /**
   * Steps 1-3 of a Create: resolves when SELF owns the name ('claimed': the key was
   * created by this call, so finishCreate or abandonCreate must follow; owned: it
   * already named SELF, with that inode); throws NotOwnerError / NodeDownError otherwise.
   */
  async claim(name: string, redirected: boolean): Promise<'claimed' | { owned: number }> {
    const key = this.keys.file(name);
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS_MAX; attempt++) {
      const placed = await this.read(name);
      if (placed !== null) {
        if (placed.node === this.self) return { owned: placed.ino };
        throw this.elsewhere(name, placed.node);
      }
      if (!redirected) {
        const chosen = this.choose(name);
        if (chosen !== null && chosen.name !== this.self) {
          this.redirects++;
          throw new NotOwnerError(name, chosen.name, chosen.grpc);
        }
      }
      const lease = this.lease();
      const won = await etcdCall(`claim of the placement of ${quoted(name)}`,
        () => this.etcd.if(key, 'Create', '==', 0).and(this.keys.node(this.self), 'Lease', '==', lease)
          .then(this.etcd.put(key).value(placementValue(this.self, 0))).commit());
      if (won.succeeded) return 'claimed';
      await this.assertLeaseHeld(lease, `claim of ${quoted(name)}`);
    }
    throw new Error(`bug: the placement of a name changed ${CLAIM_ATTEMPTS_MAX} times during one Create`);
  }

  /**
   * Step 4: the key names the file's inode, only if it still is what this Create found
   * (`fromIno`: 0 for the key it claimed, else the inode it named): a key changed
   * meanwhile is never overwritten. Placed elsewhere now: throws NotOwnerError /
   * NodeDownError (the local file stays; the reconcile pass reports it as a conflict).
   * Removed (unlinked meanwhile) or naming SELF with another inode: nothing to record.
   */
  async finishCreate(name: string, ino: number, fromIno = 0): Promise<void> {
    const key = this.keys.file(name);
    const done = await etcdCall(`record of the inode in the placement of ${quoted(name)} (the file exists; the node's next start records it)`,
      () => this.etcd.if(key, 'Value', '==', placementValue(this.self, fromIno)).then(this.etcd.put(key).value(placementValue(this.self, ino))).commit());
    if (done.succeeded) return;
    const placed = await this.read(name);
    if (placed !== null && placed.node !== this.self) throw this.elsewhere(name, placed.node);
  }

  /** Step 4 failed and no file exists here: remove the key this Create made. */
  async abandonCreate(name: string): Promise<void> {
    const key = this.keys.file(name);
    await etcdCall(`removal of the placement of ${quoted(name)}`,
      () => this.etcd.if(key, 'Value', '==', placementValue(this.self, 0)).then(this.etcd.delete().key(key)).commit());
  }

  /** Unlink: throws NotOwnerError / NodeDownError when the name is placed elsewhere. */
  async checkUnlink(name: string): Promise<void> {
    const placed = await this.read(name);
    if (placed !== null && placed.node !== this.self) throw this.elsewhere(name, placed.node);
  }

  /**
   * After the local unlink of `ino`: remove the key if it still names SELF and that inode
   * (or 0: its Create had not recorded the inode yet), whatever a drain added to it
   * (`moving`, `from`), while this node's lease holds it: compared by its revision, so a key
   * changed meanwhile stays.
   */
  async unlinked(name: string, ino: number): Promise<void> {
    const key = this.keys.file(name);
    const lease = this.lease();
    const got = await etcdCall(`read of the placement of unlinked ${quoted(name)}`, () => this.etcd.get(key).exec());
    const kv = got.kvs[0];
    if (kv === undefined) return;
    const placed = parsePlacementRecord(kv.value.toString('utf8'));
    if (placed === null || placed.node !== this.self || (placed.ino !== ino && placed.ino !== 0)) return;
    const removed = await etcdCall(`removal of the placement of ${quoted(name)} (the file is unlinked; the node's next start removes the placement)`,
      () => this.etcd.if(key, 'Mod', '==', kv.mod_revision).and(this.keys.node(this.self), 'Lease', '==', lease)
        .then(this.etcd.delete().key(key)).commit());
    if (removed.succeeded) return;
    await this.assertLeaseHeld(lease, `removal of the placement of unlinked ${quoted(name)}: the node's next start removes it`);
  }

  /** Lookup routing from the cache: throws when the name is placed elsewhere. */
  checkRead(name: string): void {
    const placed = this.cache.files.get(name);
    if (placed !== undefined && placed.node !== this.self) throw this.elsewhere(name, placed.node);
  }

  /** A local ENOENT: is the name placed elsewhere after all (the cache lagging)? Throws if so. */
  async confirmAbsent(name: string): Promise<void> {
    const placed = await this.read(name);
    if (placed !== null && placed.node !== this.self) throw this.elsewhere(name, placed.node);
  }
}
