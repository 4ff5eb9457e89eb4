/**
 * Fixtures of the DMA pin tests (test/dma/*.test.ts).
 *
 * - startDmaServer: a real daxd (Daxd.start) in this process on 127.0.0.1:0 over a real
 *   volume file, failpoints on, an optional short RECALL grace; clients talk gRPC to it
 *   while the test can look at `daxd.dax` (counters, failpoints, address spaces).
 * - guardPinnedFrees: wraps the allocator's free so that freeing a block some pin still
 *   holds a reference on is recorded (S4: "a pinned block is never freed"), whatever
 *   path frees it (truncate, punch, collapse, unlink).
 * - Timeline: pin intervals and layout calls on one sequence counter; a layout call that
 *   both started and finished while a pin over its range stood broke S4.
 * - pinnedPfns: what the server holds (wait for a server state with ../support/until).
 */
import path from 'node:path';
import pino from 'pino';
import { DaxClient, type DaxClientOptions } from '../../client';
import type { RawClients } from '../../client/raw-clients';
import { Dax } from '../../server/dax/dax';
import { fsck } from '../../server/fsck/fsck';
import { MmapStorage } from '../../server/media/mmap-storage';
import { Daxd } from '../../server/server';
import { rawClients } from '../support/raw-rpc';
import { tempDir } from '../support/start-server';
import { MiB } from '../support/units';

export interface DmaServer {
  daxd: Daxd;
  dax: Dax;
  address: string;
  volumePath: string;
  raw: RawClients;
  /** An SDK client (closed by stopAndFsck). */
  client(options?: DaxClientOptions): DaxClient;
  /** Closes the clients, stops the server gracefully, fscks the volume: the findings ([] when clean). */
  stopAndFsck(): Promise<unknown[]>;
}

export async function startDmaServer(name: string, opts: { sizeBytes?: number; recallGraceMs?: number } = {}): Promise<DmaServer> {
  const tmp = tempDir(`daxd-${name}-`);
  const volumePath = path.join(tmp.dir, `${name}.vol`);
  const daxd = await Daxd.start({
    volumePath, sizeBytes: opts.sizeBytes ?? 64 * MiB, grpcAddress: '127.0.0.1:0', log: pino({ level: 'silent' }),
    failpoints: true, shutdownGraceMs: 2_000, recallGraceMs: opts.recallGraceMs,
  });
  const clients: DaxClient[] = [];
  const raw = rawClients(daxd.grpcAddress);
  let stopped = false;
  return {
    daxd, dax: daxd.dax, address: daxd.grpcAddress, volumePath, raw,
    client(options = {}) {
      const c = DaxClient.connect(daxd.grpcAddress, { deadlineMs: 10_000, ...options });
      clients.push(c);
      return c;
    },
    async stopAndFsck() {
      if (stopped) return [];
      stopped = true;
      try {
        for (const c of clients) c.close();
        raw.close();
        daxd.dax.failpoints.releaseAll();
        await daxd.stop();
        const storage = MmapStorage.open(volumePath);
        try {
          return (await fsck(storage)).findings;
        } finally {
          storage.close();
        }
      } finally {
        tmp.remove();
      }
    },
  };
}

/** Every block some pin holds a reference on right now (entries with pin counts). */
export function pinnedPfns(dax: Dax): Map<number, string> {
  const out = new Map<number, string>();
  const ctx = Dax.contextForTests(dax); // white-box: the entries' and the pins' own references
  for (const [ino, as] of ctx.spaces) for (const e of as.pinned) out.set(e.pfn, `inode ${ino} pgoff ${e.pgoff}`);
  for (const p of ctx.pins.byId.values()) {
    p.entries.forEach((e, i) => { if (e !== null) out.set(p.pfns[i], `pin ${p.id.slice(0, 8)} page ${i}`); });
  }
  return out;
}

export interface PinGuard {
  /** One line per freed block that a pin held at the time. */
  readonly violations: string[];
  /** Blocks freed while the guard was on. */
  readonly freed: number;
  restore(): void;
}

/** Records every free of a pinned block (S4). Synchronous check inside the allocator call. */
export function guardPinnedFrees(dax: Dax): PinGuard {
  const alloc = dax.fs.alloc;
  const original = alloc.free.bind(alloc);
  const violations: string[] = [];
  let freed = 0;
  alloc.free = (pfn: number, count: number): void => {
    const pinned = pinnedPfns(dax);
    for (let b = pfn; b < pfn + count; b++) {
      const holder = pinned.get(b);
      if (holder !== undefined) violations.push(`block ${b} freed while pinned (${holder})`);
    }
    freed += count;
    original(pfn, count);
  };
  return {
    violations,
    get freed() { return freed; },
    restore: () => { alloc.free = original; },
  };
}

/**
 * Pin intervals and layout calls on one counter. A pin's interval runs from its Pin reply
 * to the moment its Unpin is sent: the server held the references at least that long. A
 * layout call whose [start, done] lies inside such an interval (over a page in its range)
 * changed the layout while the pin stood.
 */
export class Timeline {
  private seq = 0;
  private readonly pins: Array<{ from: number; to: number; first: number; last: number }> = [];
  private readonly layouts: Array<{ what: string; from: number; to: number; first: number; last: number }> = [];

  now(): number {
    return ++this.seq;
  }

  pin(from: number, to: number, first: number, last: number): void {
    this.pins.push({ from, to, first, last });
  }

  layout(what: string, from: number, to: number, first: number, last: number): void {
    this.layouts.push({ what, from, to, first, last });
  }

  get pinCount(): number {
    return this.pins.length;
  }

  get layoutCount(): number {
    return this.layouts.length;
  }

  violations(): string[] {
    const out: string[] = [];
    for (const l of this.layouts) {
      for (const p of this.pins) {
        const overlaps = p.first <= l.last && l.first <= p.last;
        if (overlaps && p.from < l.from && l.to < p.to) out.push(`${l.what} [${l.from}, ${l.to}] ran inside pin [${p.from}, ${p.to}]`);
      }
    }
    return out;
  }
}

/** Distinct byte per (file, page, round), never 0. */
export function patternByte(seed: number): number {
  return 1 + (seed % 254);
}
