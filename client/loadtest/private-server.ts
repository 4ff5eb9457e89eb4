/**
 * A private daxd for runs not given --server: `bin/daxd.js serve` as a child process with
 * every listener (gRPC, NBD, HTTP) on 127.0.0.1 port 0, so it never collides with a
 * daxd already running (`npm start` holds HTTP :7071) or with another private run, and a
 * fresh sparse volume in a temporary directory. Ready when it prints its "daxd serving"
 * line (which names the bound address); stopped by PID with SIGTERM (then SIGKILL after
 * STOP_MS_MAX), and its directory removed.
 *
 * Interrupted runs clean up too: while a private server runs, SIGINT, SIGTERM and SIGHUP
 * to the tool stop it (by PID) and remove its directory before the tool exits with
 * 128 + the signal's number, and a plain process exit SIGKILLs it and removes the
 * directory synchronously.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const START_MS_MAX = 30_000;
const STOP_MS_MAX = 15_000;

export interface PrivateServer {
  address: string;
  pid: number;
  volumePath: string;
  stop(): Promise<void>;
}

function repoRoot(): string {
  let dir = __dirname;
  for (let depth = 0; depth < 8; depth++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'bin', 'daxd.js'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error(`no daxd package above ${__dirname}`);
}

/** Starts daxd with a volume of volumeBytes; extraNodeArgs go to node (e.g. --cpu-prof). */
export async function startPrivateServer(volumeBytes: number, extraNodeArgs: string[] = []): Promise<PrivateServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'daxd-load-'));
  const volumePath = path.join(dir, 'daxd-load.vol');
  const child = spawn(process.execPath, [...extraNodeArgs, path.join(repoRoot(), 'bin', 'daxd.js'), 'serve',
    '--volume', volumePath, '--size', String(volumeBytes), '--grpc', '127.0.0.1:0', '--nbd', '127.0.0.1:0', '--http', '127.0.0.1:0'],
  { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
  const pid = child.pid;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const remove = () => fs.rmSync(dir, { recursive: true, force: true });
  if (pid === undefined) {
    remove();
    throw new Error('could not spawn daxd');
  }
  const cleanup = cleanUpOnSignals(child, pid, exited, remove);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-4000)));
  const address = await new Promise<string>((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`daxd did not start within ${START_MS_MAX} ms: ${stderr}`)), START_MS_MAX);
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      buffered += s;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          const entry = JSON.parse(line) as { msg?: string; grpc?: string };
          if (entry.msg === 'daxd serving' && entry.grpc) {
            clearTimeout(timer);
            resolve(entry.grpc);
          }
        } catch {
          // not a log line
        }
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`daxd exited before serving: ${stderr}`));
    });
  }).catch((err: unknown) => {
    cleanup.dispose();
    if (child.exitCode === null) process.kill(pid, 'SIGKILL');
    remove();
    throw err;
  });
  // Keep draining stdout so the server never blocks on a full pipe.
  child.stdout?.resume();
  return {
    address, pid, volumePath,
    async stop() {
      cleanup.dispose();
      await stopChild(child, pid, exited);
      remove();
    },
  };
}

async function stopChild(child: ChildProcess, pid: number, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  process.kill(pid, 'SIGTERM');
  const killer = setTimeout(() => { if (child.exitCode === null) process.kill(pid, 'SIGKILL'); }, STOP_MS_MAX);
  await exited;
  clearTimeout(killer);
}

const CLEANUP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * While the server runs: a signal to the tool stops the server and removes its directory,
 * then the tool exits as the signal would have ended it (128 + its number); an exit of
 * the tool by any other path SIGKILLs the server and removes the directory (synchronous,
 * as 'exit' handlers must be). dispose() once the server is stopped the normal way.
 */
function cleanUpOnSignals(child: ChildProcess, pid: number, exited: Promise<void>, remove: () => void): { dispose(): void } {
  const onSignal = (signal: (typeof CLEANUP_SIGNALS)[number]): void => {
    dispose();
    process.stderr.write(`daxd: ${signal}: stopping the private daxd (pid ${pid}) and removing its volume\n`);
    void stopChild(child, pid, exited).finally(() => {
      remove();
      process.exit(128 + constants.signals[signal]);
    });
  };
  const onExit = (): void => {
    if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
    remove();
  };
  const handlers = CLEANUP_SIGNALS.map((signal) => [signal, () => onSignal(signal)] as const);
  for (const [signal, handler] of handlers) process.once(signal, handler);
  process.once('exit', onExit);
  function dispose(): void {
    for (const [signal, handler] of handlers) process.removeListener(signal, handler);
    process.removeListener('exit', onExit);
  }
  return { dispose };
}
