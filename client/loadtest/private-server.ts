/**
 * A private daxd for runs not given --server: `bin/daxd.js serve` as a child process on
 * 127.0.0.1 port 0 with a fresh sparse volume in a temporary directory. Ready when it
 * prints its "daxd serving" line (which names the bound address); stopped by PID with
 * SIGTERM (then SIGKILL after STOP_MS_MAX), and its directory removed.
 */
import { spawn } from 'node:child_process';
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
    '--volume', volumePath, '--size', String(volumeBytes), '--grpc', '127.0.0.1:0', '--nbd', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
  const pid = child.pid;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const remove = () => fs.rmSync(dir, { recursive: true, force: true });
  if (pid === undefined) {
    remove();
    throw new Error('could not spawn daxd');
  }
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
    if (child.exitCode === null) process.kill(pid, 'SIGKILL');
    remove();
    throw err;
  });
  // Keep draining stdout so the server never blocks on a full pipe.
  child.stdout?.resume();
  return {
    address, pid, volumePath,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(pid, 'SIGTERM');
        const killer = setTimeout(() => { if (child.exitCode === null) process.kill(pid, 'SIGKILL'); }, STOP_MS_MAX);
        await exited;
        clearTimeout(killer);
      }
      remove();
    },
  };
}
