/**
 * A node's registration and self-fencing.
 *
 * Registration: one etcd lease of TTL seconds; in one transaction, PREFIX/nodes/NAME and
 * PREFIX/volumes/UUID are put under it only if both are absent (and the name's binding to
 * a volume, binding.ts, is put without a lease, only if it is what checkBinding read).
 * Either held means a live process has that name or that volume (a copy of the volume,
 * or the same volume re-attached elsewhere): the start is refused with EBUSY naming the
 * holder. A holder that is this node's own previous run (same name, same volume: a crash
 * and a quick restart) is waited out, for at most PREVIOUS_LEASE_WAIT_TTLS × TTL.
 *
 * Keep-alive: one LeaseKeepAlive every TTL/3 (TTL/10 after a failure), each with a
 * deadline of TTL/3. `lastRenewalSentAtMs` is when the last keep-alive that etcd answered
 * was SENT: etcd renewed the lease after that moment, so the lease lives at least until
 * lastRenewalSentAtMs + TTL, whatever the network did.
 *
 * Fencing (invariant): fenced is true from lastRenewalSentAtMs + ⅔ TTL until the next
 * answered keep-alive, computed at each check from the monotonic clock (performance.now),
 * so a call that runs after the event loop was blocked past that moment is refused even
 * though no timer has fired yet. So the node stops mutating at least ⅓ TTL before anybody
 * else can see its lease expire (etcd's clock aside). A keep-alive answered "lease expired" means
 * the registration is gone: the node registers again (same transaction) and stays fenced
 * until that succeeds. Reads are never fenced (the data is only here).
 *
 * `dropKeepAlives` (tests): keep-alives are not sent, as if etcd were unreachable.
 */
import { EtcdLeaseInvalidError, type Etcd3, type Lease } from 'etcd3';
import type { Logger } from 'pino';
import { BusyError } from '../errors';
import type { ClusterKeys, NodeRecord } from './keys';
import { bindingValue, parseNodeRecord, parseVolumeRecord } from './keys';
import { checkBinding } from './binding';
import { PREVIOUS_LEASE_WAIT_TTLS } from './limits';

const FENCE_FRACTION = 2 / 3;
const RENEW_FRACTION = 1 / 3;
const RETRY_FRACTION = 1 / 10;
/** Polling period while waiting out a previous run's lease at start. */
const PREVIOUS_LEASE_POLL_MS = 200;

export interface MembershipOptions {
  etcd: Etcd3;
  keys: ClusterKeys;
  ttlS: number;
  /** The current record (free space changes): re-put when it differs from the last one. */
  record: () => NodeRecord;
  log: Logger;
  /** Called on every change of the fenced state. */
  onFenced?: (fenced: boolean, why: string) => void;
}

export class Membership {
  private lease: Lease | null = null;
  private lastPut = '';
  private timer: NodeJS.Timeout | null = null;
  private fenceTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private fencedWhy: string | null = 'not registered yet';
  /** Test failpoint: when true, no keep-alive is sent. */
  dropKeepAlives = false;
  /** Send time of the last keep-alive (or grant) etcd answered. */
  lastRenewalSentAtMs = 0;
  /** performance.now() at which the node is fenced unless renewed before: that send time + ⅔ TTL, monotonic. */
  private fenceAtMono = 0;
  private leaseIdValue: string | null = null;
  /** When the node last became fenced (ms), for logs and tests. */
  fencedAtMs = 0;
  renewals = 0;

  constructor(private readonly options: MembershipOptions) {}

  get fenced(): boolean {
    return this.fenceReason !== null;
  }

  /**
   * Why mutations are refused now, or null. Computed from the monotonic clock at each
   * call: a timer is only a notification (it fires late when the event loop was blocked,
   * and a call queued behind the block would run first).
   */
  get fenceReason(): string | null {
    if (this.fencedWhy === null && performance.now() >= this.fenceAtMono) this.setFenced(`no lease renewal for ${Math.round(this.ttlMs * FENCE_FRACTION)} ms`);
    return this.fencedWhy;
  }

  /** The registration's lease (decimal), null while not registered: placement transactions compare it. */
  get leaseId(): string | null {
    return this.leaseIdValue;
  }

  private get ttlMs(): number {
    return this.options.ttlS * 1000;
  }

  /** Registers (refused with BusyError while another live process holds the name or volume), then keeps the lease alive. */
  async start(): Promise<void> {
    await this.register(true);
    this.schedule(this.ttlMs * RENEW_FRACTION);
  }

  /** Stops the keep-alives and revokes the lease (the node leaves at once). Idempotent. */
  async stop(withinMs = this.ttlMs * RENEW_FRACTION): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.fenceTimer !== null) clearTimeout(this.fenceTimer);
    const lease = this.lease;
    this.lease = null;
    this.leaseIdValue = null;
    if (lease !== null) {
      try {
        await lease.revoke({ deadline: Date.now() + Math.min(withinMs, this.ttlMs * RENEW_FRACTION) });
      } catch (err) {
        this.options.log.warn({ err: String(err) }, 'cluster: could not revoke the lease at stop (it expires by itself)');
      }
    }
  }

  private setFenced(why: string | null): void {
    if ((why === null) === (this.fencedWhy === null)) {
      this.fencedWhy = why;
      return;
    }
    this.fencedWhy = why;
    if (why !== null) this.fencedAtMs = Date.now();
    this.options.onFenced?.(why !== null, why ?? 'registered');
  }

  /** After an answered renewal sent at sentAtMs (sentMono: performance.now() then): unfence, and fence again at ⅔ TTL after it. */
  private renewed(sentAtMs: number, sentMono: number): void {
    this.lastRenewalSentAtMs = sentAtMs;
    this.fenceAtMono = sentMono + this.ttlMs * FENCE_FRACTION;
    this.renewals++;
    if (this.fenceTimer !== null) clearTimeout(this.fenceTimer);
    const fenceInMs = this.fenceAtMono - performance.now();
    this.fenceTimer = setTimeout(() => this.setFenced(`no lease renewal for ${Math.round(this.ttlMs * FENCE_FRACTION)} ms`), Math.max(0, fenceInMs));
    this.fenceTimer.unref();
    if (fenceInMs > 0) this.setFenced(null);
  }

  private async register(atStart: boolean): Promise<void> {
    const { etcd, keys, log } = this.options;
    const record = this.options.record();
    const deadlineMs = Date.now() + this.ttlMs * PREVIOUS_LEASE_WAIT_TTLS;
    for (;;) {
      // The name's binding to a volume (binding.ts): refused here if bound to another one placements need.
      const bound = await checkBinding(etcd, keys, record.name, record.volumeUuid, log);
      const bindingKey = keys.binding(record.name);
      const sentAtMs = Date.now();
      const sentMono = performance.now();
      const lease = etcd.lease(this.options.ttlS, { autoKeepAlive: false });
      lease.on('lost', () => undefined); // handled where keepaliveOnce fails
      const id = await lease.grant();
      const value = JSON.stringify(record);
      const nodeKey = keys.node(record.name);
      const volumeKey = keys.volume(record.volumeUuid);
      const registered = etcd.if(nodeKey, 'Create', '==', 0).and(volumeKey, 'Create', '==', 0);
      const result = await (bound === null ? registered.and(bindingKey, 'Create', '==', 0) : registered.and(bindingKey, 'Value', '==', bound))
        .then(etcd.put(nodeKey).value(value).lease(id), etcd.put(volumeKey).value(JSON.stringify({ node: record.name })).lease(id),
          etcd.put(bindingKey).value(bindingValue(record.volumeUuid)))
        .commit();
      if (result.succeeded) {
        this.lease = lease;
        this.leaseIdValue = id;
        this.lastPut = value;
        log.info({ node: record.name, volume: record.volumeUuid, lease: id, ttlS: this.options.ttlS }, 'cluster: registered');
        this.renewed(sentAtMs, sentMono);
        return;
      }
      await lease.revoke().catch(() => undefined);
      const [nodeValue, volumeValue] = await Promise.all([etcd.get(nodeKey).string(), etcd.get(volumeKey).string()]);
      const holder = nodeValue === null ? null : parseNodeRecord(nodeValue);
      const volumeHolder = volumeValue === null ? null : parseVolumeRecord(volumeValue);
      // Our own previous run (crashed, its lease not expired yet): wait it out, bounded.
      const previousRun = (nodeValue === null || holder?.volumeUuid === record.volumeUuid) && (volumeValue === null || volumeHolder?.node === record.name);
      if (atStart && previousRun && Date.now() < deadlineMs && !this.stopped) {
        log.info({ node: record.name }, 'cluster: the previous registration of this node and volume is still leased: waiting for it to expire');
        await new Promise((r) => setTimeout(r, PREVIOUS_LEASE_POLL_MS));
        continue;
      }
      if (nodeValue !== null && holder?.volumeUuid !== record.volumeUuid) {
        throw new BusyError(`node name ${record.name} is held by a live registration (volume ${holder?.volumeUuid ?? '?'}, grpc ${holder?.grpc ?? '?'})`);
      }
      if (volumeValue !== null && volumeHolder?.node !== record.name) {
        throw new BusyError(`volume ${record.volumeUuid} is held by live node ${volumeHolder?.node ?? '?'}`);
      }
      throw new BusyError(`node ${record.name} with volume ${record.volumeUuid} is registered by another live process`);
    }
  }

  /** Re-puts the record now when it changed (a drain's progress); a no-op while not registered. */
  async publish(): Promise<void> {
    const lease = this.lease;
    if (lease === null || this.stopped) return;
    const record = this.options.record();
    const value = JSON.stringify(record);
    if (value === this.lastPut) return;
    await lease.put(this.options.keys.node(record.name)).value(value);
    this.lastPut = value;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  /** One keep-alive (or re-registration); never throws, always schedules the next. */
  private async tick(): Promise<void> {
    if (this.stopped) return;
    let nextMs = this.ttlMs * RENEW_FRACTION;
    try {
      if (this.dropKeepAlives) return;
      if (this.lease === null) {
        await this.register(false);
        return;
      }
      const sentAtMs = Date.now();
      const sentMono = performance.now();
      try {
        const res = await this.lease.keepaliveOnce({ deadline: sentAtMs + this.ttlMs * RENEW_FRACTION });
        if (Number(res.TTL) <= 0) throw new EtcdLeaseInvalidError(String(res.ID));
      } catch (err) {
        if (!(err instanceof EtcdLeaseInvalidError)) throw err;
        this.options.log.warn('cluster: the lease expired: registering again');
        this.lease = null;
        this.leaseIdValue = null;
        this.setFenced('lease expired');
        await this.register(false);
        return;
      }
      this.renewed(sentAtMs, sentMono);
      const record = JSON.stringify(this.options.record());
      if (record !== this.lastPut) {
        await this.lease.put(this.options.keys.node(this.options.record().name)).value(record);
        this.lastPut = record;
      }
    } catch (err) {
      nextMs = this.ttlMs * RETRY_FRACTION;
      this.options.log.warn({ err: err instanceof Error ? err.message : String(err), fenced: this.fenced }, 'cluster: lease keep-alive failed');
    } finally {
      this.schedule(nextMs);
    }
  }
}
