/**
 * The Dma service: pins (get_user_pages over the network), DMA by pin id, unpin, lease
 * renewal (server/dax/pin.ts does the work; S4, S7).
 */
import type { Logger } from 'pino';
import type { Dax } from '../dax/dax';
import type { Pin } from '../dax/pin-table';
import type { Session } from '../session/session';
import type { SessionTable } from '../session/session-table';
import type { DmaHandlers } from '../../wire/generated/daxd/v1/Dma';
import type { PinResponse } from '../../wire/generated/daxd/v1/PinResponse';
import { unary } from './unary';
import { principalOf } from '../auth/call-principal';
import type { QuotaLedger } from '../auth/quota';
import type { FsOfCall } from './files-service';
import type { Metrics } from '../metrics';
import { dmaStreamHandler, pinFor, pinId } from './dma-streams';
import type { OpStreamRegistry } from './files-streams';
import * as v from './validate';

function pinToWire(p: Pin): PinResponse {
  return { pin_id: p.id, pfns: p.pfns, lease_ms: p.leaseMs };
}

/**
 * Pins and DMA act for the call's principal: its own sessions only (another's id is
 * SESSION_UNKNOWN), files inside its prefix, within its pins / pinned-blocks quotas and,
 * for a writable pin (which allocates the holes it covers), its allocated-bytes quota.
 */
export function dmaHandlers(dax: Dax, sessions: SessionTable, fsOf: FsOfCall, quota: QuotaLedger, log: Logger, streams: OpStreamRegistry, metrics?: Metrics, fence?: () => void): DmaHandlers {
  const session = (id: string, call: object): Session => sessions.get(v.sessionId(id), principalOf(call));
  return {
    Pin: unary(log, 'Dma.Pin', async (req, call) => {
      const owner = session(req.session_id, call);
      const args = v.pinRequest(req.ino, req.first_pgoff, req.npages, req.writable);
      return pinToWire(await pinFor(dax, quota, fsOf(call), owner, args));
    }),

    Unpin: unary(log, 'Dma.Unpin', (req, call) => {
      dax.unpin(session(req.session_id, call), pinId(req.pin_id));
      return {};
    }),

    Renew: unary(log, 'Dma.Renew', (req, call) => pinToWire(dax.renewPin(session(req.session_id, call), pinId(req.pin_id)))),

    Read: unary(log, 'Dma.Read', async (req, call) => {
      const owner = session(req.session_id, call);
      const a = v.dmaAccess(req.page, req.offset, v.u64(req.length, 'length'));
      return { data: await dax.dmaRead(owner, pinId(req.pin_id), a.page, a.offset, a.length) };
    }),

    Write: unary(log, 'Dma.Write', async (req, call) => {
      const owner = session(req.session_id, call);
      const a = v.dmaAccess(req.page, req.offset, req.data.length);
      await dax.dmaWrite(owner, pinId(req.pin_id), a.page, a.offset, req.data);
      return {};
    }),

    // Pins and DMA pipelined, many pages per op (dma-streams.ts).
    Stream: dmaStreamHandler({ dax, sessions, fsOf, quota, metrics, fence }, log, streams),
  };
}
