/**
 * Baseline: nbdkit (Debian package `nbdkit`, its file plugin, in C) serving a file of the
 * same size as daxd's bench file on 127.0.0.1, driven by fio's nbd engine (Debian `fio`,
 * built with libnbd). When either is missing and we are root on a Debian-like system, it
 * is installed with apt-get (update, then install); otherwise the bench prints how and
 * reports the baseline as missing. Every command is printed before it runs.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

const FIO_SLACK_S = 20;

export interface FioFigures {
  opsPerSec: number;
  bytesPerSec: number;
  p50Us: number;
  p99Us: number;
  /** fio's own CPU (usr + sys) per op, us. */
  clientCpuUsPerOp: number;
}

export interface Nbdkit {
  uri: string;
  pid: number;
  command: string;
  stop(): Promise<void>;
}

function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}

export const INSTALL_COMMANDS = ['apt-get update', 'DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nbdkit fio'];

/** Makes sure nbdkit and fio are there; returns null when they are, else why not. */
export function ensureNbdTools(log: (line: string) => void): string | null {
  if (has('nbdkit') && has('fio')) return null;
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!root || !has('apt-get')) {
    return `nbdkit and fio are needed for the NBD baseline; install them with:\n  sudo ${INSTALL_COMMANDS.join(' && sudo ')}`;
  }
  for (const command of INSTALL_COMMANDS) {
    log(`$ ${command}`);
    const r = spawnSync('sh', ['-c', command], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 240_000 });
    if (r.status !== 0) return `"${command}" failed (exit ${r.status}); install nbdkit and fio by hand`;
  }
  return has('nbdkit') && has('fio') ? null : 'nbdkit or fio still missing after apt-get install';
}

/** A free TCP port on 127.0.0.1 (nbdkit cannot report the port it bound). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, ms: number): Promise<void> {
  const endAt = Date.now() + ms;
  while (Date.now() < endAt) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      c.once('connect', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nbdkit did not listen on 127.0.0.1:${port} within ${ms} ms`);
}

/** Starts nbdkit's file plugin on `file` (already of the right size and contents). */
export async function startNbdkit(file: string): Promise<Nbdkit> {
  const port = await freePort();
  const args = ['--foreground', '--exit-with-parent', '--ipaddr', '127.0.0.1', '--port', String(port), 'file', `file=${file}`];
  const child = spawn('nbdkit', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.pid === undefined) throw new Error('could not spawn nbdkit');
  const pid = child.pid;
  await waitForPort(port, 10_000);
  return {
    uri: `nbd://127.0.0.1:${port}/`, pid, command: `nbdkit ${args.join(' ')}`,
    stop: () => {
      if (child.exitCode === null) process.kill(pid, 'SIGTERM');
      return exited;
    },
  };
}

export function fioArgs(uri: string, rw: 'randread' | 'randwrite' | 'read' | 'write', bs: string, qd: number, sizeBytes: number, seconds: number): string[] {
  return [
    '--name=nbd', '--ioengine=nbd', `--uri=${uri}`, `--rw=${rw}`, `--bs=${bs}`, `--iodepth=${qd}`, `--size=${sizeBytes}`,
    '--time_based', `--runtime=${seconds}s`, '--numjobs=1', '--randrepeat=0', '--output-format=json',
  ];
}

interface FioJobSide {
  iops: number;
  bw_bytes: number;
  total_ios: number;
  clat_ns?: { percentile?: Record<string, number> };
}

/** Runs fio once; bounded by its runtime plus FIO_SLACK_S. */
export function runFio(args: string[]): FioFigures {
  const out = execFileSync('fio', args, { encoding: 'utf8', timeout: (Number(/--runtime=([\d.]+)/.exec(args.join(' '))?.[1] ?? 5) + FIO_SLACK_S) * 1000 });
  // fio prints "fio: connected to NBD server" before the JSON.
  const json = JSON.parse(out.slice(out.indexOf('{'))) as { jobs: Array<{ read: FioJobSide; write: FioJobSide; usr_cpu: number; sys_cpu: number; job_runtime: number }> };
  const job = json.jobs[0];
  const side = job.read.total_ios > 0 ? job.read : job.write;
  const pct = side.clat_ns?.percentile ?? {};
  const cpuUs = ((job.usr_cpu + job.sys_cpu) / 100) * job.job_runtime * 1000;
  return {
    opsPerSec: side.iops, bytesPerSec: side.bw_bytes, p50Us: (pct['50.000000'] ?? 0) / 1000, p99Us: (pct['99.000000'] ?? 0) / 1000,
    clientCpuUsPerOp: side.total_ios > 0 ? cpuUs / side.total_ios : 0,
  };
}

/** A file of sizeBytes with non-zero contents (reads hit data, as on daxd's laid-out file). */
export function makeImage(file: string, sizeBytes: number): void {
  const fd = fs.openSync(file, 'w');
  try {
    const chunk = Buffer.alloc(1024 * 1024, 0xa5);
    for (let at = 0; at < sizeBytes; at += chunk.length) fs.writeSync(fd, chunk, 0, Math.min(chunk.length, sizeBytes - at), at);
  } finally {
    fs.closeSync(fd);
  }
}
