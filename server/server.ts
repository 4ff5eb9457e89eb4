/**
 * A running daxd: one volume, mounted, served over gRPC.
 *
 * Lifecycle: start() opens (or creates) and mounts the volume, which takes the volume
 * lock (a second daxd on the same file fails with EBUSY), starts the gRPC server and logs
 * one line naming the bound addresses. stop() stops accepting calls, lets the in-flight
 * ones finish (bounded), ends every session, then unmounts: sync (fsync of every file and
 * a journal commit), clean flag, unmap, lock released. Killing the process at any point
 * instead is safe: the journal replays at the next mount.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { Dax } from './dax/dax';
import type { FileSystem } from './fs/filesystem';
import type { HttpDeps, MetricsAuth } from './http/deps';
import { startHttpServer, type HttpServer } from './http/http-server';
import { Metrics } from './metrics';
import { nbdObserver } from './nbd-metrics';
import { NbdServer, type NbdServerOptions } from './nbd/nbd-server';
import { SHUTDOWN_GRACE_MS } from './rpc/limits';
import { RpcServer } from './rpc/rpc-server';
import { daxObserver, observeJournal } from './slow-ops';
import { openVolume } from './volume';
import type { Authenticator } from './auth/authenticator';

/** package.json's version (reported by /api/v1/volume): the nearest one above this module. */
function packageVersion(): string {
  for (let dir = __dirname; path.dirname(dir) !== dir; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
  }
  return 'unknown';
}

export interface DaxdOptions {
  volumePath: string;
  /** Size of the volume when it has to be created. */
  sizeBytes: number;
  /** host:port; port 0 picks a free port. */
  grpcAddress: string;
  /** host:port of metrics, admin API and dashboard (port 0 picks one); none when absent. */
  httpAddress?: string;
  log: Logger;
  shutdownGraceMs?: number;
  /** Tests only: enable failpoints (server/dax/failpoints.ts). */
  failpoints?: boolean;
  /** Tests only: the RECALL grace period (default PIN_RECALL_GRACE_MS). */
  recallGraceMs?: number;
  /** host:port of the NBD export (port 0 picks one); none when absent (`daxd serve` defaults it on). */
  nbdAddress?: string;
  /** The file the empty NBD export name means. */
  nbdDefaultExport?: string;
  /** What NBD TRIM / WRITE_ZEROES do over a pinned page (default WAIT). */
  nbdLayoutBreak?: NbdServerOptions['layoutBreak'];
  /** Tests only: smaller NBD limits. */
  nbdLimits?: NbdServerOptions['limits'];
  /** Who may call (`--auth FILE`, server/auth); absent = auth off (every call is an admin: loopback zero-config). */
  auth?: Authenticator;
  /** `--metrics-auth`: /metrics open (none, the default) or for any principal's token (token; needs auth). */
  metricsAuth?: MetricsAuth;
}

export class Daxd {
  private stopping: Promise<void> | null = null;
  private mounted = true;

  private constructor(
    readonly fs: FileSystem,
    readonly dax: Dax,
    readonly rpc: RpcServer,
    readonly metrics: Metrics,
    private readonly options: DaxdOptions,
  ) {}

  /** The HTTP side (server/http), when started with an httpAddress. */
  http: HttpServer | null = null;

  /** The NBD export (server/nbd), when started with an nbdAddress. */
  nbd: NbdServer | null = null;

  /** host:port of the NBD side, or null without one. */
  get nbdAddress(): string | null {
    return this.nbd?.address ?? null;
  }

  /** The authenticator (--auth), or null with auth off. */
  get auth(): Authenticator | null {
    return this.options.auth ?? null;
  }

  get grpcAddress(): string {
    return this.rpc.address;
  }

  /** host:port of the HTTP side, or null without one. */
  get httpAddress(): string | null {
    return this.http?.address ?? null;
  }

  static async start(options: DaxdOptions): Promise<Daxd> {
    const { log } = options;
    const volume = await openVolume(options.volumePath, options.sizeBytes);
    const metrics = new Metrics();
    const dax = new Dax(volume.fs, {
      failpoints: options.failpoints ?? false, recallGraceMs: options.recallGraceMs, observer: daxObserver(metrics, log),
    });
    observeJournal(volume.fs.journal, metrics);
    let rpc: RpcServer;
    try {
      rpc = await RpcServer.start({ fs: volume.fs, dax, log, address: options.grpcAddress, metrics, auth: options.auth ?? null });
    } catch (err) {
      await volume.fs.unmount();
      throw err;
    }
    metrics.attach({ fs: volume.fs, dax, sessions: rpc.sessions, streamMemory: rpc.streamMemory });
    const daxd = new Daxd(volume.fs, dax, rpc, metrics, options);
    if (options.nbdAddress !== undefined) {
      try {
        daxd.nbd = await NbdServer.start({
          fs: volume.fs, dax, log, address: options.nbdAddress, defaultExport: options.nbdDefaultExport, layoutBreak: options.nbdLayoutBreak,
          limits: options.nbdLimits,
          // Connections, request durations, and NBD I/O with the other paths (daxd_io_*{path="nbd"}).
          observer: nbdObserver(metrics),
        });
      } catch (err) {
        await daxd.stop();
        throw err;
      }
    }
    if (options.httpAddress !== undefined) {
      try {
        daxd.http = await startHttpServer(daxd.httpDeps(volume.report), log, options.httpAddress);
      } catch (err) {
        await daxd.stop();
        throw err;
      }
    }
    const { replay, wasClean, orphansFreed, mountMs } = volume.report;
    log.info({
      grpc: rpc.address, http: daxd.httpAddress, nbd: daxd.nbdAddress, volume: options.volumePath, created: volume.created,
      auth: options.auth === undefined ? 'off' : `${options.auth.principals.length} principals`,
      wasClean, replayed: replay, orphansFreed, mountMs: Math.round(mountMs),
    }, 'daxd serving');
    return daxd;
  }

  private httpDeps(mount: HttpDeps['facts']['mount']): HttpDeps {
    const facts = {
      version: packageVersion(), volumePath: this.options.volumePath, grpcAddress: this.rpc.address, httpAddress: '',
      startedAtMs: Date.now(), mount,
    };
    return {
      fs: this.fs, dax: this.dax, sessions: this.rpc.sessions, metrics: this.metrics, facts,
      nbd: this.nbd, auth: this.auth, metricsAuth: this.options.metricsAuth ?? 'none',
      // Mount replays the journal before it returns, so a mounted volume is a replayed one.
      readiness: () => ({ volumeMounted: this.mounted, journalReplayed: this.mounted, acceptingCalls: this.rpc.accepting }),
    };
  }

  /** Graceful stop; idempotent. */
  stop(): Promise<void> {
    if (this.stopping === null) this.stopping = this.runStop();
    return this.stopping;
  }

  private async runStop(): Promise<void> {
    const { log } = this.options;
    log.info('daxd stopping: draining calls');
    // Both front ends drain at once; neither reaches the engine once both resolved.
    await Promise.all([this.rpc.stop(this.options.shutdownGraceMs), this.nbd?.stop(this.options.shutdownGraceMs ?? SHUTDOWN_GRACE_MS)]);
    // /readyz said 503 while calls drained; the HTTP side reads the volume, so it goes first.
    await this.http?.close();
    // Released failpoints cannot hold a shutdown; mapped dirty pages reach the medium.
    this.dax.failpoints.releaseAll();
    await this.dax.sync();
    this.mounted = false;
    await this.fs.unmount();
    log.info('daxd stopped: volume clean and unlocked');
  }
}
