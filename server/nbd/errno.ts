/**
 * daxd's reasons (server/errors.ts) as NBD error values. The protocol allows only EPERM,
 * EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP and ESHUTDOWN; the choices:
 *
 * - ENOSPC, EFBIG, EMAXFILES, EDQUOT (the principal's allocated-bytes quota) -> NBD_ENOSPC
 *   (the spec maps EFBIG and EDQUOT there);
 * - EINVAL, EBADMSG, ENAMETOOLONG, ELIMIT -> NBD_EINVAL (the request is at fault);
 * - SIGBUS (a page past the file's end meets a mapping fault) -> NBD_EIO: an I/O failure, not a malformed request;
 * - EBUSY (--nbd-layout-break FAIL met a pinned page), ETIMEDOUT (WAIT or RECALL still
 *   pinned after NBD_LAYOUT_BREAK_TIMEOUT_MS), ECANCELED -> NBD_EIO: the protocol has no
 *   EBUSY, and EIO is the one value every client reports as "this request failed, the
 *   device is fine" (EINVAL would say the request was malformed). The file is unchanged,
 *   and with structured replies the error chunk's message names the real reason;
 * - ESHUTDOWN -> NBD_ESHUTDOWN; ENOTSUP -> NBD_ENOTSUP;
 * - EACCES (a change to an export its principal may only read) -> NBD_EPERM;
 * - ENOENT (cannot happen while the export holds its inode), EIO, ECORRUPT and anything
 *   else -> NBD_EIO. A non-DaxError is a bug: it is logged by the caller and answered EIO.
 */
import { DaxError, type ReasonCode } from '../errors';
import { NBD_EINVAL, NBD_EIO, NBD_ENOSPC, NBD_ENOTSUP, NBD_EPERM, NBD_ESHUTDOWN } from './wire-format';

const BY_REASON: Partial<Record<ReasonCode, number>> = {
  ENOSPC: NBD_ENOSPC,
  EFBIG: NBD_ENOSPC,
  EMAXFILES: NBD_ENOSPC,
  EDQUOT: NBD_ENOSPC,
  EINVAL: NBD_EINVAL,
  EBADMSG: NBD_EINVAL,
  ENAMETOOLONG: NBD_EINVAL,
  ELIMIT: NBD_EINVAL,
  SIGBUS: NBD_EIO,
  ESHUTDOWN: NBD_ESHUTDOWN,
  ENOTSUP: NBD_ENOTSUP,
  EACCES: NBD_EPERM,
};

export function nbdErrno(err: unknown): number {
  if (err instanceof DaxError) return BY_REASON[err.code] ?? NBD_EIO;
  return NBD_EIO;
}
