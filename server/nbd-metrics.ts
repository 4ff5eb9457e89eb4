/**
 * The server's observer of its NBD front end (server/nbd): every connection and every
 * answered request goes to the metrics registry (server/metrics.ts):
 *   - daxd_nbd_connections (gauge) and daxd_nbd_connections_opened_total;
 *   - daxd_nbd_tls_handshakes_total{outcome}: STARTTLS upgrades, ok or failed;
 *   - daxd_nbd_request_duration_seconds{command, outcome}: outcome `ok` or the NBD error
 *     name, a fixed set (the protocol's eight values, anything else `other`);
 *   - daxd_io_ops_total / daxd_io_bytes_total{path="nbd"} for READ and WRITE that succeeded,
 *     so the NBD path counts with file, mapping and DMA I/O (the dashboard's IOPS and
 *     bandwidth).
 */
import type { Metrics } from './metrics';
import type { NbdObserver } from './nbd/nbd-server';
import {
  NBD_EINVAL, NBD_EIO, NBD_ENOMEM, NBD_ENOSPC, NBD_ENOTSUP, NBD_EOVERFLOW, NBD_EPERM, NBD_ESHUTDOWN,
} from './nbd/wire-format';

const ERRNO_NAMES = new Map<number, string>([
  [NBD_EPERM, 'EPERM'], [NBD_EIO, 'EIO'], [NBD_ENOMEM, 'ENOMEM'], [NBD_EINVAL, 'EINVAL'],
  [NBD_ENOSPC, 'ENOSPC'], [NBD_EOVERFLOW, 'EOVERFLOW'], [NBD_ENOTSUP, 'ENOTSUP'], [NBD_ESHUTDOWN, 'ESHUTDOWN'],
]);

/** The `outcome` label of an NBD error value (0: ok). */
export function nbdOutcome(errno: number): string {
  return errno === 0 ? 'ok' : (ERRNO_NAMES.get(errno) ?? 'other');
}

export function nbdObserver(metrics: Metrics): NbdObserver {
  return {
    connectionOpened: () => metrics.nbdConnectionOpened(),
    connectionClosed: () => metrics.nbdConnectionClosed(),
    tlsHandshake: (outcome) => metrics.nbdTlsHandshake(outcome),
    request: (command, seconds, errno, bytes) => {
      if (errno === 0 && command === 'READ') metrics.nbdIo('read', bytes);
      else if (errno === 0 && command === 'WRITE') metrics.nbdIo('write', bytes);
      metrics.nbdRequestFinished(command, nbdOutcome(errno), seconds);
    },
  };
}
