/**
 * A daxd child process for the benches, from this build or an older one (`--before DIR`:
 * DIR/dist/cli/main.js), with optional node flags (--cpu-prof). `daxd serve` on
 * 127.0.0.1 port 0 (gRPC, HTTP and NBD) with a sparse volume in `dir`; ready when it logs
 * "daxd serving"; stopped by PID (SIGTERM, then SIGKILL after STOP_MS_MAX).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from '../support/start-server';

const START_MS_MAX = 30_000;
const STOP_MS_MAX = 15_000;

export interface DaxdChild {
  address: string;
  nbd: string;
  pid: number;
  /** The build it runs (its dist/cli/main.js). */
  mainJs: string;
  stop(): Promise<void>;
}

export interface DaxdChildOptions {
  volumePath: string;
  size: string;
  /** Build root (holding dist/); default this repository. */
  buildDir?: string;
  nodeArgs?: string[];
}

export function startDaxdChild(o: DaxdChildOptions): Promise<DaxdChild> {
  const mainJs = path.join(o.buildDir ?? REPO_ROOT, 'dist', 'cli', 'main.js');
  const child = spawn(process.execPath, [...(o.nodeArgs ?? []), path.join(__dirname, 'daxd-launch.js'), mainJs, 'serve',
    '--volume', o.volumePath, '--size', o.size, '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--nbd', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'], cwd: path.dirname(o.volumePath) });
  const pid = child.pid;
  if (pid === undefined) return Promise.reject(new Error('could not spawn daxd'));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-4000)));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    process.kill(pid, 'SIGTERM');
    const killer = setTimeout(() => { if (child.exitCode === null) process.kill(pid, 'SIGKILL'); }, STOP_MS_MAX);
    await exited;
    clearTimeout(killer);
  };
  return new Promise<DaxdChild>((resolve, reject) => {
    const timer = setTimeout(() => { void stop(); reject(new Error(`daxd (${mainJs}) did not start within ${START_MS_MAX} ms: ${stderr}`)); }, START_MS_MAX);
    let buffered = '';
    let serving = false;
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      if (serving) return; // keep draining: the server never blocks on a full pipe
      buffered += s;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let entry: { msg?: string; grpc?: string; nbd?: string } = {};
        try {
          entry = JSON.parse(line) as typeof entry;
        } catch {
          continue; // not a log line
        }
        if (entry.msg === 'daxd serving' && entry.grpc) {
          serving = true;
          clearTimeout(timer);
          resolve({ address: entry.grpc, nbd: String(entry.nbd), pid, mainJs, stop });
          return;
        }
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`daxd (${mainJs}) exited before serving: ${stderr}`));
    });
  });
}
