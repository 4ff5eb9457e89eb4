/**
 * What each RPC needs of the caller's role (principal.ts): read, write or admin. Checked
 * once per call by server/rpc/instrument.ts, before the handler runs; a method missing
 * here is a bug caught when the server starts (instrument() asserts every handler has
 * an entry).
 *
 * Request-dependent entries look only at the kinds of access asked for (a READ fault, a
 * read-only pin, a batch of loads), never at validity: an invalid kind counts as a write,
 * so a malformed request from an `ro` principal is EACCES before it is EINVAL.
 */
import type { Action } from './principal';

type Rule = Action | ((request: never) => Action);

const readFault = (kind: unknown): boolean => kind === 'READ' || kind === 1;

export const METHOD_ACTIONS: Readonly<Record<string, Rule>> = {
  'Session.Open': 'read',
  'Session.KeepAlive': 'read',
  'Session.Close': 'read',
  'Session.Events': 'read',

  'Files.Create': 'write',
  'Files.Lookup': 'read',
  'Files.Stat': 'read',
  'Files.List': 'read',
  'Files.Unlink': 'write',
  'Files.Read': 'read',
  'Files.Write': 'write',
  'Files.Fsync': 'write',
  'Files.Truncate': 'write',
  'Files.Fallocate': 'write',
  'Files.StatVolume': 'read',
  'Files.ReadStream': 'read',
  'Files.WriteStream': 'write',

  'Mapping.Fault': (req: { kind: unknown }) => (readFault(req.kind) ? 'read' : 'write'),
  'Mapping.Load': 'read',
  'Mapping.Store': 'write',
  'Mapping.Msync': 'write',
  'Mapping.Unmap': 'read',
  'Mapping.Inspect': 'read',
  'Mapping.FaultBatch': (req: { ops: Array<{ kind: unknown }> }) => (req.ops.every((op) => readFault(op.kind)) ? 'read' : 'write'),
  'Mapping.AccessBatch': (req: { ops: Array<{ store: boolean }> }) => (req.ops.some((op) => op.store) ? 'write' : 'read'),

  'Dma.Pin': (req: { writable: boolean }) => (req.writable ? 'write' : 'read'),
  'Dma.Unpin': 'read',
  'Dma.Read': 'read',
  'Dma.Write': 'write',
  'Dma.Renew': 'read',
  // Admitted as a reader; each op that writes (writable pin, WRITE) is checked against the
  // role in server/rpc/dma-streams.ts (checkRole), so an `ro` principal's pin + READ cycles run.
  'Dma.Stream': 'read',

  // Cluster (server/rpc/cluster-service.ts): reads of the etcd cache; Drain moves files.
  'Cluster.Members': 'read',
  'Cluster.Locate': 'read',
  'Cluster.Watch': 'read',
  'Cluster.Drain': 'admin',
};

/**
 * The standard services' methods admitted like daxd's own (server/rpc/standard-services.ts).
 * Server reflection describes the contract: it is a read (docs/SECURITY.md). The health
 * service is not listed: it is never admitted (probes carry no token) and says nothing
 * but SERVING / NOT_SERVING. "ServerReflection.ServerReflectionInfo" is both v1 and v1alpha.
 */
export const STANDARD_METHOD_ACTIONS: Readonly<Record<string, Rule>> = {
  'ServerReflection.ServerReflectionInfo': 'read',
};

/** The rule of `method` ("Files.Read"), undefined when it has none. */
export function ruleOf(method: string): Rule | undefined {
  return METHOD_ACTIONS[method] ?? STANDARD_METHOD_ACTIONS[method];
}

/** The action `method` ("Files.Read") needs for this request (undefined for a stream: its rule is a constant). */
export function actionOf(method: string, request: unknown): Action {
  const rule = ruleOf(method);
  if (rule === undefined) throw new Error(`bug: ${method} has no entry in METHOD_ACTIONS`);
  return typeof rule === 'string' ? rule : (rule as (r: unknown) => Action)(request);
}
