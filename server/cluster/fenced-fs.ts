/**
 * The file system as a cluster node's gRPC side uses it: every mutating method asks the
 * cluster first (FENCED while the node is fenced). This covers each op of a long-lived
 * WriteStream, which the per-call gate (server/rpc/cluster-routing.ts) checks only when
 * the stream opens. Reads pass straight through.
 */
import { DaxError } from '../errors';
import type { FallocateMode, FileInfo, FileSystemApi, LayoutBreakOptions, ListPage, VolumeInfo, WriteResult } from '../fs/types';
import type { DrainGate } from './drain-gate';

export interface FenceCheck {
  /** Throws FencedError while mutations must be refused. */
  assertMayMutate(): void;
  /** A drain's switch of a file (drain-gate.ts): mutating calls on its inode wait, then may be redirected. */
  readonly drainGate?: DrainGate;
  /** True for a drain's copy in flight to this node (placed `{S, moving: this node}`): List leaves it out. */
  isDrainCopy?(name: string): boolean;
}

/**
 * The drain gate of mutating calls on an inode of `fs` (gRPC through FencedFs, NBD
 * through its command target): undefined to go on now (synchronously: the gate's
 * invariant), else a promise to wait for before asking again; throws NOT_OWNER for a
 * moved file.
 */
export function inodeGate(gate: DrainGate | undefined, fs: Pick<FileSystemApi, 'isUnlinked'>): (ino: number) => Promise<void> | undefined {
  return (ino) => gate?.ino(ino, () => {
    try {
      return fs.isUnlinked(ino);
    } catch (err) {
      if (err instanceof DaxError) return true; // freed
      throw err;
    }
  });
}

export class FencedFs implements FileSystemApi {
  private readonly gate: (ino: number) => Promise<void> | undefined;

  constructor(private readonly fs: FileSystemApi, private readonly fence: FenceCheck) {
    this.gate = inodeGate(fence.drainGate, fs);
  }

  create(name: string, exclusive: boolean): Promise<FileInfo> {
    this.fence.assertMayMutate();
    return this.fs.create(name, exclusive);
  }
  lookup(name: string): FileInfo { return this.fs.lookup(name); }
  stat(ino: number): FileInfo { return this.fs.stat(ino); }
  /** A drain's copy in flight is not listed (its source is, on the drained node): a page may then hold fewer names than asked. */
  list(prefix: string, pageToken: string, pageSize: number): ListPage {
    const page = this.fs.list(prefix, pageToken, pageSize);
    const hidden = this.fence.isDrainCopy;
    return hidden === undefined ? page : { ...page, files: page.files.filter((f) => !hidden.call(this.fence, f.name)) };
  }
  unlink(name: string): Promise<void> {
    this.fence.assertMayMutate();
    return this.fs.unlink(name);
  }
  isUnlinked(ino: number): boolean { return this.fs.isUnlinked(ino); }
  read(ino: number, offsetBytes: number, lengthBytes: number, alloc?: (bytes: number) => Buffer): Promise<Buffer> {
    return this.fs.read(ino, offsetBytes, lengthBytes, alloc);
  }
  write(ino: number, offsetBytes: number, data: Uint8Array, sync: boolean): Promise<WriteResult> {
    const wait = this.gate(ino);
    if (wait !== undefined) return wait.then(() => this.write(ino, offsetBytes, data, sync));
    this.fence.assertMayMutate();
    return this.fs.write(ino, offsetBytes, data, sync);
  }
  fsync(ino: number, datasync: boolean): Promise<void> { return this.fs.fsync(ino, datasync); }
  truncate(ino: number, sizeBytes: number, opts?: LayoutBreakOptions): Promise<void> {
    const wait = this.gate(ino);
    if (wait !== undefined) return wait.then(() => this.truncate(ino, sizeBytes, opts));
    this.fence.assertMayMutate();
    return this.fs.truncate(ino, sizeBytes, opts);
  }
  fallocate(ino: number, mode: FallocateMode, offsetBytes: number, lengthBytes: number, opts?: LayoutBreakOptions): Promise<void> {
    const wait = this.gate(ino);
    if (wait !== undefined) return wait.then(() => this.fallocate(ino, mode, offsetBytes, lengthBytes, opts));
    this.fence.assertMayMutate();
    return this.fs.fallocate(ino, mode, offsetBytes, lengthBytes, opts);
  }
  statVolume(): VolumeInfo { return this.fs.statVolume(); }
  sync(): Promise<void> { return this.fs.sync(); }
  unmount(): Promise<void> { return this.fs.unmount(); }
}
