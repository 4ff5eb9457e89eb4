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
import type { Logger } from 'pino';
import { Dax } from './dax/dax';
import type { FileSystem } from './fs/filesystem';
import { RpcServer } from './rpc/rpc-server';
import { openVolume } from './volume';

export interface DaxdOptions {
  volumePath: string;
  /** Size of the volume when it has to be created. */
  sizeBytes: number;
  /** host:port; port 0 picks a free port. */
  grpcAddress: string;
  log: Logger;
  shutdownGraceMs?: number;
  /** Tests only: enable failpoints (server/dax/failpoints.ts). */
  failpoints?: boolean;
}

export class Daxd {
  private stopping: Promise<void> | null = null;

  private constructor(
    readonly fs: FileSystem,
    readonly dax: Dax,
    readonly rpc: RpcServer,
    private readonly options: DaxdOptions,
  ) {}

  get grpcAddress(): string {
    return this.rpc.address;
  }

  static async start(options: DaxdOptions): Promise<Daxd> {
    const { log } = options;
    const volume = await openVolume(options.volumePath, options.sizeBytes);
    const dax = new Dax(volume.fs, { failpoints: options.failpoints ?? false });
    let rpc: RpcServer;
    try {
      rpc = await RpcServer.start({ fs: volume.fs, dax, log, address: options.grpcAddress });
    } catch (err) {
      await volume.fs.unmount();
      throw err;
    }
    const { replay, wasClean, orphansFreed, mountMs } = volume.report;
    log.info({
      grpc: rpc.address, http: null, volume: options.volumePath, created: volume.created,
      wasClean, replayed: replay, orphansFreed, mountMs: Math.round(mountMs),
    }, 'daxd serving');
    return new Daxd(volume.fs, dax, rpc, options);
  }

  /** Graceful stop; idempotent. */
  stop(): Promise<void> {
    if (this.stopping === null) this.stopping = this.runStop();
    return this.stopping;
  }

  private async runStop(): Promise<void> {
    const { log } = this.options;
    log.info('daxd stopping: draining calls');
    await this.rpc.stop(this.options.shutdownGraceMs);
    // Released failpoints cannot hold a shutdown; mapped dirty pages reach the medium.
    this.dax.failpoints.releaseAll();
    await this.dax.sync();
    await this.fs.unmount();
    log.info('daxd stopped: volume clean and unlocked');
  }
}
