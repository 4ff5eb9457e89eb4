/**
 * The gRPC performance targets of `npm run bench` (issue 14), checked as ratios within one
 * run: 1 MiB Files I/O against loopback TCP and the echo, 4 KiB rows against the --before
 * build, QD1 CPU per op against the echo's, FaultBatch, in-process faults, pin cycles,
 * 1 MiB DMA and MappedFile reads against 1 MiB Files reads.
 */
import type { BenchRow } from './bench-rows';

const KIB4 = 4096;

interface Figures {
  opsPerSec: number;
  bytesPerSec: number;
  clientCpuUsPerOp: number;
  serverCpuUsPerOp: number;
}

/** A daxd-load case's medians, as bench-all.ts has them. */
export interface TargetRow {
  id: string;
  label: string;
  unit: string;
  bs: number;
  qd: number;
  daxd: Figures;
  before?: Figures;
  echo?: Figures;
  /** Loopback TCP of the same run, MB/s (1 MiB rows). */
  tcp?: number;
}

/** The gRPC performance targets (issue 14), as ratios in this run. */
export function grpcTargets(rows: TargetRow[], extra: BenchRow[]): string[] {
  const out: string[] = [];
  const check = (what: string, x: number | undefined, min: number, max = Infinity) => {
    if (x === undefined || !Number.isFinite(x)) out.push(`${what}: no figure`);
    else out.push(`${what}: ${x.toFixed(2)}x ${x >= min && x <= max ? 'MET' : 'NOT MET'}`);
  };
  const get = (id: string) => rows.find((r) => r.id === id);
  const total = (m: Figures | undefined) => (m ? m.clientCpuUsPerOp + m.serverCpuUsPerOp : undefined);
  for (const id of ['seqread-1m-qd4', 'seqwrite-1m-qd4']) {
    const r = get(id);
    if (!r) continue;
    check(`${r.label} >= 0.35x loopback TCP`, r.tcp === undefined ? undefined : r.daxd.bytesPerSec / 1e6 / r.tcp, 0.35);
    check(`${r.label} >= 1.0x echo`, r.echo && r.daxd.bytesPerSec / r.echo.bytesPerSec, 1);
  }
  for (const r of rows.filter((row) => row.bs === KIB4 && row.unit === 'IOPS')) {
    if (r.before) check(`${r.label} >= 1.0x before`, r.daxd.opsPerSec / r.before.opsPerSec, 1);
    if (r.qd === 1) {
      const d = total(r.daxd);
      const e = total(r.echo);
      check(`${r.label} CPU per op <= 1.1x echo's`, d !== undefined && e !== undefined ? d / e : undefined, 0, 1.1);
    }
  }
  for (const id of ['fault-read-hole', 'fault-write-allocate']) {
    const r = get(id);
    if (r) check(`${r.label} >= 150k/s`, r.daxd.opsPerSec / 150_000, 1);
  }
  const mapped = extra.find((r) => r.id === 'faults-inprocess-mapped');
  if (mapped) check(`${mapped.label} >= 500k/s`, mapped.daxd / 500_000, 1);
  const extraRow = (id: string) => extra.find((r) => r.id === id);
  const batch = extraRow('faults-grpc-mapped');
  if (batch) check(`${batch.label} >= 150k/s`, batch.daxd / 150_000, 1);
  const perEntry = extraRow('faults-bytes-per-entry');
  if (perEntry) check(`${perEntry.label} <= 200 B`, perEntry.daxd / 200, 0, 1);
  const seq = extraRow('mappedfile-over-files-read');
  if (seq) check(`MappedFile sequential >= 0.5x Files.Read`, seq.daxd, 0.5);
  for (const id of ['pin-write-stream', 'pin-read-stream']) {
    const r = get(id);
    if (r) check(`${r.label} >= 10k cycles/s`, r.daxd.opsPerSec / 10_000, 1);
  }
  const files1m = get('seqread-1m-qd4');
  for (const [id, filesId] of [['dma-read-1m-qd4', 'seqread-1m-qd4'], ['dma-write-1m-qd4', 'seqwrite-1m-qd4']]) {
    const dma = get(id);
    const files = get(filesId);
    if (dma && files) check(`${dma.label} >= 0.8x ${files.label}`, dma.daxd.bytesPerSec / files.daxd.bytesPerSec, 0.8);
  }
  const mappedRead = get('mapped-read-1m');
  if (mappedRead && files1m) check(`${mappedRead.label} >= 0.5x Files 1 MiB read`, mappedRead.daxd.bytesPerSec / files1m.daxd.bytesPerSec, 0.5);
  return out;
}
