/**
 * daxd-load and daxd-fsx with --server at a loopback port with nothing listening: they fail
 * at once on ECONNREFUSED (not after the 10 s connect deadline) and say what they tried:
 * the address and whether it was TLS. The port is one the kernel just handed out and that
 * was closed again, so nothing listens on it.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { runBin } from './run-bin';

/** A loopback port nothing listens on: bound on port 0, then closed. */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('loadtest: --server with nothing listening', function () {
  this.timeout(60_000);

  for (const [bin, extra] of [['daxd-load.js', ['--duration', '1s']], ['daxd-fsx.js', ['--ops', '10']]] as const) {
    it(`${bin} exits 1 naming the address, plaintext, and ECONNREFUSED`, async function () {
      const address = `127.0.0.1:${await deadPort()}`;
      const r = await runBin(bin, ['--server', address, ...extra], 30_000);
      assert.equal(r.timedOut, false);
      assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stderr, new RegExp(`cannot connect to ${address.replace(/\./g, '\\.')} \\(plaintext gRPC\\): ECONNREFUSED`), r.stderr);
      assert.doesNotMatch(r.stderr, /before the deadline/, 'it did not wait for the connect deadline');
    });
  }
});
