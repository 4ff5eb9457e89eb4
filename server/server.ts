/**
 * A running daxd: one volume, mounted, served over gRPC.
 *
 * Lifecycle: start() opens (or creates) and mounts the volume, which takes the volume
 * lock (a second daxd on the same file fails with EBUSY), starts the gRPC server and logs
 * one line naming the bound addresses. stop() stops accepting calls, lets the in-flight
 * ones finish (bounded), ends every session, then unmounts: sync (fsync of every file and
 * a journal commit), clean flag, unmap, lock released. Killing the process at any point
 * instead is safe: the journal replays at the next mount.
 *
 * Before anything is opened, start() checks the binds (bind-policy.ts: beyond loopback
 * only with TLS and auth, or --insecure-allow-remote) and loads the TLS files
 * (tls/material.ts); either refuses the start with the flag at fault. `tls` is shared by
 * gRPC and HTTP (and is there for NBD's STARTTLS); reloadTls() swaps it on SIGHUP.
 */
import fs from 'node:fs';
import path from 'node:path';
import type tls from 'node:tls';
import type { Logger } from 'pino';
import { checkBindPolicy } from './bind-policy';
import { Dax } from './dax/dax';
import type { FileSystem } from './fs/filesystem';
import type { HttpDeps, MetricsAuth } from './http/deps';
import { startHttpServer, type HttpServer } from './http/http-server';
import { Metrics } from './metrics';
import { nbdObserver } from './nbd-metrics';
import { NbdServer, type NbdServerOptions, type NbdTlsMode, type NbdTlsOptions } from './nbd/nbd-server';
import { SHUTDOWN_GRACE_MS } from './rpc/limits';
import { RpcServer } from './rpc/rpc-server';
import { daxObserver, observeJournal } from './slow-ops';
import type { TlsConfig } from './tls/config';
import { TlsMaterial, type TlsReloadResult } from './tls/material';
import { openVolume } from './volume';
import { X509Certificate } from 'node:crypto';
import { pemCertificates, type Authenticator } from './auth/authenticator';
import { Cluster } from './cluster/cluster';
import type { ClusterConfig } from './cluster/config';
import { FencedFs, inodeGate } from './cluster/fenced-fs';
import { peerCredentials } from './cluster/peer';

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
  /** TLS for gRPC and HTTP (--tls-cert ...); plaintext when absent. */
  tls?: TlsConfig;
  /** Serve non-loopback binds without TLS and auth (--insecure-allow-remote): warned at every start. */
  insecureAllowRemote?: boolean;
  /** NBD_OPT_STARTTLS (--nbd-tls, server/nbd/starttls.ts); default off. on/require need nbdTlsContext. */
  nbdTls?: NbdTlsMode;
  /** The certificate NBD's STARTTLS presents, read at each upgrade (so a reload applies to the next one). */
  nbdTlsContext?: () => tls.SecureContext;
  /**
   * Client certificates over NBD TLS: none (not asked for), request (asked; a known one names the
   * principal), require (the handshake fails without one the context's CAs issued). Default request.
   */
  nbdTlsClientAuth?: 'none' | 'request' | 'require';
  /** `--metrics-auth`: /metrics open (none, the default) or for any principal's token (token; needs auth). */
  metricsAuth?: MetricsAuth;
  /** Join a cluster (--etcd ...; server/cluster, docs/CLUSTER.md); a lone server when absent. */
  cluster?: ClusterConfig;
}

/**
 * The NBD server's TLS options (undefined: off). The certificate is the server's TLS
 * material (read at each STARTTLS, so a SIGHUP reload applies to the next upgrade) and so
 * is the client-auth mode; tests may pass their own context instead.
 */
function nbdTlsOptions(options: DaxdOptions, material: TlsMaterial | null): NbdTlsOptions | undefined {
  const mode = options.nbdTls ?? 'off';
  if (mode === 'off') return undefined;
  const secureContext = options.nbdTlsContext ?? (material === null ? undefined : () => material.secureContext);
  if (secureContext === undefined) throw new Error(`nbdTls ${mode} needs --tls-cert (or nbdTlsContext)`);
  const clientAuth = options.nbdTlsClientAuth ?? material?.clientAuth ?? 'request';
  return { mode, secureContext, requestCert: clientAuth !== 'none', rejectUnauthorized: clientAuth === 'require' };
}

export class Daxd {
  private stopping: Promise<void> | null = null;
  private mounted = true;
  /** Daxd.start finished: every front end is up and a cluster node has joined. */
  private started = false;
  private draining = false;

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

  /** The cluster membership (--etcd), or null for a lone server. */
  cluster: Cluster | null = null;

  /** The TLS material (certificates, client-auth mode), when started with `tls`; reloadTls() re-reads it. */
  tls: TlsMaterial | null = null;

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
    // Before the volume is opened: a refused start touches nothing.
    const bindPolicy = checkBindPolicy({
      binds: { grpc: options.grpcAddress, http: options.httpAddress, nbd: options.nbdAddress },
      // NBD counts as TLS with --nbd-tls on or require: either way a client from beyond
      // loopback must STARTTLS before anything else (server/nbd/peer-access.ts).
      tls: { grpc: options.tls !== undefined, http: options.tls !== undefined, nbd: options.tls !== undefined && (options.nbdTls ?? 'off') !== 'off' },
      authEnabled: options.auth !== undefined,
      insecureAllowRemote: options.insecureAllowRemote ?? false,
    });
    if (bindPolicy.insecure) {
      log.warn({ remote: bindPolicy.remote }, 'serving beyond loopback without TLS and authentication (--insecure-allow-remote): anyone who reaches these ports can read, overwrite and delete every file');
    }
    // Throws TlsConfigError (naming the flag and file) before anything is opened.
    const tls = options.tls === undefined ? null : TlsMaterial.load(options.tls);
    if (tls !== null && options.auth !== undefined) {
      // Client certificates name principals only if they chain to the current --tls-ca
      // (checked again by the authenticator; parsed once per reload).
      let cached: { ca: Buffer | undefined; cas: X509Certificate[] } | null = null;
      options.auth.trust(() => {
        const ca = tls.current.options.ca;
        if (cached === null || cached.ca !== ca) cached = { ca, cas: pemCertificates(ca) };
        return cached.cas;
      });
    }
    const volume = await openVolume(options.volumePath, options.sizeBytes);
    const metrics = new Metrics();
    const dax = new Dax(volume.fs, {
      failpoints: options.failpoints ?? false, recallGraceMs: options.recallGraceMs, observer: daxObserver(metrics, log),
    });
    observeJournal(volume.fs.journal, metrics);
    // Fenced (mutations refused) until it has joined, below.
    const cluster = options.cluster === undefined ? null : new Cluster(options.cluster, volume.fs, log, packageVersion());
    // Cluster.Drain runs on the engine; its calls to other nodes use this node's TLS material.
    cluster?.enableDrain({ fs: volume.fs, dax, peerCredentials: () => peerCredentials(tls) });
    let rpc: RpcServer;
    try {
      rpc = await RpcServer.start({ fs: cluster === null ? volume.fs : new FencedFs(volume.fs, cluster), dax, log, address: options.grpcAddress, metrics, tls: tls ?? undefined, auth: options.auth ?? null, cluster });
    } catch (err) {
      await volume.fs.unmount();
      throw err;
    }
    metrics.attach({ fs: volume.fs, dax, sessions: rpc.sessions, streamMemory: rpc.streamMemory });
    const daxd = new Daxd(volume.fs, dax, rpc, metrics, options);
    daxd.tls = tls;
    daxd.cluster = cluster;
    if (cluster !== null) cluster.failpoints = dax.failpoints;
    if (cluster !== null) metrics.attachCluster(() => cluster.metrics());
    if (options.nbdAddress !== undefined) {
      try {
        daxd.nbd = await NbdServer.start({
          fs: volume.fs, dax, log, address: options.nbdAddress, defaultExport: options.nbdDefaultExport, layoutBreak: options.nbdLayoutBreak,
          limits: options.nbdLimits,
          // Connections, request durations, and NBD I/O with the other paths (daxd_io_*{path="nbd"}).
          observer: nbdObserver(metrics),
          tls: nbdTlsOptions(options, tls), auth: options.auth ?? null, quota: rpc.quota,
          // A cluster node refuses NBD changes while fenced, as it refuses gRPC ones.
          fence: cluster === null ? undefined : () => cluster.assertMayMutate(),
          // ... and holds them during a drain's switch of the file (NOT_OWNER once it moved), as FencedFs does.
          gate: cluster === null ? undefined : inodeGate(cluster.drainGate, volume.fs),
        });
      } catch (err) {
        await daxd.stop();
        throw err;
      }
    }
    if (options.httpAddress !== undefined) {
      try {
        daxd.http = await startHttpServer(daxd.httpDeps(volume.report), log, options.httpAddress, tls ?? undefined);
      } catch (err) {
        await daxd.stop();
        throw err;
      }
    }
    if (cluster !== null) {
      try {
        // Registers (EBUSY if the name or the volume is held by a live process), loads the cache, reconciles.
        await cluster.join({ grpc: rpc.address, nbd: daxd.nbdAddress, http: daxd.httpAddress });
      } catch (err) {
        await daxd.stop();
        throw err;
      }
    }
    daxd.started = true;
    // The health status follows the fencing and the cluster's drains from now on (and is computed once here).
    cluster?.onReadinessChange(() => daxd.updateHealth());
    daxd.updateHealth();
    const { replay, wasClean, orphansFreed, mountMs } = volume.report;
    log.info({
      grpc: rpc.address, http: daxd.httpAddress, nbd: daxd.nbdAddress, volume: options.volumePath, created: volume.created,
      auth: options.auth === undefined ? 'off' : `${options.auth.principals.length} principals`,
      tls: tls === null ? null : { clientAuth: tls.clientAuth, subject: tls.current.subject, notAfter: tls.current.notAfter },
      // After a clean unmount the journal's last transaction is already in its home blocks:
      // mount re-applies it (idempotent) but recovers nothing, so the line says clean.
      wasClean, journal: wasClean ? { state: 'clean', lastSeq: replay.nextSeq - 1 } : replay, orphansFreed, mountMs: Math.round(mountMs),
      cluster: cluster === null ? null : { node: cluster.self, prefix: cluster.config.prefix, ttlS: cluster.config.ttlS },
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
      cluster: this.cluster === null ? null : () => this.cluster!.status(),
      // Mount replays the journal before it returns, so a mounted volume is a replayed one.
      readiness: () => ({ volumeMounted: this.mounted, journalReplayed: this.mounted, acceptingCalls: this.rpc.accepting }),
    };
  }

  /**
   * Re-reads the TLS files (SIGHUP). Success: new gRPC, HTTP (and NBD) connections get
   * the new certificates, open ones keep theirs, the volume stays mounted. Failure (a
   * missing or bad file): the old certificates stay in use. Logs one line either way.
   */
  reloadTls(): TlsReloadResult | null {
    const { log } = this.options;
    if (this.tls === null) {
      log.info('tls reload: no TLS configured, nothing to reload');
      return null;
    }
    const result = this.tls.reload();
    if (result.ok) log.info({ subject: result.subject, notAfter: result.notAfter }, 'tls reloaded');
    else log.warn({ flag: result.error.flag, file: result.error.file, reason: result.error.message }, 'tls reload failed: kept the old certificates');
    return result;
  }

  /**
   * The drain hook: while draining, the gRPC health status (overall and per service) is
   * NOT_SERVING, so load balancers and readiness probes send new clients elsewhere while
   * the calls in flight go on. A cluster Drain of this node does the same by itself
   * (Cluster.isDraining, see notServingReason); this switch is for an operator's own
   * draining (and tests).
   */
  setDraining(draining: boolean): void {
    this.draining = draining;
    this.updateHealth();
  }

  /** Why the server is not ready for new calls now, or null when it is. */
  notServingReason(): string | null {
    if (this.stopping !== null) return 'shutting down';
    if (!this.started) return 'starting';
    if (this.draining || this.cluster?.isDraining === true) return 'draining';
    if (this.cluster?.fenced === true) return 'fenced';
    return null;
  }

  /**
   * The gRPC health status follows readiness (server/rpc/standard-services.ts): SERVING
   * once started (volume mounted, gRPC listening, cluster joined), NOT_SERVING while
   * draining, fenced or shutting down; the "liveness" name only goes NOT_SERVING at
   * shutdown. Called on each of those changes.
   */
  private updateHealth(): void {
    const why = this.notServingReason();
    this.rpc.standard.setServing(why === null, why ?? 'ready', this.stopping === null);
  }

  /** Graceful stop; idempotent. */
  stop(): Promise<void> {
    if (this.stopping === null) {
      this.stopping = this.runStop();
      this.updateHealth();
    }
    return this.stopping;
  }

  private async runStop(): Promise<void> {
    const { log } = this.options;
    log.info('daxd stopping: draining calls');
    const graceMs = this.options.shutdownGraceMs ?? SHUTDOWN_GRACE_MS;
    const stopDeadlineMs = Date.now() + graceMs;
    // Both front ends drain at once; neither reaches the engine once both resolved. A
    // cluster node's calls in flight still reach etcd (placement) while they drain.
    await Promise.all([this.rpc.stop(graceMs), this.nbd?.stop(graceMs)]);
    // Then it leaves the cluster (lease revoked: the others answer NODE_DOWN for its files
    // at once) and closes etcd, within what is left of the grace period.
    await this.cluster?.stop(stopDeadlineMs - Date.now());
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
