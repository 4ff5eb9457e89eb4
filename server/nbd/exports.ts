/**
 * NBD exports = daxd files: the export name is the file name. The empty name is the
 * default export (--nbd-default-export NAME) when one is configured.
 *
 * An export in use holds its inode (FileSystem.acquire, as an open file descriptor does):
 * a file unlinked over gRPC while a client has it stays readable and writable through that
 * connection, and its blocks are freed when the connection ends.
 */
import { NotFoundError } from '../errors';
import type { FileInfo } from '../fs/types';
import type { FileSystem } from '../fs/filesystem';
import { LIST_PAGE_ENTRIES_MAX } from '../rpc/limits';

export interface ExportInfo {
  /** The canonical name (the file name, also for the default export). */
  name: string;
  ino: number;
  sizeBytes: number;
  description: string;
}

export class Exports {
  constructor(private readonly fs: FileSystem, readonly defaultExport: string | undefined) {}

  /** The export a client named. Throws ENOENT (with how to name one), ENAMETOOLONG, EINVAL. */
  resolve(requested: string): ExportInfo {
    let name = requested;
    if (name === '') {
      if (this.defaultExport === undefined) {
        throw new NotFoundError('no default export: name the file to export (e.g. nbd://127.0.0.1:10809/NAME, nbdinfo --list shows the names), or start daxd with --nbd-default-export NAME');
      }
      name = this.defaultExport;
    }
    return describe(this.fs.lookup(name));
  }

  /** Every file, a page at a time (NBD_OPT_LIST). */
  async *all(): AsyncGenerator<FileInfo[]> {
    let token = '';
    for (;;) {
      const page = this.fs.list('', token, LIST_PAGE_ENTRIES_MAX);
      yield page.files;
      if (page.nextPageToken === '') return;
      token = page.nextPageToken;
    }
  }
}

function describe(info: FileInfo): ExportInfo {
  return { name: info.name, ino: info.ino, sizeBytes: info.sizeBytes, description: `daxd file ${info.name} (inode ${info.ino}, ${info.sizeBytes} bytes)` };
}
