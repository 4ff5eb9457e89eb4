/** Pieces the benches share: process CPU from /proc, the echo child. */
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';

/** Clock ticks per second of /proc/PID/stat (getconf CLK_TCK; 100 on Linux). */
const CLK_TCK = 100;

/** utime + stime of a process, in microseconds (10 ms resolution). */
export function processCpuUs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
}

/** The bare grpc-js echo server (echo-server.ts) as a child process, stopped by PID. */
export function startEcho(nodeArgs: string[] = []): Promise<{ address: string; pid: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [...nodeArgs, path.join(__dirname, 'echo-server.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').once('data', (line: string) => {
      const { echo } = JSON.parse(line) as { echo: string };
      resolve({ address: echo, pid: child.pid as number, stop: () => { if (child.exitCode === null && child.signalCode === null) process.kill(child.pid as number, 'SIGTERM'); return exited; } });
    });
    void exited.then(() => reject(new Error('echo server exited')));
  });
}
