/**
 * daxd's NBD export driven by the storage world's own clients, none written here (Debian
 * libnbd-bin, qemu-utils, fio; .ci/run installs them): a real `daxd serve --nbd
 * 127.0.0.1:0` child, files made over gRPC with the SDK, then
 * - nbdinfo --list / --json: every file is an export named after it, with its size, the
 *   block sizes (min 1, preferred 4096, max >= 32 MiB) and the flags daxd advertises;
 * - nbdinfo --map: base:allocation of a sparse file, holes as holes, data as data,
 *   preallocated (unwritten) blocks as zeroes;
 * - nbdcopy: a 64 MiB sparse image in and out, checksum equal, holes still holes (on
 *   daxd's side: no block allocated for them);
 * - qemu-img info and compare against nbd://127.0.0.1:PORT/NAME (compare finds a byte
 *   changed over gRPC);
 * - fio's nbd engine with crc32c verify, QD 16, 4 KiB and 1 MiB (test/bench/fio/nbd-verify.fio,
 *   the job file the README documents).
 * Every tool is a child process with a timeout, killed by PID if it overruns.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { DaxClient } from '../../client';
import { seededRng } from '../support/rng';
import { clientFor, startServer, tempDir, type StartedServer } from '../support/start-server';
import { MiB, PAGE } from '../support/units';
import { allocationMap, FIO_JOBS_DIR, HOLE, nbdUri, runTool, sha256, sha256File, succeed, ZERO, type MapExtent } from './real-clients';

const COPY_BYTES = 64 * MiB;
/** The request limit NBD clients must be told is at least this (BLOCK_SIZE info, maximum). */
const REQUEST_BYTES_MIN_ADVERTISED = 32 * MiB;

interface Export {
  'export-name': string;
  'export-size': number;
  block_size_minimum?: number;
  block_size_preferred?: number;
  block_size_maximum?: number;
  contexts?: string[];
  is_read_only: boolean;
  can_flush: boolean;
  can_fua: boolean;
  can_trim: boolean;
  can_zero: boolean;
  can_fast_zero: boolean;
  can_multi_conn: boolean;
  can_cache: boolean;
}

/** The source image of the nbdcopy round trip: random data in runs, holes between them. */
function sparseImage(file: string, seed: number): { dataRanges: Array<[number, number]> } {
  const rng = seededRng(seed);
  const fd = fs.openSync(file, 'w');
  const dataRanges: Array<[number, number]> = [];
  try {
    fs.ftruncateSync(fd, COPY_BYTES);
    // Data runs of 4 KiB .. 2 MiB, page-aligned, with holes of 64 KiB .. 4 MiB between them.
    for (let at = 64 * 1024; at < COPY_BYTES;) {
      const len = Math.min(COPY_BYTES - at, PAGE * (1 + Math.floor(rng() * 512)));
      const data = Buffer.alloc(len);
      for (let i = 0; i < len; i++) data[i] = 1 + Math.floor(rng() * 255);
      fs.writeSync(fd, data, 0, len, at);
      dataRanges.push([at, at + len]);
      at += len + 16 * PAGE * (1 + Math.floor(rng() * 64));
    }
  } finally {
    fs.closeSync(fd);
  }
  return { dataRanges };
}

/** The extents of `map` that overlap [from, to). */
function overlapping(map: MapExtent[], from: number, to: number): MapExtent[] {
  return map.filter((e) => e.offset < to && from < e.offset + e.length);
}

describe('NBD export with real clients (nbdinfo, nbdcopy, qemu-img, fio)', function () {
  this.timeout(60_000);
  /**
   * Exports in the many-exports listing: more than a 256-option cap (~85 exports) or a
   * 10 s bound on the whole handshake (~48 exports: libnbd's MSG_MORE costs ~200 ms each) let through.
   */
  const LIST_MANY_EXPORTS = 90;
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;
  let client: DaxClient;
  let nbd: string;

  before(async function () {
    tmp = tempDir('daxd-nbd-clients-');
    // startServer passes --nbd 127.0.0.1:0; the "daxd serving" line names the bound address.
    server = await startServer({ volumePath: path.join(tmp.dir, 'nbd.vol'), size: '512M' });
    client = clientFor(server);
    nbd = server.nbd;
  });

  after(async function () {
    client?.close();
    if (server) {
      const status = await server.stop();
      assert.equal(status.code, 0, `daxd exited ${JSON.stringify(status)}: ${server.stderr()}`);
    }
    tmp?.remove();
  });

  async function sparseFile(name: string, sizeBytes: number): Promise<number> {
    const { ino } = await client.create(name, { exclusive: true });
    await client.truncate(ino, sizeBytes);
    return ino;
  }

  it('nbdinfo --list --json: every file is an export named after it, with its size and block sizes', async function () {
    await sparseFile('list-a.img', 8 * MiB);
    const b = await client.create('list b.img', { exclusive: true });
    await client.write(b.ino, 0, Buffer.alloc(3 * PAGE + 100, 0x5a));
    const list = JSON.parse(await succeed('nbdinfo', ['--list', '--json', `nbd://${nbd}`])) as { protocol: string; structured: boolean; exports: Export[] };
    assert.equal(list.protocol, 'newstyle-fixed');
    assert.equal(list.structured, true, 'structured replies negotiated');
    const byName = new Map(list.exports.map((e) => [e['export-name'], e]));
    assert.equal(byName.get('list-a.img')?.['export-size'], 8 * MiB, JSON.stringify([...byName.keys()]));
    assert.equal(byName.get('list b.img')?.['export-size'], 3 * PAGE + 100, 'a name with a space, a size that is no multiple of a page');
    const { files } = await client.list({ pageSize: 1000 });
    assert.deepEqual([...byName.keys()].sort(), files.map((f) => f.name).sort(), 'LIST names exactly the files');
    for (const e of list.exports) {
      assert.equal(e.block_size_minimum, 1, `${e['export-name']}: minimum block size`);
      assert.equal(e.block_size_preferred, 4096, `${e['export-name']}: preferred block size`);
      assert.ok((e.block_size_maximum ?? 0) >= REQUEST_BYTES_MIN_ADVERTISED, `${e['export-name']}: maximum block size ${e.block_size_maximum}`);
    }
  });

  it('nbdinfo --list of many exports: every one is listed (nbdinfo spends ~3 options and ~200 ms per export)', async function () {
    this.timeout(120_000);
    const names = Array.from({ length: LIST_MANY_EXPORTS }, (_, i) => `many-${String(i).padStart(4, '0')}.img`);
    for (let i = 0; i < names.length; i += 50) await Promise.all(names.slice(i, i + 50).map((n) => client.create(n, { exclusive: true })));
    const list = JSON.parse(await succeed('nbdinfo', ['--list', '--json', `nbd://${nbd}`])) as { exports: Export[] };
    const listed = new Set(list.exports.map((e) => e['export-name']));
    assert.deepEqual(names.filter((n) => !listed.has(n)), [], 'exports missing from nbdinfo --list');
    for (let i = 0; i < names.length; i += 50) await Promise.all(names.slice(i, i + 50).map((n) => client.unlink(n)));
  });

  it('nbdinfo --json of one export: writable, and the flags daxd advertises (flush, FUA, trim, zero, fast zero, multi-conn, base:allocation)', async function () {
    await sparseFile('flags.img', MiB);
    const info = JSON.parse(await succeed('nbdinfo', ['--json', nbdUri(nbd, 'flags.img')])) as { exports: Export[] };
    assert.equal(info.exports.length, 1);
    const e = info.exports[0];
    assert.equal(e['export-name'], 'flags.img');
    assert.equal(e['export-size'], MiB);
    assert.deepEqual(e.contexts, ['base:allocation']);
    assert.deepEqual(
      { ro: e.is_read_only, flush: e.can_flush, fua: e.can_fua, trim: e.can_trim, zero: e.can_zero, fastZero: e.can_fast_zero, multiConn: e.can_multi_conn, cache: e.can_cache },
      { ro: false, flush: true, fua: true, trim: true, zero: true, fastZero: true, multiConn: true, cache: true },
    );
  });

  it('nbdinfo --map: base:allocation of a sparse file, holes as holes, data as data, preallocated blocks as zeroes', async function () {
    const size = 8 * MiB;
    const ino = await sparseFile('map.img', size);
    const data: Array<[number, number]> = [[MiB, MiB + 64 * 1024], [4 * MiB, 4 * MiB + PAGE], [size - PAGE, size]];
    for (const [from, to] of data) await client.write(ino, from, Buffer.alloc(to - from, 0x33));
    await client.fallocate(ino, 'KEEP_SIZE', 6 * MiB, 16 * PAGE);
    const map = await allocationMap(nbdUri(nbd, 'map.img'));
    assert.equal(map.reduce((n, e) => n + e.length, 0), size, `the map covers the file: ${JSON.stringify(map)}`);
    for (const [from, to] of data) {
      assert.deepEqual(overlapping(map, from, to).map((e) => [e.offset, e.length, e.type]), [[from, to - from, 0]], `data at ${from}: ${JSON.stringify(map)}`);
    }
    const holes: Array<[number, number]> = [[0, MiB], [MiB + 64 * 1024, 4 * MiB], [4 * MiB + PAGE, 6 * MiB], [6 * MiB + 16 * PAGE, size - PAGE]];
    for (const [from, to] of holes) {
      const over = overlapping(map, from, to);
      assert.deepEqual(over.map((e) => [Math.max(e.offset, from), Math.min(e.offset + e.length, to), e.type]), [[from, to, HOLE | ZERO]], `hole [${from}, ${to}): ${JSON.stringify(map)}`);
    }
    // Allocated but never written: reads as zeroes (NBD_STATE_ZERO), not data.
    const unwritten = overlapping(map, 6 * MiB, 6 * MiB + 16 * PAGE);
    assert.ok(unwritten.every((e) => (e.type & ZERO) !== 0), `unwritten blocks: ${JSON.stringify(unwritten)}`);
  });

  it('nbdcopy round trip of a 64 MiB sparse image: checksum equal, holes preserved on daxd and back home', async function () {
    const source = path.join(tmp.dir, 'source.img');
    const back = path.join(tmp.dir, 'back.img');
    const { dataRanges } = sparseImage(source, 12);
    const dataBytes = dataRanges.reduce((n, [a, b]) => n + b - a, 0);
    const ino = await sparseFile('copy.img', COPY_BYTES);
    const uri = nbdUri(nbd, 'copy.img');
    await succeed('nbdcopy', [source, uri]);
    // On daxd: exactly the data blocks are allocated; every hole of the source is a hole.
    assert.equal((await client.stat(ino)).blocks, dataBytes / PAGE, 'blocks allocated on daxd');
    const map = await allocationMap(uri);
    let holeAt = 0;
    for (const [from, to] of [...dataRanges, [COPY_BYTES, COPY_BYTES] as [number, number]]) {
      if (from > holeAt) assert.ok(overlapping(map, holeAt, from).every((e) => (e.type & HOLE) !== 0), `source hole [${holeAt}, ${from}) not a hole on daxd`);
      holeAt = to;
    }
    assert.equal(sha256(await client.read(ino, 0, COPY_BYTES)), sha256File(source), 'what daxd holds (read over gRPC)');
    await succeed('nbdcopy', [uri, back]);
    assert.equal(sha256File(back), sha256File(source), 'the copy back');
    assert.equal(fs.statSync(back).size, COPY_BYTES);
    // The copy back is sparse too (nbdcopy asked daxd where the data is): data plus little slack.
    const allocated = fs.statSync(back).blocks * 512;
    assert.ok(allocated <= dataBytes + 4 * MiB, `copy back allocates ${allocated} bytes for ${dataBytes} bytes of data`);
  });

  it('qemu-img info and compare against nbd://127.0.0.1:PORT/NAME; compare finds a byte changed over gRPC', async function () {
    const local = path.join(tmp.dir, 'qemu.img');
    sparseImage(local, 34);
    const ino = await sparseFile('qemu.img', COPY_BYTES);
    const uri = nbdUri(nbd, 'qemu.img');
    await succeed('nbdcopy', [local, uri]);
    const info = JSON.parse(await succeed('qemu-img', ['info', '--output=json', uri])) as { 'virtual-size': number; format: string };
    assert.equal(info['virtual-size'], COPY_BYTES);
    assert.equal(info.format, 'raw');
    const same = await runTool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', local, uri]);
    assert.equal(same.code, 0, `${same.command}: ${same.stdout}${same.stderr}`);
    assert.match(same.stdout, /Images are identical/);
    const at = 5_000_005;
    const old = (await client.read(ino, at, 1))[0];
    await client.write(ino, at, Buffer.from([old ^ 0xff]));
    const differ = await runTool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', local, uri]);
    assert.equal(differ.code, 1, `${differ.command}: ${differ.stdout}${differ.stderr}`);
    // qemu-img reports the 512-byte sector the first difference is in.
    assert.match(differ.stdout, new RegExp(`Content mismatch at offset ${Math.floor(at / 512) * 512}!`));
  });

  it('fio nbd engine, crc32c verify at QD 16 with 4 KiB and 1 MiB blocks (test/bench/fio/nbd-verify.fio)', async function () {
    const sizeBytes = 16 * MiB;
    const ino = await sparseFile('fio.img', sizeBytes);
    const r = await runTool('fio', ['--output-format=json', path.join(FIO_JOBS_DIR, 'nbd-verify.fio')], {
      env: { URI: nbdUri(nbd, 'fio.img'), SIZE: String(sizeBytes) }, cwd: tmp.dir,
    });
    assert.deepEqual(fs.readdirSync(tmp.dir).filter((f) => f.endsWith('.state')), [], 'fio left verify state files');
    assert.equal(r.code, 0, `${r.command}:\n${r.stderr}\n${r.stdout.slice(0, 2000)}`);
    // fio prints "fio: connected to NBD server" before the JSON.
    const out = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: Array<{ jobname: string; error: number; read: { total_ios: number }; write: { total_ios: number }; iodepth?: string }> };
    const jobs = new Map(out.jobs.map((j) => [j.jobname, j]));
    for (const [name, bs] of [['verify-4k', 4096], ['verify-1m', MiB]] as const) {
      const j = jobs.get(name);
      assert.ok(j, `job ${name} ran`);
      assert.equal(j.error, 0, `${name}: fio error ${j.error}`);
      assert.equal(j.write.total_ios, sizeBytes / bs, `${name}: every block written once`);
      assert.equal(j.read.total_ios, sizeBytes / bs, `${name}: every block read back and verified`);
    }
    // The writes landed in the daxd file: each 1 MiB block starts with fio's verify header (magic 0xacca, little-endian).
    const head = await client.read(ino, 0, 2);
    assert.deepEqual([...head], [0xca, 0xac], 'fio verify header magic at offset 0');
    assert.equal((await client.stat(ino)).blocks, sizeBytes / PAGE, 'the whole range allocated');
  });
});
