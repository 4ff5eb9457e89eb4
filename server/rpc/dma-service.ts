/**
 * The Dma service: pins (get_user_pages over the network), DMA by pin id, unpin, lease
 * renewal (server/dax/pin.ts does the work; S4, S7).
 */
import type { Logger } from 'pino';
import { InvalidArgumentError } from '../errors';
import type { Dax } from '../dax/dax';
import type { Pin } from '../dax/pin-table';
import type { Session } from '../session/session';
import type { SessionTable } from '../session/session-table';
import type { DmaHandlers } from '../../wire/generated/daxd/v1/Dma';
import type { PinResponse } from '../../wire/generated/daxd/v1/PinResponse';
import { unary } from './unary';
import * as v from './validate';

function pinId(value: string): string {
  v.idLength(value, 'pin_id');
  if (!/^[0-9a-f]{32}$/.test(value)) throw new InvalidArgumentError('pin_id is not a pin id (32 hex digits)');
  return value;
}

function pinToWire(p: Pin): PinResponse {
  return { pin_id: p.id, pfns: p.pfns, lease_ms: p.leaseMs };
}

export function dmaHandlers(dax: Dax, sessions: SessionTable, log: Logger): DmaHandlers {
  const session = (id: string): Session => sessions.get(v.sessionId(id));
  return {
    Pin: unary(log, 'Dma.Pin', async (req) => {
      const owner = session(req.session_id);
      const p = await dax.pin(owner, {
        ino: v.ino(req.ino), firstPgoff: v.u64(req.first_pgoff, 'first_pgoff'), npages: req.npages,
        writable: req.writable, leaseMs: owner.leaseMs,
      });
      return pinToWire(p);
    }),

    Unpin: unary(log, 'Dma.Unpin', (req) => {
      dax.unpin(session(req.session_id), pinId(req.pin_id));
      return {};
    }),

    Renew: unary(log, 'Dma.Renew', (req) => pinToWire(dax.renewPin(session(req.session_id), pinId(req.pin_id)))),

    Read: unary(log, 'Dma.Read', async (req) => {
      const owner = session(req.session_id);
      const length = v.u64(req.length, 'length');
      const offset = v.inPage(req.offset, length, 'DMA');
      return { data: await dax.dmaRead(owner, pinId(req.pin_id), req.page, offset, length) };
    }),

    Write: unary(log, 'Dma.Write', async (req) => {
      const owner = session(req.session_id);
      const offset = v.inPage(req.offset, req.data.length, 'DMA');
      await dax.dmaWrite(owner, pinId(req.pin_id), req.page, offset, req.data);
      return {};
    }),
  };
}
