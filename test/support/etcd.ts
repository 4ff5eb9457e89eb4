/**
 * A real etcd for the cluster tests: `etcd` (Debian's etcd-server, /usr/bin/etcd) on free
 * 127.0.0.1 ports (client and peer) with a temp data dir. startEtcd resolves once the
 * server answers /health (polled with `until`, bounded by ETCD_START_MS); stop() ends it by
 * PID (never by name) and removes the data dir. pause()/resume() SIGSTOP/SIGCONT it, for
 * fencing tests (a frozen etcd answers nothing, as one behind a partition).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { tempDir } from './start-server';
import { until } from './until';

/** The etcd binary: $ETCD_BIN, else the Debian package's. */
export const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd';
/** Longest wait for a started etcd to answer /health. */
export const ETCD_START_MS = 15_000;

export interface StartedEtcd {
  /** The client URL, http://127.0.0.1:PORT (what --etcd takes). */
  url: string;
  pid: number;
  /** SIGSTOP by PID: etcd stops answering (its connections stay open). */
  pause(): void;
  /** SIGCONT by PID. */
  resume(): void;
  /** SIGKILL by PID (SIGCONT first if paused), wait for the exit, remove the data dir. Idempotent. */
  stop(): Promise<void>;
}

/** The cluster tests fail, not skip, without etcd (as the NBD tests without their clients). */
export function assertEtcdInstalled(): void {
  if (!fs.existsSync(ETCD_BIN)) throw new Error(`${ETCD_BIN} not found: install Debian's etcd-server (.ci/run does) or set ETCD_BIN`);
}

/** A port that was free a moment ago on 127.0.0.1 (the kernel's pick, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function healthy(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
    const body = (await response.json()) as { health?: string };
    return body.health === 'true';
  } catch {
    return false;
  }
}

export async function startEtcd(): Promise<StartedEtcd> {
  const tmp = tempDir('daxd-etcd-');
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const child = spawn(ETCD_BIN, [
    '--name', 'test', '--data-dir', tmp.dir,
    '--listen-client-urls', url, '--advertise-client-urls', url,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `test=${peer}`, '--log-level', 'error',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) {
    tmp.remove();
    throw new Error(`cannot spawn ${ETCD_BIN}`);
  }
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-4000)));
  let exitedFlag = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    exitedFlag = true;
    resolve();
  }));
  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      if (!exitedFlag) {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGKILL');
      }
      await exited;
      tmp.remove();
    })();
    return stopped;
  };
  try {
    await until(async () => {
      if (exitedFlag) throw new Error(`etcd exited at start: ${stderr}`);
      return healthy(url);
    }, `etcd at ${url} answering /health`, ETCD_START_MS);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url, pid, stop,
    pause: () => process.kill(pid, 'SIGSTOP'),
    resume: () => process.kill(pid, 'SIGCONT'),
  };
}
