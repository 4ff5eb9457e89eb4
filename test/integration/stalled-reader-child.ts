/**
 * A client that stops reading mid-ReadStream, for test/integration/shutdown-bound.test.ts:
 * it asks for far more data than the windows hold, says so on stdout once the first
 * reply arrived, and is then SIGSTOPped by the test, so its socket is never read again
 * (a hung or frozen peer). The test SIGKILLs it afterwards.
 *
 * Protocol: one JSON line on stdout, {"reading": true}; {"fatal": message} on failure (exit 3).
 *
 * Run: node dist/test/integration/stalled-reader-child.js '{"address":"127.0.0.1:1234","ino":3,"bytes":4194304}'
 */
import { rawClients } from '../support/raw-rpc';

interface Args {
  address: string;
  ino: number;
  bytes: number;
}

function main(): void {
  const args = JSON.parse(process.argv[2] ?? '{}') as Args;
  const raw = rawClients(args.address);
  const stream = raw.files.ReadStream();
  // 16 batches of 64 reads of the whole file: ~4 GiB asked, a few windows' worth is sent.
  for (let batch = 0; batch < 16; batch++) {
    stream.write({ ops: Array.from({ length: 64 }, (_, i) => ({ id: batch * 64 + i, ino: args.ino, offset: 0, length: args.bytes })) });
  }
  let said = false;
  stream.on('data', () => {
    if (said) return;
    said = true;
    process.stdout.write(`${JSON.stringify({ reading: true })}\n`);
  });
  stream.on('error', (err: Error) => {
    process.stdout.write(`${JSON.stringify({ fatal: err.message })}\n`);
    process.exit(3);
  });
}

main();
