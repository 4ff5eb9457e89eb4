/**
 * A seeded pseudo-random generator (sfc32, seeded through splitmix32): the same seed gives
 * the same sequence on every machine, which is what lets a failing daxd-load or daxd-fsx
 * run be replayed with `--seed`. Not for anything secret.
 */

function splitmix32(state: number): [number, number] {
  const s = (state + 0x9e3779b9) | 0;
  let z = s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return [s, (z ^ (z >>> 16)) >>> 0];
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** seed: any safe integer (the high bits are mixed in too). */
  constructor(readonly seed: number) {
    let s = (seed ^ Math.floor(seed / 2 ** 32)) | 0;
    let v: number;
    [s, v] = splitmix32(s); this.a = v;
    [s, v] = splitmix32(s); this.b = v;
    [s, v] = splitmix32(s); this.c = v;
    [, v] = splitmix32(s); this.d = v;
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** A child generator with its own stream (per worker, per session). */
  fork(stream: number): Rng {
    return new Rng((this.seed * 31 + stream * 0x9e3779b1 + 1) % Number.MAX_SAFE_INTEGER);
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform integer in [0, n), n <= 2^53. */
  int(n: number): number {
    if (n <= 4294967296) return Math.floor(this.float() * n);
    return Math.floor((this.u32() * 4294967296 + this.u32()) / 18446744073709551616 * n);
  }

  /** Uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability pct / 100. */
  percent(pct: number): boolean {
    return this.float() * 100 < pct;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** Index chosen with probability weight[i] / sum(weights). */
  weighted(weights: readonly number[]): number {
    let total = 0;
    for (const w of weights) total += w;
    let x = this.float() * total;
    for (let i = 0; i < weights.length; i++) {
      x -= weights[i];
      if (x < 0) return i;
    }
    return weights.length - 1;
  }

  /** Fills buf with pseudo-random bytes. */
  fill<T extends Uint8Array>(buf: T): T {
    let i = 0;
    for (; i + 4 <= buf.length; i += 4) {
      const v = this.u32();
      buf[i] = v & 0xff; buf[i + 1] = (v >>> 8) & 0xff; buf[i + 2] = (v >>> 16) & 0xff; buf[i + 3] = v >>> 24;
    }
    for (; i < buf.length; i++) buf[i] = this.u32() & 0xff;
    return buf;
  }
}

/** A seed from the clock, for runs that were not given one (printed, so they can be replayed). */
export function freshSeed(): number {
  return (Date.now() * 1000 + Math.floor(Math.random() * 1000)) % 2 ** 31;
}
