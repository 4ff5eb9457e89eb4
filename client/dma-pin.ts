/**
 * DmaPin: pages of a file pinned for DMA (get_user_pages over the network; S4, S7).
 *
 *   const pin = await client.pin(ino, 0, 4, { writable: true });
 *   await pin.dmaWrite(0, 0, data);           // goes to the pinned block
 *   const back = await pin.dmaRead(0, 0, 4096);
 *   await pin.unpin();
 *
 * DMA by pin goes to the pinned blocks, not to the file: it stays valid whatever the
 * file's layout does, until unpin or revocation. A truncate / punch / zero / collapse over
 * a pinned page waits for the unpin (layout_break WAIT), fails (FAIL) or recalls the pin
 * (RECALL): the server sends PinRecall, waits a grace period, then revokes.
 *
 * Lifecycle (`state`):
 *   active --PinRecall--> recalled --unpin()--> unpinned
 *      |                     |
 *      +------ revocation ---+--> revoked (grace over, lease lost, session ended)
 * - The lease is renewed by itself (Dma.Renew at half the lease) until unpin or revocation.
 * - On PinRecall, `onRecall(pin, revokeAtMs)` runs. The default stops new DMA on this pin
 *   (they throw PinRevokedError at once), waits for the DMA in flight on it (at most
 *   until revokeAtMs) and unpins: the layout change goes on before the grace runs out.
 * - A revoked pin's DMA throws PinRevokedError (ABORTED / PIN_REVOKED). unpin() on a
 *   revoked pin still gives its slot back to the server (revoked pins count against the
 *   session's pin limit until unpinned).
 * Events (EventEmitter): 'recall' (revokeAtMs), 'revoked' (PinRevokedError),
 * 'renewed' (leaseMs), 'renewFailed' (DaxClientError; renewal goes on), 'recallFailed'
 * (the onRecall handler threw or rejected).
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { DaxClientError } from './errors';
import type { DmaClient } from '../wire/generated/daxd/v1/Dma';
import type { DmaReadResponse__Output } from '../wire/generated/daxd/v1/DmaReadResponse';
import type { PinResponse__Output } from '../wire/generated/daxd/v1/PinResponse';
import { RETRY_BACKOFF_MS } from './limits';
import type { DaxSession } from './session';
import { callUnary } from './unary-call';

/** PinRecall / PinRevoked events remembered for pins whose Pin reply has not arrived yet. */
const EARLY_PIN_EVENTS_MAX = 256;

export type DmaPinState = 'active' | 'recalled' | 'unpinned' | 'revoked';

/** What to do on PinRecall; the pin is revoked at revokeAtMs (server clock, ms since epoch). */
export type RecallHandler = (pin: DmaPin, revokeAtMs: number) => void | Promise<void>;

export interface PinOptions {
  /** Writable pins allocate (pre-zeroed) and accept DMA writes. Default false. */
  writable?: boolean;
  /** Default: wait for the DMA in flight on this pin, then unpin (see the file comment). */
  onRecall?: RecallHandler;
}

export interface PinCallDefaults {
  deadlineMs: number;
  retries: number;
  /** The client's Dma.Stream path (dma-stream.ts), for streamRead / streamWrite. */
  stream?: PinStreamPath;
}

/** What DmaPin needs of DmaStream (declared here: dma-stream.ts imports this file). */
export interface PinStreamPath {
  op(session: DaxSession, op: {
    pinId: string;
    read?: { page: number; offset: number; length: number };
    write?: { page: number; offset: number; data: Uint8Array };
  }): Promise<{ data: Buffer }>;
}

/** A DMA on a revoked (or recalled and being given back) pin: ABORTED / PIN_REVOKED. */
export class PinRevokedError extends DaxClientError {
  constructor(readonly pinId: string, details: string) {
    super(grpc.status.ABORTED, 'PIN_REVOKED', details.startsWith('PIN_REVOKED:') ? details : `PIN_REVOKED: ${details}`);
    this.name = 'PinRevokedError';
  }
}

interface EarlyEvent {
  revokeAtMs?: number;
  revoked?: boolean;
}

/**
 * The pins of one session, and the one listener per session that routes PinRecall /
 * PinRevoked to them (the Events stream and a Pin reply travel on different HTTP/2
 * streams: an event may come first, so unknown ids are remembered, bounded).
 */
class SessionPins {
  readonly pins = new Map<string, DmaPin>();
  private readonly early = new Map<string, EarlyEvent>();
  private ended = false;

  constructor(session: DaxSession) {
    session.on('pinRecall', (e: { pinId: string; revokeAtMs: number }) => {
      const pin = this.pins.get(e.pinId);
      if (pin) pin.recalled(e.revokeAtMs);
      else this.remember(e.pinId, { revokeAtMs: e.revokeAtMs });
    });
    session.on('pinRevoked', (e: { pinId: string }) => {
      const pin = this.pins.get(e.pinId);
      if (pin) pin.revoked('the server revoked the pin (RECALL grace over or lease lost)');
      else this.remember(e.pinId, { revoked: true });
    });
    for (const end of ['closed', 'expired', 'ended'] as const) {
      session.once(end, () => {
        this.ended = true;
        for (const pin of [...this.pins.values()]) pin.revoked(`session ${session.id} ${end}: the server released its pins`);
      });
    }
  }

  add(pin: DmaPin): void {
    if (this.ended) {
      pin.revoked('the session ended while the pin was being taken');
      return;
    }
    this.pins.set(pin.id, pin);
    const early = this.early.get(pin.id);
    if (!early) return;
    this.early.delete(pin.id);
    if (early.revokeAtMs !== undefined) pin.recalled(early.revokeAtMs);
    if (early.revoked) pin.revoked('the server revoked the pin');
  }

  remove(pin: DmaPin): void {
    if (this.pins.get(pin.id) === pin) this.pins.delete(pin.id);
  }

  private remember(pinId: string, event: EarlyEvent): void {
    const prior = this.early.get(pinId);
    this.early.delete(pinId);
    this.early.set(pinId, { ...prior, ...event });
    // Oldest first: an id no Pin reply ever claims (a pin taken outside the SDK) ages out.
    while (this.early.size > EARLY_PIN_EVENTS_MAX) this.early.delete(this.early.keys().next().value as string);
  }
}

const registries = new WeakMap<DaxSession, SessionPins>();

function registryOf(session: DaxSession): SessionPins {
  let r = registries.get(session);
  if (!r) registries.set(session, (r = new SessionPins(session)));
  return r;
}

function assertIndex(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${what} must be a non-negative safe integer, got ${value}`);
}

export class DmaPin extends EventEmitter {
  readonly id: string;
  /** Per pinned page, its block (0: the zero page of a read-only pin over a hole). */
  readonly pfns: readonly number[];
  private stateValue: DmaPinState = 'active';
  private leaseMsValue: number;
  private renewTimer: NodeJS.Timeout | null = null;
  private inflightCount = 0;
  private readonly drainWaiters: Array<() => void> = [];
  /** Set by the default recall handler: new DMA is refused locally. */
  private givingBack = false;
  private unpinning: Promise<void> | null = null;
  private revokedError: PinRevokedError | null = null;
  private readonly onRecall: RecallHandler;

  private constructor(
    private readonly dma: DmaClient,
    readonly session: DaxSession,
    private readonly defaults: PinCallDefaults,
    readonly ino: number,
    readonly firstPgoff: number,
    readonly writable: boolean,
    reply: PinResponse__Output,
    onRecall: RecallHandler | undefined,
  ) {
    super();
    this.id = reply.pin_id;
    this.pfns = reply.pfns.map(Number);
    this.leaseMsValue = Number(reply.lease_ms);
    this.onRecall = onRecall ?? ((pin, revokeAtMs) => pin.giveBack(revokeAtMs));
  }

  /**
   * Pin [firstPgoff, firstPgoff + npages) of file `ino` in `session` (Dma.Pin).
   * Errors: ELIMIT (too many pages or pins), SIGBUS (past EOF), EFAULT (writable pin of
   * pages this session maps read-only), ENOENT (no such file).
   */
  static async pin(dma: DmaClient, session: DaxSession, ino: number, firstPgoff: number, npages: number, options: PinOptions, defaults: PinCallDefaults): Promise<DmaPin> {
    assertIndex(ino, 'ino');
    assertIndex(firstPgoff, 'firstPgoff');
    assertIndex(npages, 'npages');
    const registry = registryOf(session);
    const writable = options.writable ?? false;
    const reply: PinResponse__Output = await callUnary(
      (req, md, opts, cb) => dma.Pin(req, md, opts, cb),
      { session_id: session.id, ino, first_pgoff: firstPgoff, npages, writable },
      // Not idempotent: a retried Pin whose first attempt ran would leak that pin until the lease.
      { deadlineMs: defaults.deadlineMs, idempotent: false, retries: 0, backoffMs: RETRY_BACKOFF_MS },
    );
    const pin = new DmaPin(dma, session, defaults, ino, firstPgoff, writable, reply, options.onRecall);
    registry.add(pin);
    if (pin.stateValue === 'active' || pin.stateValue === 'recalled') pin.scheduleRenew();
    return pin;
  }

  get state(): DmaPinState {
    return this.stateValue;
  }

  get npages(): number {
    return this.pfns.length;
  }

  /** The lease the server granted (ms); renewed at half of it. */
  get leaseMs(): number {
    return this.leaseMsValue;
  }

  /** DMA calls on this pin that have not returned yet. */
  get inflight(): number {
    return this.inflightCount;
  }

  /** Read `length` bytes at `offset` of pinned page `page` (an index into the pin's pages). */
  async dmaRead(page: number, offset: number, length: number): Promise<Buffer> {
    assertIndex(page, 'page');
    assertIndex(offset, 'offset');
    assertIndex(length, 'length');
    const reply: DmaReadResponse__Output = await this.dmaCall((req, md, opts, cb) => this.dma.Read(req, md, opts, cb), {
      session_id: this.session.id, pin_id: this.id, page, offset, length,
    });
    return reply.data;
  }

  /** Write `data` at `offset` of pinned page `page`; a read-only pin gets EFAULT. */
  async dmaWrite(page: number, offset: number, data: Uint8Array): Promise<void> {
    assertIndex(page, 'page');
    assertIndex(offset, 'offset');
    await this.dmaCall((req, md, opts, cb) => this.dma.Write(req, md, opts, cb), {
      session_id: this.session.id, pin_id: this.id, page, offset, data,
    });
  }

  /**
   * Read `length` bytes from `offset` of pinned page `page` on, over Dma.Stream: the range
   * may span the pin's pages (at most 4 MiB), and concurrent calls share messages.
   */
  async streamRead(page: number, offset: number, length: number): Promise<Buffer> {
    assertIndex(page, 'page');
    assertIndex(offset, 'offset');
    assertIndex(length, 'length');
    return (await this.streamCall({ pinId: this.id, read: { page, offset, length } })).data;
  }

  /** Write `data` from `offset` of pinned page `page` on, over Dma.Stream (may span pages). */
  async streamWrite(page: number, offset: number, data: Uint8Array): Promise<void> {
    assertIndex(page, 'page');
    assertIndex(offset, 'offset');
    await this.streamCall({ pinId: this.id, write: { page, offset, data } });
  }

  /**
   * Drop the pin (Dma.Unpin): layout changes waiting for it go on. Idempotent; on a revoked
   * pin it frees the server's slot and ignores "already gone" answers.
   */
  unpin(): Promise<void> {
    if (this.unpinning === null) this.unpinning = this.runUnpin();
    return this.unpinning;
  }

  /** Renew the lease now (also done automatically at half the lease). */
  async renew(): Promise<void> {
    this.throwIfRevoked();
    try {
      const reply: PinResponse__Output = await callUnary(
        (req, md, opts, cb) => this.dma.Renew(req, md, opts, cb),
        { session_id: this.session.id, pin_id: this.id },
        { deadlineMs: Math.min(this.defaults.deadlineMs, Math.max(1, this.leaseMsValue)), idempotent: true, retries: this.defaults.retries, backoffMs: RETRY_BACKOFF_MS },
      );
      this.leaseMsValue = Number(reply.lease_ms);
      this.emit('renewed', this.leaseMsValue);
    } catch (err) {
      throw this.translate(err);
    }
  }

  /** Resolves once no DMA is in flight on this pin, or after maxWaitMs (whichever first). */
  drained(maxWaitMs = Infinity): Promise<void> {
    if (this.inflightCount === 0) return Promise.resolve();
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        if (timer) clearTimeout(timer);
        resolve();
      };
      this.drainWaiters.push(done);
      if (Number.isFinite(maxWaitMs)) timer = setTimeout(done, Math.max(0, maxWaitMs));
    });
  }

  /**
   * The default recall handler: refuse new DMA, let the DMA in flight finish (until
   * revokeAtMs at most: past it the server refuses it anyway), then unpin.
   */
  async giveBack(revokeAtMs: number): Promise<void> {
    this.givingBack = true;
    await this.drained(revokeAtMs - Date.now());
    await this.unpin();
  }

  // ---- called by SessionPins -----------------------------------------------------

  /** @internal PinRecall for this pin. */
  recalled(revokeAtMs: number): void {
    if (this.stateValue !== 'active') return;
    this.stateValue = 'recalled';
    this.emit('recall', revokeAtMs);
    Promise.resolve()
      .then(() => this.onRecall(this, revokeAtMs))
      .catch((err: unknown) => this.emit('recallFailed', err));
  }

  /** @internal The server revoked the pin, or the session ended. */
  revoked(why: string): void {
    if (this.stateValue === 'revoked' || this.stateValue === 'unpinned') return;
    this.stateValue = 'revoked';
    this.revokedError = new PinRevokedError(this.id, `pin ${this.id}: ${why}`);
    this.stopRenew();
    registryOf(this.session).remove(this);
    this.emit('revoked', this.revokedError);
  }

  // ---- internals -------------------------------------------------------------------

  private async dmaCall<Req, Res>(method: (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: grpc.requestCallback<Res>) => grpc.ClientUnaryCall, request: Req): Promise<Res> {
    this.throwIfRevoked();
    if (this.givingBack) throw new PinRevokedError(this.id, `pin ${this.id} was recalled and is being given back: no new DMA`);
    if (this.stateValue === 'unpinned') throw new DaxClientError(grpc.status.NOT_FOUND, 'ENOENT', `pin ${this.id} was unpinned`);
    this.inflightCount++;
    try {
      // DMA to the same bytes of a pinned block may run twice: retried on UNAVAILABLE.
      return await callUnary(method, request, { deadlineMs: this.defaults.deadlineMs, idempotent: true, retries: this.defaults.retries, backoffMs: RETRY_BACKOFF_MS });
    } catch (err) {
      throw this.translate(err);
    } finally {
      this.inflightCount--;
      if (this.inflightCount === 0) for (const done of this.drainWaiters.splice(0)) done();
    }
  }

  /** As dmaCall, over the client's Dma.Stream (not retried: the pipeline's rule). */
  private async streamCall(op: Parameters<PinStreamPath['op']>[1]): Promise<{ data: Buffer }> {
    const stream = this.defaults.stream;
    if (stream === undefined) throw new Error('bug: DmaPin without the client\'s Dma.Stream path');
    this.throwIfRevoked();
    if (this.givingBack) throw new PinRevokedError(this.id, `pin ${this.id} was recalled and is being given back: no new DMA`);
    if (this.stateValue === 'unpinned') throw new DaxClientError(grpc.status.NOT_FOUND, 'ENOENT', `pin ${this.id} was unpinned`);
    this.inflightCount++;
    try {
      return await stream.op(this.session, op);
    } catch (err) {
      // DmaStream already typed it: mark this pin revoked as translate() does for the unary path.
      if (err instanceof PinRevokedError) {
        this.revoked('the server refused the DMA: the pin was revoked');
        throw new PinRevokedError(this.id, err.details);
      }
      throw this.translate(err);
    } finally {
      this.inflightCount--;
      if (this.inflightCount === 0) for (const done of this.drainWaiters.splice(0)) done();
    }
  }

  private async runUnpin(): Promise<void> {
    const wasRevoked = this.stateValue === 'revoked';
    this.stopRenew();
    if (!wasRevoked) this.stateValue = 'unpinned';
    registryOf(this.session).remove(this);
    try {
      await callUnary(
        (req, md, opts, cb) => this.dma.Unpin(req, md, opts, cb),
        { session_id: this.session.id, pin_id: this.id },
        // Not retried: a second Unpin after a first that ran is ENOENT.
        { deadlineMs: this.defaults.deadlineMs, idempotent: false, retries: 0, backoffMs: RETRY_BACKOFF_MS },
      );
    } catch (err) {
      // A revoked pin's session may be gone (the server released everything): nothing to give back.
      if (wasRevoked && err instanceof DaxClientError && ['ENOENT', 'SESSION_EXPIRED', 'SESSION_UNKNOWN'].includes(err.reason ?? '')) return;
      throw this.translate(err);
    }
  }

  private throwIfRevoked(): void {
    if (this.revokedError) throw this.revokedError;
  }

  /** PIN_REVOKED from the server becomes PinRevokedError, and the pin is marked revoked. */
  private translate(err: unknown): unknown {
    if (!(err instanceof DaxClientError) || err instanceof PinRevokedError) return err;
    if (err.reason === 'PIN_REVOKED') {
      this.revoked('the server refused the DMA: the pin was revoked');
      return new PinRevokedError(this.id, err.details);
    }
    return err;
  }

  private scheduleRenew(): void {
    this.stopRenew();
    const periodMs = Math.max(1, Math.floor(this.leaseMsValue / 2));
    this.renewTimer = setTimeout(() => {
      this.renewTimer = null;
      if (this.stateValue !== 'active' && this.stateValue !== 'recalled') return;
      this.renew().then(
        () => { if (this.stateValue === 'active' || this.stateValue === 'recalled') this.scheduleRenew(); },
        (err: unknown) => {
          if (err instanceof DaxClientError && ['ENOENT', 'SESSION_EXPIRED', 'SESSION_UNKNOWN'].includes(err.reason ?? '')) {
            this.revoked(`renewal failed: ${err.message}`);
            return;
          }
          if (err instanceof PinRevokedError) return;
          this.emit('renewFailed', err);
          if (this.stateValue === 'active' || this.stateValue === 'recalled') this.scheduleRenew();
        },
      );
    }, periodMs);
    this.renewTimer.unref();
  }

  private stopRenew(): void {
    if (this.renewTimer !== null) clearTimeout(this.renewTimer);
    this.renewTimer = null;
  }
}
