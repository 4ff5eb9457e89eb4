/**
 * Which unary RPCs move file data, and how many bytes: counted into daxd_io_ops_total and
 * daxd_io_bytes_total after a successful reply (instrument.ts), from the request and the
 * response alone, so the services themselves carry no metric code. The op streams count
 * per op in files-streams.ts.
 */
import type { Metrics } from '../metrics';

interface WithData {
  data: Uint8Array | string;
}

type Account = (request: unknown, response: unknown, metrics: Metrics) => void;

function bytes(m: unknown): number {
  const data = (m as Partial<WithData> | null | undefined)?.data;
  return data === undefined ? 0 : data.length;
}

interface AccessOpLike extends WithData {
  store: boolean;
}

interface AccessOutcomeLike {
  data?: Uint8Array;
  error?: unknown;
}

/** Mapping.AccessBatch: loads and stores of one session, each failing alone. */
function accessBatch(request: unknown, response: unknown, metrics: Metrics): void {
  const ops = (request as { ops: AccessOpLike[] }).ops;
  const results = (response as { results: AccessOutcomeLike[] }).results;
  for (let i = 0; i < ops.length && i < results.length; i++) {
    if (results[i].error) continue;
    if (ops[i].store) metrics.io('mapping', 'write', ops[i].data.length);
    else metrics.io('mapping', 'read', bytes(results[i]));
  }
}

/** Mapping.FaultBatch: each page a READ op with load returned is a read, as a Load's (a COW copy is not). */
function faultBatch(request: unknown, response: unknown, metrics: Metrics): void {
  const ops = (request as { ops: Array<{ load?: boolean }> }).ops;
  const results = (response as { results: AccessOutcomeLike[] }).results;
  for (let i = 0; i < ops.length && i < results.length; i++) {
    if (ops[i].load === true && !results[i].error && bytes(results[i]) > 0) metrics.io('mapping', 'read', bytes(results[i]));
  }
}

export const IO_ACCOUNTING: Readonly<Record<string, Account>> = {
  'Files.Read': (_req, res, m) => m.io('file', 'read', bytes(res)),
  'Files.Write': (req, _res, m) => m.io('file', 'write', bytes(req)),
  'Mapping.Load': (_req, res, m) => m.io('mapping', 'read', bytes(res)),
  'Mapping.Store': (req, _res, m) => m.io('mapping', 'write', bytes(req)),
  'Mapping.AccessBatch': accessBatch,
  'Mapping.FaultBatch': faultBatch,
  'Dma.Read': (_req, res, m) => m.io('dma', 'read', bytes(res)),
  'Dma.Write': (req, _res, m) => m.io('dma', 'write', bytes(req)),
};
