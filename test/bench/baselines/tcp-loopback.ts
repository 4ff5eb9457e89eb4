/**
 * Baseline: loopback TCP bandwidth with Node's net module, 1 MiB writes, honouring
 * backpressure ('drain'), into a sink in another process (tcp-sink.ts). Bandwidth is what
 * the sink received divided by the time until it acknowledged the last byte.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

const WRITE_BYTES = 1024 * 1024;

export interface TcpSink {
  address: string;
  pid: number;
  stop(): Promise<void>;
}

export function startTcpSink(): Promise<TcpSink> {
  const child = spawn(process.execPath, [path.join(__dirname, 'tcp-sink.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').once('data', (line: string) => {
      const { tcp } = JSON.parse(line) as { tcp: string };
      resolve({ address: tcp, pid: child.pid as number, stop: () => { process.kill(child.pid as number, 'SIGTERM'); return exited; } });
    });
    void exited.then(() => reject(new Error('tcp sink exited')));
  });
}

/** Streams 1 MiB writes to the sink for seconds; resolves with bytes/s received. */
export function tcpBandwidth(address: string, seconds: number): Promise<{ bytesPerSec: number; bytes: number }> {
  const [host, port] = address.split(':');
  const chunk = Buffer.alloc(WRITE_BYTES, 0x5a);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), host);
    let reply = '';
    let t0 = 0;
    socket.setEncoding('utf8');
    socket.on('error', reject);
    socket.on('data', (s: string) => (reply += s));
    socket.on('end', () => {
      const elapsedS = (performance.now() - t0) / 1000;
      const { bytes } = JSON.parse(reply) as { bytes: number };
      resolve({ bytesPerSec: bytes / elapsedS, bytes });
    });
    socket.on('connect', () => {
      t0 = performance.now();
      const endAt = t0 + seconds * 1000;
      const pump = () => {
        while (performance.now() < endAt) {
          if (!socket.write(chunk)) {
            socket.once('drain', pump);
            return;
          }
        }
        socket.end();
      };
      pump();
    });
  });
}
