/**
 * Fixtures of the tests that drive daxd's NBD export with clients nobody here wrote
 * (test/nbd/nbd-clients.test.ts, nbd-cross.test.ts): the Debian tools nbdinfo, nbdcopy
 * (libnbd-bin), qemu-img and qemu-io (qemu-utils) and fio (its nbd engine).
 *
 * - runTool: one tool run as a child process, asynchronously (an in-process daxd keeps
 *   serving while it runs), bounded by a timeout after which it is SIGKILLed by PID.
 * - nbdUri: the export of a file (export name = file name).
 * - FIO_JOBS_DIR: the fio job files shipped under test/bench/fio (the documented NBD load
 *   tool); the tests run those very files, so the README's commands stay true.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../support/start-server';

/** A tool that runs longer than this is killed: nothing in these tests takes more than a few seconds. */
export const TOOL_TIMEOUT_MS = 30_000;

export const FIO_JOBS_DIR = path.join(REPO_ROOT, 'test', 'bench', 'fio');

export interface ToolResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** The command line, for failure messages. */
  command: string;
}

export interface RunningTool {
  pid: number;
  done: Promise<ToolResult>;
}

/** Starts `cmd args...`; its result once it exits (SIGKILL by PID after timeoutMs). */
export function startTool(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): RunningTool {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env }, cwd: opts.cwd });
  if (child.pid === undefined) throw new Error(`could not spawn ${cmd}`);
  const pid = child.pid;
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    process.kill(pid, 'SIGKILL');
  }, opts.timeoutMs ?? TOOL_TIMEOUT_MS);
  const command = [cmd, ...args].join(' ');
  const done = new Promise<ToolResult>((resolve, reject) => {
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    // 'close', not 'exit': both pipes are drained by then.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut, command });
    });
  });
  return { pid, done };
}

export function runTool(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<ToolResult> {
  return startTool(cmd, args, opts).done;
}

/** Runs a tool that must succeed: its stdout, or a failure naming the command and its stderr. */
export async function succeed(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const r = await runTool(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${r.command} exited ${r.code ?? r.signal}${r.timedOut ? ' (timed out)' : ''}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

export function nbdUri(address: string, exportName: string): string {
  return `nbd://${address}/${encodeURIComponent(exportName)}`;
}

export function sha256(data: Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

export function sha256File(file: string): string {
  return sha256(fs.readFileSync(file));
}

/** One extent of `nbdinfo --map --json` (base:allocation): type bit 1 = hole, bit 2 = reads as zeroes. */
export interface MapExtent {
  offset: number;
  length: number;
  type: number;
  description: string;
}

export const HOLE = 1;
export const ZERO = 2;

/** `nbdinfo --map --json URI`, adjacent extents of the same type merged (servers may split them anywhere). */
export async function allocationMap(uri: string): Promise<MapExtent[]> {
  const extents = JSON.parse(await succeed('nbdinfo', ['--map', '--json', uri])) as MapExtent[];
  const out: MapExtent[] = [];
  for (const e of extents) {
    const last = out[out.length - 1];
    if (last && last.type === e.type && last.offset + last.length === e.offset) last.length += e.length;
    else out.push({ ...e });
  }
  return out;
}
