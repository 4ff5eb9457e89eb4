/**
 * One metadata transaction: the shadow images of every metadata block it changed, the
 * data blocks that must be durable before it commits (S2: new blocks are zeroed or fully
 * written, and flushed, before the transaction that maps them), and the blocks it freed
 * (reusable only once it has committed and been checkpointed).
 */
export interface BlockRun {
  pfn: number;
  count: number;
}

export class Transaction {
  readonly images = new Map<number, Uint8Array>();
  readonly ordered: BlockRun[] = [];
  readonly freed: BlockRun[] = [];
  readonly done: Promise<void>;
  /** Someone waits for this transaction while the previous one is still committing. */
  commitRequested = false;
  resolve!: () => void;
  reject!: (err: Error) => void;

  constructor(readonly seq: number) {
    this.done = new Promise<void>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    // A failed commit is reported to every waiter; an unobserved one must not crash.
    this.done.catch(() => undefined);
  }

  get empty(): boolean {
    return this.images.size === 0 && this.freed.length === 0 && this.ordered.length === 0;
  }
}

/** Sorts and merges runs of blocks so each contiguous range is flushed once. */
export function coalesceRuns(runs: readonly BlockRun[]): BlockRun[] {
  const sorted = [...runs].sort((a, b) => a.pfn - b.pfn);
  const out: BlockRun[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.pfn <= last.pfn + last.count) {
      last.count = Math.max(last.count, r.pfn + r.count - last.pfn);
    } else {
      out.push({ pfn: r.pfn, count: r.count });
    }
  }
  return out;
}
