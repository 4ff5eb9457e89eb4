/**
 * The Files calls of a cluster node (server/cluster; docs/CLUSTER.md):
 *   - fencing: every call whose METHOD_ACTIONS rule asks for `write` (Create, Unlink,
 *     Write, Truncate, Fallocate, Fsync, WriteStream, write faults, Store, Msync, writable
 *     pins, Dma.Write) is UNAVAILABLE / FENCED while the node is fenced; reads go on.
 *     Dma.Stream is admitted as a reader: each of its ops that writes is fenced in
 *     dma-streams.ts, each WriteStream op by FencedFs, NBD changes in nbd/commands.ts.
 *   - routing by name: Create, Lookup and Unlink consult the placement (placement.ts) and
 *     answer NOT_OWNER (trailer daxd-owner) or NODE_DOWN for a name placed elsewhere.
 *     Calls by inode need no routing: an inode is this node's by construction.
 *   - drains (server/cluster/drain.ts): on the drained node, calls by a name in its
 *     switch wait for it, then are redirected (drain-gate.ts); on the target node, Create
 *     and Unlink carrying DRAIN_SOURCE_METADATA_KEY = S act on the local copy of a name
 *     placed `{S, moving: this node}` (Unlink: of any name not placed here), leaving the
 *     placement to the drain.
 * Runs inside instrument() (rpc-server.ts), so admission (auth, role) comes first.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Cluster } from '../cluster/cluster';
import { DaxError } from '../errors';
import { actionOf } from '../auth/method-actions';
import { methodLabel } from './instrument';
import { toServiceError } from './status';
import { unary } from './unary';
import { fileInfoToWire, type FsOfCall } from './files-service';
import type { FilesHandlers } from '../../wire/generated/daxd/v1/Files';
import { DRAIN_SOURCE_METADATA_KEY, REDIRECTED_METADATA_KEY } from '../../wire/metadata';
import * as v from './validate';

type AnyHandler = (call: never, callback?: never) => void;

/** The handlers of `service`, refusing `write` calls while the cluster node is fenced. */
export function fenced<H extends object>(service: grpc.ServiceDefinition, handlers: H, cluster: Cluster, log: Logger): H {
  const out: Record<string, unknown> = {};
  for (const [name, handler] of Object.entries(handlers) as Array<[string, AnyHandler]>) {
    const def = service[name];
    const method = def === undefined ? name : methodLabel(def.path);
    if (def === undefined) {
      out[name] = handler;
    } else if (!def.requestStream && !def.responseStream) {
      const h = handler as unknown as grpc.handleUnaryCall<unknown, unknown>;
      out[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        try {
          if (actionOf(method, call.request) === 'write') cluster.assertMayMutate();
        } catch (err) {
          callback(toServiceError(err, log, method));
          return;
        }
        h(call, callback);
      };
    } else if (def.requestStream && !def.responseStream) {
      // A client stream's rule is a constant (method-actions.ts): WriteStream is 'write'.
      const h = handler as unknown as (call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => void;
      out[name] = (call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        try {
          if (actionOf(method, undefined) === 'write') cluster.assertMayMutate();
        } catch (err) {
          callback(toServiceError(err, log, method));
          return;
        }
        h(call, callback);
      };
    } else if (def.requestStream && def.responseStream) {
      const h = handler as unknown as (call: grpc.ServerDuplexStream<unknown, unknown>) => void;
      out[name] = (call: grpc.ServerDuplexStream<unknown, unknown>) => {
        try {
          if (actionOf(method, undefined) === 'write') cluster.assertMayMutate();
        } catch (err) {
          call.emit('error', toServiceError(err, log, method));
          return;
        }
        h(call);
      };
    } else {
      out[name] = handler; // server streams (Events) only read
    }
  }
  return out as H;
}

const redirected = (call: { metadata: grpc.Metadata }): boolean => call.metadata.get(REDIRECTED_METADATA_KEY)[0] === '1';

/** The draining node a call comes from (DRAIN_SOURCE_METADATA_KEY), or null. */
function drainSource(call: { metadata: grpc.Metadata }): string | null {
  const v = call.metadata.get(DRAIN_SOURCE_METADATA_KEY)[0];
  return typeof v === 'string' && v !== '' ? v : null;
}

/** Files handlers whose Create, Lookup and Unlink go through the cluster's placement. */
export function routedFiles(files: FilesHandlers, fsOf: FsOfCall, cluster: Cluster, log: Logger): FilesHandlers {
  return {
    ...files,
    Create: unary(log, 'Files.Create', async (req, call) => {
      const name = fsOf(call).name(v.fileName(req.name));
      cluster.assertMayMutate();
      const placement = cluster.placement;
      const source = drainSource(call);
      if (source !== null) {
        // A drain's copy: only of a name the drain has marked as moving here.
        const placed = await placement.read(name);
        if (placed !== null && placed.node === source && placed.moving === cluster.self) return fileInfoToWire(await fsOf(call).create(name, false));
      }
      await cluster.drainGate.passName(name);
      const claim = await placement.claim(name, redirected(call));
      await cluster.failpoints?.hit('cluster:after-claim', {});
      let info;
      try {
        info = await fsOf(call).create(name, req.exclusive);
      } catch (err) {
        if (claim === 'claimed') {
          // Keep the key only if the file exists here after all (an EEXIST of a name the key had lost).
          // The client gets the create's own error either way; a key left behind is the reconcile pass's.
          const existing = existingIno(fsOf(call), name);
          try {
            if (existing === null) await placement.abandonCreate(name);
            else await placement.finishCreate(name, existing);
          } catch (cleanup) {
            log.warn({ name, err: cleanup instanceof Error ? cleanup.message : String(cleanup) }, 'cluster: could not settle the placement of a failed Create (the next start reconciles it)');
          }
        }
        throw err;
      }
      // A claimed key gets its inode; an owned one too if it lacks it (a Create in flight, or re-created here).
      if (claim === 'claimed' || claim.owned !== info.ino) await placement.finishCreate(name, info.ino, claim === 'claimed' ? 0 : claim.owned);
      return fileInfoToWire(info);
    }),

    Lookup: unary(log, 'Files.Lookup', async (req, call) => {
      const name = fsOf(call).name(v.fileName(req.name));
      const placement = cluster.placement;
      await cluster.drainGate.passName(name);
      placement.checkRead(name);
      try {
        return fileInfoToWire(fsOf(call).lookup(name));
      } catch (err) {
        if (err instanceof DaxError && err.code === 'ENOENT') await placement.confirmAbsent(name);
        throw err;
      }
    }),

    Unlink: unary(log, 'Files.Unlink', async (req, call) => {
      const name = fsOf(call).name(v.fileName(req.name));
      cluster.assertMayMutate();
      const placement = cluster.placement;
      if (drainSource(call) !== null) {
        // A drain removing its copy (abandoned or orphaned): only of a name placed on
        // another node. A name placed here is a user's file (re-created here meanwhile):
        // the drain's Unlink leaves it alone, and never falls through to a user's Unlink.
        const placed = await placement.read(name);
        if (placed === null || placed.node !== cluster.self) await fsOf(call).unlink(name);
        return {};
      }
      await cluster.drainGate.passName(name);
      await placement.checkUnlink(name);
      const ino = fsOf(call).lookup(name).ino;
      await fsOf(call).unlink(name);
      await placement.unlinked(name, ino);
      return {};
    }),
  };
}

function existingIno(fs: ReturnType<FsOfCall>, name: string): number | null {
  try {
    return fs.lookup(name).ino;
  } catch (err) {
    if (err instanceof DaxError) return null;
    throw err;
  }
}
