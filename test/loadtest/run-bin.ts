/**
 * Test helper: run one of the package's bins (bin/daxd-load.js, bin/daxd-fsx.js) as a
 * child process to completion, bounded: past timeoutMs it is killed by PID (SIGKILL) and
 * the result says so.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from '../support/start-server';

export interface BinResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export function runBin(bin: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<BinResult> {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', bin), ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO_ROOT, env });
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  }, timeoutMs);
  return new Promise((resolve) => child.once('exit', (code, signal) => {
    clearTimeout(timer);
    resolve({ code, signal, stdout, stderr, timedOut });
  }));
}
