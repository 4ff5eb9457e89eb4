/**
 * TLS_HANDSHAKE_TIMEOUT_MS reaches the TLS servers: a peer that opens a connection and
 * sends a partial ClientHello is disconnected after the handshake bound, on the gRPC
 * server (grpcServerCredentials) and on an https server made from serverOptions(). The
 * bound is passed short here; the default is checked in tls-material.test.ts.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import https from 'node:https';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { grpcServerCredentials } from '../../../server/tls/grpc-credentials';
import { TLS_HANDSHAKE_TIMEOUT_MS } from '../../../server/tls/limits';
import { TlsMaterial } from '../../../server/tls/material';
import { makeCerts, type CertSet } from '../../support/certs';

const SHORT_MS = 300;

/** Connects, sends the first 40 bytes of a TLS record announcing 507, waits for the server to hang up. */
async function stalledHandshakeMs(port: number): Promise<number> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  socket.resume();
  await once(socket, 'connect');
  const started = Date.now();
  socket.write(Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x01, 0xfb, 0x01, 0x00, 0x01, 0xf7]), Buffer.alloc(31)]));
  await once(socket, 'close');
  return Date.now() - started;
}

describe('TLS handshake bound', function () {
  this.timeout(20_000);
  let certs: CertSet;
  let material: TlsMaterial;
  before(() => {
    certs = makeCerts();
    material = TlsMaterial.load({ certFile: certs.server.cert, keyFile: certs.server.key, caFile: certs.ca.cert, clientAuth: 'require' });
  });
  after(() => certs?.remove());

  it('the default is 10 s', () => {
    assert.equal(TLS_HANDSHAKE_TIMEOUT_MS, 10_000);
  });

  it('gRPC: a stalled handshake is closed after the bound', async () => {
    const server = new grpc.Server();
    try {
      const port = await new Promise<number>((resolve, reject) => {
        server.bindAsync('127.0.0.1:0', grpcServerCredentials(material, SHORT_MS), (err, p) => (err ? reject(err) : resolve(p)));
      });
      const ms = await stalledHandshakeMs(port);
      assert.ok(ms >= SHORT_MS - 50 && ms < SHORT_MS + 5_000, `closed after ${ms} ms`);
    } finally {
      server.forceShutdown();
    }
  });

  it('HTTP: a stalled handshake is closed after the bound', async () => {
    const server = https.createServer(material.serverOptions(SHORT_MS), (_req, res) => res.end());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const ms = await stalledHandshakeMs((server.address() as net.AddressInfo).port);
      assert.ok(ms >= SHORT_MS - 50 && ms < SHORT_MS + 5_000, `closed after ${ms} ms`);
    } finally {
      server.close();
    }
  });
});
