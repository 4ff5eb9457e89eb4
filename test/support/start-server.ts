/**
 * Test helpers: a real daxd (`bin/daxd.js serve`) as a child process on 127.0.0.1 port 0
 * with a real volume file in a temp dir, and the CLI run the same way.
 *
 * Synchronisation is by events only: startServer resolves when the server prints its
 * "daxd serving" line (which carries the bound address), stop()/kill() when the process
 * has exited. Processes are signalled by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DaxClient, type DaxClientOptions } from '../../client';

export const REPO_ROOT = (() => {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
})();
export const DAXD_BIN = path.join(REPO_ROOT, 'bin', 'daxd.js');

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StartedServer {
  address: string;
  /** The HTTP side's bound host:port (metrics, admin API, dashboard). */
  http: string;
  /** The NBD side's bound host:port ('null' when started with --nbd off). */
  nbd: string;
  pid: number;
  volumePath: string;
  /** Every JSON log line so far. */
  logs: Array<Record<string, unknown>>;
  /** Resolves with the first log line (past or future) whose msg is `msg`. */
  logged(msg: string): Promise<Record<string, unknown>>;
  stderr(): string;
  /** Resolves when the process exits. */
  exited: Promise<ExitStatus>;
  /** SIGTERM (graceful) by PID, then wait for the exit. */
  stop(): Promise<ExitStatus>;
  /** Any signal by PID (SIGKILL: crash), then wait for the exit. */
  kill(signal: NodeJS.Signals): Promise<ExitStatus>;
}

/** A fresh temp dir, removed by the returned function. */
export function tempDir(prefix = 'daxd-test-'): { dir: string; remove(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export interface StartOptions {
  /** Without one, the server uses its default (./data/daxd.vol under cwd). */
  volumePath?: string;
  /** Working directory of the server (default: the repository root). */
  cwd?: string;
  /** Size of the volume if it is created (default 64M). */
  size?: string;
  extraArgs?: string[];
  /** Added to the server's environment (e.g. a test pause: DAXD_TEST_DRAIN_PAUSE). */
  env?: Record<string, string>;
  /** The launcher to run (default: this repository's bin/daxd.js; the package test runs an installed copy's). */
  bin?: string;
}

function spawnDaxd(args: string[], cwd = REPO_ROOT, env: NodeJS.ProcessEnv = process.env, bin = DAXD_BIN): ChildProcess {
  return spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd, env });
}

function exitOf(child: ChildProcess): Promise<ExitStatus> {
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Start `daxd serve` on 127.0.0.1:0; resolves with the bound address once it serves. */
export function startServer(options: StartOptions): Promise<StartedServer> {
  const volumeArgs = options.volumePath === undefined ? [] : ['--volume', options.volumePath, '--size', options.size ?? '64M'];
  const child = spawnDaxd(['serve', ...volumeArgs, '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--nbd', '127.0.0.1:0', ...(options.extraArgs ?? [])], options.cwd,
    options.env === undefined ? process.env : { ...process.env, ...options.env }, options.bin);
  const pid = child.pid;
  if (pid === undefined) return Promise.reject(new Error('spawn failed'));
  const exited = exitOf(child);
  const logs: Array<Record<string, unknown>> = [];
  const waiters: Array<{ msg: string; resolve(entry: Record<string, unknown>): void }> = [];
  const logged = (msg: string) => new Promise<Record<string, unknown>>((resolve) => {
    const seen = logs.find((l) => l.msg === msg);
    if (seen) resolve(seen);
    else waiters.push({ msg, resolve });
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      buffered += s;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        for (const w of waiters.filter((x) => x.msg === entry.msg)) w.resolve(entry);
        if (entry.msg === 'daxd serving') {
          const signal = (sig: NodeJS.Signals) => {
            process.kill(pid, sig);
            return exited;
          };
          resolve({
            address: String(entry.grpc), http: String(entry.http), nbd: String(entry.nbd), pid, volumePath: String(entry.volume), logs, logged, stderr: () => stderr, exited,
            stop: () => signal('SIGTERM'), kill: signal,
          });
        }
      }
    });
    void exited.then((status) => reject(new Error(`daxd exited before serving (${JSON.stringify(status)}): ${stderr}`)));
  });
}

export interface CliResult extends ExitStatus {
  stdout: string;
  stderr: string;
}

/** Run `daxd ARGS...` to completion (in `options.env`, default this process's environment). */
export async function runCli(args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const child = spawnDaxd(args, REPO_ROOT, options.env);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const status = await exitOf(child);
  return { ...status, stdout, stderr };
}

/** fsck the (unserved) volume with the CLI: the findings, [] when clean. */
export async function fsckFindings(volumePath: string): Promise<unknown[]> {
  const result = await runCli(['fsck', volumePath, '--json']);
  if (result.code !== 0 && result.code !== 1) throw new Error(`daxd fsck failed (${result.code}): ${result.stderr}`);
  const report = JSON.parse(result.stdout) as { clean: boolean; findings: unknown[] };
  if (report.clean !== (result.code === 0)) throw new Error(`fsck exit status ${result.code} disagrees with clean=${report.clean}`);
  return report.findings;
}

/** An SDK client for the server, with short deadlines for tests. */
export function clientFor(server: { address: string }, options: DaxClientOptions = {}): DaxClient {
  return DaxClient.connect(server.address, { deadlineMs: 10_000, ...options });
}
