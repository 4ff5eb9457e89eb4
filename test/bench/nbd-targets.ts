/**
 * The NBD export's performance targets (issue 12), as ratios to nbdkit's file plugin in the
 * same run, both driven by the same fio command: >= 1.0x at 4 KiB QD16 and QD64, >= 0.6x at
 * QD1, >= 0.8x for 1 MiB sequential at QD4. Used by `npm run bench` and `npm run bench:nbd`.
 * Ratios of ops/s (for 1 MiB blocks the same ratio as of bytes/s).
 */
export const DAXD_NBD_TARGETS: ReadonlyArray<{ id: string; ratioMin: number }> = [
  { id: 'randread-4k-qd1', ratioMin: 0.6 },
  { id: 'randread-4k-qd16', ratioMin: 1.0 },
  { id: 'randread-4k-qd64', ratioMin: 1.0 },
  { id: 'randwrite-4k-qd1', ratioMin: 0.6 },
  { id: 'randwrite-4k-qd16', ratioMin: 1.0 },
  { id: 'randwrite-4k-qd64', ratioMin: 1.0 },
  { id: 'seqread-1m-qd4', ratioMin: 0.8 },
  { id: 'seqwrite-1m-qd4', ratioMin: 0.8 },
];

export interface NbdPair {
  id: string;
  label: string;
  nbdkit?: { opsPerSec: number };
  daxdNbd?: { opsPerSec: number };
}

/** One line per target: "4 KiB randread QD16 daxd-nbd >= 1.0x nbdkit: 1.12x MET". */
export function daxdNbdTargets(rows: NbdPair[]): string[] {
  const out: string[] = [];
  for (const t of DAXD_NBD_TARGETS) {
    const r = rows.find((x) => x.id === t.id);
    if (!r) continue;
    const what = `${r.label} daxd-nbd >= ${t.ratioMin.toFixed(1)}x nbdkit`;
    if (!r.nbdkit || !r.daxdNbd || r.nbdkit.opsPerSec === 0) {
      out.push(`${what}: no figure (${!r.nbdkit ? 'nbdkit' : 'daxd-nbd'} missing)`);
      continue;
    }
    const x = r.daxdNbd.opsPerSec / r.nbdkit.opsPerSec;
    out.push(`${what}: ${x.toFixed(2)}x ${x >= t.ratioMin ? 'MET' : 'NOT MET'}`);
  }
  return out;
}
