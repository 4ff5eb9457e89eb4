/**
 * NBD exports = daxd files: the export name is the file name. The empty name is the
 * default export (--nbd-default-export NAME) when one is configured.
 *
 * An export in use holds its inode (FileSystem.acquire, as an open file descriptor does):
 * a file unlinked over gRPC while a client has it stays readable and writable through that
 * connection, and its blocks are freed when the connection ends.
 *
 * Principals (--auth): a connection sees and opens only the files its principal may name
 * (Principal.mayName); a connection without a principal (auth on, but no TLS or no known
 * client certificate) sees none. Another principal's file answers exactly as a missing
 * one (the same NotFoundError, the same message), so a client learns nothing of it.
 */
import type { Principal } from '../auth/principal';
import { NotFoundError } from '../errors';
import { quoted } from '../excerpt';
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

  /** resolve, as `principal` sees the files (null: it sees none). */
  resolveFor(principal: Principal | null, requested: string): ExportInfo {
    if (principal === null) throw hidden(requested === '' ? this.defaultExport ?? '' : requested);
    const exp = this.resolve(requested);
    if (!principal.mayName(exp.name)) throw hidden(exp.name);
    return exp;
  }

  /** Every file `principal` may name (all of them: OPEN_ACCESS), a page at a time (NBD_OPT_LIST). */
  async *all(principal: Principal | null): AsyncGenerator<FileInfo[]> {
    if (principal === null) return;
    let token = '';
    for (;;) {
      // mayName is a prefix test: the names under the prefix are what it may name (filtered again all the same).
      const page = this.fs.list(principal.prefix, token, LIST_PAGE_ENTRIES_MAX);
      yield page.files.filter((f) => principal.mayName(f.name));
      if (page.nextPageToken === '') return;
      token = page.nextPageToken;
    }
  }
}

/** What FileSystem.lookup answers for a name that does not exist (the same words: reveal nothing). */
function hidden(name: string): NotFoundError {
  return new NotFoundError(`no file named ${quoted(name)}`);
}

function describe(info: FileInfo): ExportInfo {
  return { name: info.name, ino: info.ino, sizeBytes: info.sizeBytes, description: `daxd file ${info.name} (inode ${info.ino}, ${info.sizeBytes} bytes)` };
}
