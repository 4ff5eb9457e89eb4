/**
 * npm run bench:stalled — server memory with stalled ReadStreams (a client that asks and
 * never reads its replies).
 *
 * Starts daxd as a child process (127.0.0.1:0), writes a FILE_MIB file, then opens
 * BENCH_STREAMS (default 8) ReadStreams, each asking for BENCH_ASK_MIB (default 256) MiB in
 * 1 MiB ops, and never reads them. BENCH_CONNECTIONS (default 1) spreads the streams over
 * that many connections. Records the server's RSS (/proc/PID/status VmRSS) and its
 * daxd_stream_bytes_buffered gauge:
 *   - before: idle, after the file was written;
 *   - during: once the stall has settled (gauge and RSS unchanged over SETTLE_POLLS polls,
 *     at most SETTLE_MS_MAX);
 *   - after: the streams cancelled, once the gauge is back to 0 and RSS settled.
 * Prints the figures and one JSON line (`--json PATH` also writes it). Bounded: ~1 min.
 */
import fs from 'node:fs';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { DaxClient } from '../../client';
import { CONNECTION_BYTES_BUFFERED_MAX, SERVER_BYTES_BUFFERED_MAX, STREAM_BYTES_BUFFERED_MAX } from '../../server/rpc/limits';
import { rawClients } from '../support/raw-rpc';
import { startServer, tempDir } from '../support/start-server';
import { MiB } from '../support/units';

const FILE_MIB = 64;
const STREAMS = Number(process.env.BENCH_STREAMS ?? 8);
const ASK_MIB = Number(process.env.BENCH_ASK_MIB ?? 256);
const CONNECTIONS = Math.max(1, Math.min(STREAMS, Number(process.env.BENCH_CONNECTIONS ?? 1)));
const POLL_MS = 250;
const SETTLE_POLLS = 6;
const SETTLE_MS_MAX = 20_000;

function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status);
  return kb ? Number(kb[1]) * 1024 : NaN;
}

async function gaugeBytes(http: string): Promise<number> {
  const text = await (await fetch(`http://${http}/metrics`)).text();
  const line = /^daxd_stream_bytes_buffered (\S+)$/m.exec(text);
  return line ? Number(line[1]) : NaN;
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Poll until `done(sample)` or unchanged for SETTLE_POLLS polls; bounded by SETTLE_MS_MAX. */
async function settle(pid: number, http: string, done: (s: { rss: number; gauge: number }) => boolean = () => false): Promise<{ rss: number; gauge: number; ms: number }> {
  const t0 = Date.now();
  let last = { rss: rssBytes(pid), gauge: await gaugeBytes(http) };
  let same = 0;
  while (Date.now() - t0 < SETTLE_MS_MAX && same < SETTLE_POLLS && !done(last)) {
    await pause(POLL_MS);
    const now = { rss: rssBytes(pid), gauge: await gaugeBytes(http) };
    // RSS moves by a few pages at idle: "unchanged" is within 1 MiB.
    same = now.gauge === last.gauge && Math.abs(now.rss - last.rss) < MiB ? same + 1 : 0;
    last = now;
  }
  return { ...last, ms: Date.now() - t0 };
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

async function main(): Promise<void> {
  const jsonArg = process.argv.indexOf('--json');
  const jsonPath = jsonArg > 0 ? process.argv[jsonArg + 1] : undefined;
  const tmp = tempDir('daxd-bench-stalled-');
  const server = await startServer({ volumePath: path.join(tmp.dir, 'stalled.vol'), size: '256M' });
  const client = DaxClient.connect(server.address, { deadlineMs: 60_000 });
  const raws = Array.from({ length: CONNECTIONS }, () => rawClients(server.address));
  try {
    const file = await client.create('big');
    await client.write(file.ino, 0, Buffer.alloc(FILE_MIB * MiB, 0x5a));
    const before = await settle(server.pid, server.http);

    const streams: Array<grpc.ClientDuplexStream<unknown, unknown>> = [];
    for (let k = 0; k < STREAMS; k++) {
      const stream = raws[k % CONNECTIONS].files.ReadStream();
      stream.on('error', () => undefined); // CANCELLED after cancel()
      // Asked in one go, and never read: the stream is paused from the start.
      for (let first = 0; first < ASK_MIB; first += 1024) {
        const n = Math.min(1024, ASK_MIB - first);
        stream.write({ ops: Array.from({ length: n }, (_, i) => ({ id: first + i, ino: file.ino, offset: ((first + i) % FILE_MIB) * MiB, length: MiB })) });
      }
      streams.push(stream as grpc.ClientDuplexStream<unknown, unknown>);
    }
    const during = await settle(server.pid, server.http);
    const peakRss = Math.max(during.rss, rssBytes(server.pid));

    for (const s of streams) s.cancel();
    const drained = await settle(server.pid, server.http, (s) => s.gauge === 0);
    const after = await settle(server.pid, server.http);

    const bound = Math.min(SERVER_BYTES_BUFFERED_MAX, CONNECTIONS * Math.min(CONNECTION_BYTES_BUFFERED_MAX, Math.ceil(STREAMS / CONNECTIONS) * STREAM_BYTES_BUFFERED_MAX));
    const figures = {
      bench: 'stalled-streams', streams: STREAMS, connections: CONNECTIONS, askedMiBPerStream: ASK_MIB, nodeVersion: process.version,
      boundBytes: bound,
      before: { rssBytes: before.rss, bufferedBytes: before.gauge },
      during: { rssBytes: during.rss, bufferedBytes: during.gauge, settleMs: during.ms },
      afterCancel: { rssBytes: after.rss, bufferedBytes: after.gauge, drainMs: drained.ms },
      rssGrowthBytes: peakRss - before.rss,
      clientRssBytes: process.memoryUsage().rss,
    };
    console.log(`stalled ReadStreams: ${STREAMS} on ${CONNECTIONS} connection(s), ${ASK_MIB} MiB asked each, never read`);
    console.log(`  bound on buffered bytes: ${mib(bound)}`);
    console.log(`  before:       server RSS ${mib(before.rss)}, buffered ${mib(before.gauge)}`);
    console.log(`  during:       server RSS ${mib(during.rss)}, buffered ${mib(during.gauge)} (growth ${mib(figures.rssGrowthBytes)})`);
    console.log(`  after cancel: server RSS ${mib(after.rss)}, buffered ${mib(after.gauge)}`);
    console.log(`  client RSS:   ${mib(figures.clientRssBytes)}`);
    const json = JSON.stringify(figures);
    console.log(json);
    if (jsonPath) fs.writeFileSync(jsonPath, `${json}\n`);
  } finally {
    for (const raw of raws) raw.close();
    client.close();
    await server.stop();
    tmp.remove();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
