/**
 * Test certificates, made at test time with the system's openssl (no private key is
 * committed). One call makes a whole set in a temp dir:
 *   - ca:        a CA (the one servers and clients trust);
 *   - server:    a server certificate from it, SAN IP:127.0.0.1, IP:127.0.0.2, DNS:localhost;
 *   - alice/bob: client certificates from it (CN alice / bob, SAN DNS:alice... / bob...);
 *   - expired:   a client certificate from it whose validity ended in the past (CN alice);
 *   - foreignCa + foreign: another CA and a client certificate from it (CN alice);
 *   - foreignServer: a server certificate for 127.0.0.1 from the foreign CA.
 * Keys are EC P-256: fast to make (the whole set takes well under a second).
 * `tls` holds the same files in the layout libnbd's `tls-certificates` directory expects
 * for one client identity (ca-cert.pem, client-cert.pem, client-key.pem).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from './start-server';

export interface CertPair {
  cert: string;
  key: string;
  /** PEM contents, read once. */
  certPem: Buffer;
  keyPem: Buffer;
}

export interface CertSet {
  dir: string;
  ca: CertPair;
  server: CertPair;
  alice: CertPair;
  bob: CertPair;
  expired: CertPair;
  foreignCa: CertPair;
  foreign: CertPair;
  foreignServer: CertPair;
  /** A libnbd tls-certificates directory with the CA and the client pair named `who`. */
  nbdCertDir(who: 'alice' | 'bob' | 'expired' | 'foreign' | 'none'): string;
  remove(): void;
}

const OPENSSL_TIMEOUT_MS = 20_000;

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: OPENSSL_TIMEOUT_MS });
}

function pair(dir: string, name: string): CertPair {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  return { cert, key, certPem: fs.readFileSync(cert), keyPem: fs.readFileSync(key) };
}

function makeCa(dir: string, name: string, cn: string): void {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`,
    '-days', '2', '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
}

/**
 * A leaf signed by `ca`. `days` < 0 makes it already expired: openssl x509 -days takes no
 * negative value, so the certificate is signed with explicit not-before/not-after dates.
 */
function makeLeaf(dir: string, ca: string, name: string, cn: string, san: string, usage: 'serverAuth' | 'clientAuth', expired = false): void {
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
  const ext = path.join(dir, `${name}.ext`);
  fs.writeFileSync(ext, `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=${usage}\nsubjectAltName=${san}\n`);
  if (expired) signExpired(dir, ca, name, ext);
  else openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', ext], dir);
}

/**
 * OpenSSL 3.0's x509 cannot set dates in the past, so the expired certificate goes
 * through `openssl ca` (which takes -startdate/-enddate) with a throwaway database.
 */
function signExpired(dir: string, ca: string, name: string, ext: string): void {
  const db = path.join(dir, `${name}-ca-db`);
  fs.mkdirSync(db);
  fs.writeFileSync(path.join(db, 'index.txt'), '');
  fs.writeFileSync(path.join(db, 'serial'), '01\n');
  const conf = path.join(db, 'ca.cnf');
  fs.writeFileSync(conf, [
    '[ca]', 'default_ca = test', '[test]', `dir = ${db}`, 'database = $dir/index.txt', 'serial = $dir/serial',
    'new_certs_dir = $dir', 'default_md = sha256', 'policy = any', 'copy_extensions = none', '[any]', 'commonName = supplied', '',
  ].join('\n'));
  openssl(['ca', '-batch', '-config', conf, '-in', `${name}.csr`, '-cert', `${ca}.crt`, '-keyfile', `${ca}.key`, '-out', `${name}.crt`,
    '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-extfile', ext, '-notext'], dir);
}

export function makeCerts(): CertSet {
  const tmp = tempDir('daxd-certs-');
  const { dir } = tmp;
  makeCa(dir, 'ca', 'daxd test CA');
  makeCa(dir, 'foreign-ca', 'foreign test CA');
  const serverSan = 'IP:127.0.0.1,IP:127.0.0.2,DNS:localhost';
  makeLeaf(dir, 'ca', 'server', 'localhost', serverSan, 'serverAuth');
  makeLeaf(dir, 'ca', 'alice', 'alice', 'DNS:alice.clients.daxd.test', 'clientAuth');
  makeLeaf(dir, 'ca', 'bob', 'bob', 'DNS:bob.clients.daxd.test', 'clientAuth');
  makeLeaf(dir, 'ca', 'expired', 'alice', 'DNS:alice.clients.daxd.test', 'clientAuth', true);
  makeLeaf(dir, 'foreign-ca', 'foreign', 'alice', 'DNS:alice.clients.daxd.test', 'clientAuth');
  makeLeaf(dir, 'foreign-ca', 'foreign-server', 'localhost', serverSan, 'serverAuth');
  const set: Omit<CertSet, 'nbdCertDir' | 'remove'> = {
    dir,
    ca: pair(dir, 'ca'), server: pair(dir, 'server'), alice: pair(dir, 'alice'), bob: pair(dir, 'bob'),
    expired: pair(dir, 'expired'), foreignCa: pair(dir, 'foreign-ca'), foreign: pair(dir, 'foreign'),
    foreignServer: pair(dir, 'foreign-server'),
  };
  return {
    ...set,
    nbdCertDir(who) {
      const out = path.join(dir, `nbd-${who}`);
      if (!fs.existsSync(out)) {
        fs.mkdirSync(out);
        fs.copyFileSync(set.ca.cert, path.join(out, 'ca-cert.pem'));
        if (who !== 'none') {
          const p = set[who];
          fs.copyFileSync(p.cert, path.join(out, 'client-cert.pem'));
          fs.copyFileSync(p.key, path.join(out, 'client-key.pem'));
        }
      }
      return out;
    },
    remove: tmp.remove,
  };
}
