/**
 * Test helper: run a command (npm, tsc, node) to completion in its own process group,
 * bounded in time: past timeoutMs the whole group (npm's node-gyp, make and g++ under it)
 * is killed by its PGID (SIGKILL) and the result says so. Output is kept to
 * OUTPUT_CHARS_MAX per stream (the tail), so a chatty build cannot grow it without bound.
 */
import { spawn } from 'node:child_process';

/** What is kept of each of stdout and stderr (the last characters): room for `npm pack --json`'s file list. */
export const OUTPUT_CHARS_MAX = 1024 * 1024;

export interface BoundedResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
}

export interface BoundedOptions {
  cwd: string;
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
}

const keepTail = (s: string): string => (s.length > OUTPUT_CHARS_MAX ? s.slice(s.length - OUTPUT_CHARS_MAX) : s);

export function runBounded(command: string, args: string[], options: BoundedOptions): Promise<BoundedResult> {
  const t0 = performance.now();
  // detached: a new process group whose id is the child's PID, so the kill reaches its children.
  const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout = keepTail(stdout + s)));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr = keepTail(stderr + s)));
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // The group is already gone.
      }
    }
  }, options.timeoutMs);
  return new Promise((resolve, reject) => {
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut, ms: performance.now() - t0 });
    });
  });
}

/** An assertion message for a failed run: the command, how it ended, the tail of its output. */
export function describeRun(what: string, r: BoundedResult): string {
  const how = r.timedOut ? 'timed out (killed)' : `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}`;
  return `${what}: ${how} after ${Math.round(r.ms)} ms\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`;
}
