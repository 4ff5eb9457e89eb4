/**
 * The file system as one principal may use it: every name and inode checked against its
 * prefix (EACCES outside it), List and StatVolume narrowed to what it may see, and
 * allocating calls (write, fallocate) checked against its allocated-bytes quota
 * (quota.ts). The gRPC handlers get one per principal (rpc-server.ts); OPEN_ACCESS (auth
 * off) uses the file system itself, so auth off costs nothing.
 *
 * What a confined principal learns about files outside its prefix: nothing by name (the
 * prefix is checked before the lookup, so EACCES whether or not the name exists); by
 * inode number, only that the number is in use (EACCES instead of ENOENT). StatVolume
 * shows its files and blocks, and its quota as the volume size when it has one.
 */
import { NotFoundError, PermissionDeniedError } from '../errors';
import { BLOCK_SIZE } from '../limits';
import { excerpt } from '../excerpt';
import type { FallocateMode, FileInfo, FileSystemApi, LayoutBreakOptions, ListPage, VolumeInfo, WriteResult } from '../fs/types';
import type { Principal } from './principal';
import type { QuotaLedger } from './quota';

/** The fallocate modes that can allocate blocks (the others free or move them). */
const ALLOCATING_MODES: ReadonlySet<FallocateMode> = new Set<FallocateMode>(['ALLOCATE', 'KEEP_SIZE', 'ZERO_RANGE']);

export class PrincipalFs implements FileSystemApi {
  constructor(readonly principal: Principal, private readonly fs: FileSystemApi, private readonly quota: QuotaLedger) {}

  /** The name, if the principal may touch it; EACCES otherwise. */
  name(name: string): string {
    if (!this.principal.mayName(name)) throw this.denied(`the file ${excerpt(name)}`);
    return name;
  }

  /** The inode, if its file's name is inside the prefix; EACCES otherwise (ENOENT if there is none). */
  ino(ino: number): number {
    if (this.principal.prefix === '') return ino;
    const info = this.fs.stat(ino);
    if (!this.principal.mayName(info.name)) throw this.denied(`inode ${ino}`);
    return ino;
  }

  /** Runs a change that may allocate pages [first, last] of `ino`, within the allocated-bytes quota. */
  allocating<T>(ino: number, first: number, last: number, change: () => Promise<T>): Promise<T> {
    return this.quota.withAllocation(this.principal, ino, first, last, change);
  }

  /** A new name counts toward the files quota; an existing one (opened, or EEXIST when exclusive) does not. */
  create(name: string, exclusive: boolean): Promise<FileInfo> {
    this.name(name);
    if (this.principal.quotas.files === undefined || this.exists(name)) return this.fs.create(name, exclusive);
    return this.quota.withNewFile(this.principal, () => this.fs.create(name, exclusive));
  }

  private exists(name: string): boolean {
    try {
      this.fs.lookup(name);
      return true;
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  }

  lookup(name: string): FileInfo {
    return this.fs.lookup(this.name(name));
  }

  stat(ino: number): FileInfo {
    return this.fs.stat(this.ino(ino));
  }

  /** Only names inside the prefix: the asked prefix narrowed to it (nothing if they do not overlap). */
  list(prefix: string, pageToken: string, pageSize: number): ListPage {
    const own = this.principal.prefix;
    if (prefix.startsWith(own)) return this.fs.list(prefix, pageToken, pageSize);
    if (own.startsWith(prefix)) return this.fs.list(own, pageToken, pageSize);
    return { files: [], nextPageToken: '' };
  }

  unlink(name: string): Promise<void> {
    return this.fs.unlink(this.name(name));
  }

  isUnlinked(ino: number): boolean {
    return this.fs.isUnlinked(this.ino(ino));
  }

  read(ino: number, offsetBytes: number, lengthBytes: number, alloc?: (bytes: number) => Buffer): Promise<Buffer> {
    return this.fs.read(this.ino(ino), offsetBytes, lengthBytes, alloc);
  }

  write(ino: number, offsetBytes: number, data: Uint8Array, sync: boolean): Promise<WriteResult> {
    this.ino(ino);
    if (data.length === 0) return this.fs.write(ino, offsetBytes, data, sync);
    return this.allocating(ino, Math.floor(offsetBytes / BLOCK_SIZE), Math.floor((offsetBytes + data.length - 1) / BLOCK_SIZE),
      () => this.fs.write(ino, offsetBytes, data, sync));
  }

  fsync(ino: number, datasync: boolean): Promise<void> {
    return this.fs.fsync(this.ino(ino), datasync);
  }

  truncate(ino: number, sizeBytes: number, opts?: LayoutBreakOptions): Promise<void> {
    return this.fs.truncate(this.ino(ino), sizeBytes, opts);
  }

  fallocate(ino: number, mode: FallocateMode, offsetBytes: number, lengthBytes: number, opts?: LayoutBreakOptions): Promise<void> {
    this.ino(ino);
    const run = () => this.fs.fallocate(ino, mode, offsetBytes, lengthBytes, opts);
    if (!ALLOCATING_MODES.has(mode) || lengthBytes === 0) return run();
    return this.allocating(ino, Math.floor(offsetBytes / BLOCK_SIZE), Math.floor((offsetBytes + lengthBytes - 1) / BLOCK_SIZE), run);
  }

  /** The volume as this principal may see it (see the top of this file). */
  statVolume(): VolumeInfo {
    const volume = this.fs.statVolume();
    const { prefix, quotas } = this.principal;
    if (prefix === '' && quotas.allocatedBytes === undefined) return volume;
    const usage = this.quota.prefixUsage(this.principal);
    const usedBlocks = usage.blocks;
    const files = prefix === '' ? volume.files : usage.files;
    const quotaBlocks = quotas.allocatedBytes === undefined ? undefined : Math.floor(quotas.allocatedBytes / BLOCK_SIZE);
    const blocksTotal = quotaBlocks === undefined ? volume.blocksTotal : Math.min(volume.blocksTotal, quotaBlocks);
    const blocksFree = Math.max(0, Math.min(volume.blocksFree, blocksTotal - usedBlocks));
    return {
      ...volume, files, blocksUsed: usedBlocks, blocksTotal, blocksFree,
      blocksPendingFree: prefix === '' ? volume.blocksPendingFree : 0,
      sizeBytes: quotaBlocks === undefined ? volume.sizeBytes : Math.min(volume.sizeBytes, quotaBlocks * BLOCK_SIZE),
    };
  }

  sync(): Promise<void> {
    throw new Error('bug: sync is the server\'s, not a principal\'s');
  }

  unmount(): Promise<void> {
    throw new Error('bug: unmount is the server\'s, not a principal\'s');
  }

  private denied(what: string): PermissionDeniedError {
    return new PermissionDeniedError(`${this.principal.name} may not use ${what}: outside its prefix ${JSON.stringify(this.principal.prefix)}`);
  }
}
