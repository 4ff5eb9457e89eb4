/**
 * Fixtures of the deploy/ tests: running a daxd entry point (the repository's, or one of
 * a runtime tree built like the image) until its "daxd serving" line, running a command
 * to completion, the secrets of deploy/make-secrets.sh, YAML with merge keys (compose).
 * Processes are stopped by PID; synchronisation is by their output and exit events.
 */
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import yaml from 'js-yaml';
import fs from 'node:fs';
import { REPO_ROOT, type ExitStatus } from '../support/start-server';

export const DEPLOY_DIR = path.join(REPO_ROOT, 'deploy');
export const CONTAINER_BIN = path.join(REPO_ROOT, 'bin', 'daxd-container.js');
/** Bounds a helper command that should finish at once (a probe, `args`, openssl). */
export const COMMAND_MS_MAX = 30_000;

/** The environment without DAXD_* (the caller's shell may have some), plus `extra`. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('DAXD_')) env[key] = value;
  return { ...env, ...extra };
}

export interface CommandResult extends ExitStatus {
  stdout: string;
  stderr: string;
}

/** Run a program to completion (killed by PID after `timeoutMs`). */
export function run(file: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: options.cwd ?? REPO_ROOT, env: options.env ?? process.env, timeout: options.timeoutMs ?? COMMAND_MS_MAX, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: NodeJS.Signals }) | null;
      resolve({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : null, signal: e?.signal ?? null, stdout, stderr });
    });
  });
}

export interface Serving {
  grpc: string;
  http: string;
  pid: number;
  stderr(): string;
  exited: Promise<ExitStatus>;
  /** SIGTERM by PID, then the exit. */
  stop(): Promise<ExitStatus>;
}

/** Start `node ENTRY ARGS` and resolve at its "daxd serving" log line. */
export function startServing(entry: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }): Promise<Serving> {
  const child = spawn(process.execPath, [entry, ...args], { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) return Promise.reject(new Error(`spawn ${entry} failed`));
  const exited = new Promise<ExitStatus>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      buffered += s;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (entry.msg === 'daxd serving') {
          resolve({
            grpc: String(entry.grpc), http: String(entry.http), pid, stderr: () => stderr, exited,
            stop: () => {
              process.kill(pid, 'SIGTERM');
              return exited;
            },
          });
        }
      }
    });
    void exited.then((status) => reject(new Error(`${entry} exited before serving (${JSON.stringify(status)}): ${stderr}`)));
  });
}

/** deploy/make-secrets.sh into `dir`: the files and the admin token it printed. */
export async function makeSecrets(dir: string): Promise<{ dir: string; token: string }> {
  const result = await run('bash', [path.join(DEPLOY_DIR, 'make-secrets.sh'), dir]);
  if (result.code !== 0) throw new Error(`make-secrets.sh failed (${result.code}): ${result.stderr}`);
  const token = /^admin token: (\S+)$/m.exec(result.stdout)?.[1];
  if (token === undefined) throw new Error(`make-secrets.sh printed no token: ${result.stdout}`);
  return { dir, token };
}

/** Every document of a YAML file, with merge keys (`<<: *anchor`) resolved as compose does. */
export function loadYaml(file: string): unknown[] {
  const schema = yaml.CORE_SCHEMA.withTags(yaml.mergeTag);
  return yaml.loadAll(fs.readFileSync(file, 'utf8'), { schema }).filter((doc) => doc !== null && doc !== undefined);
}
