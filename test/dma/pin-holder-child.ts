/**
 * The process test/dma/killed-holder.test.ts SIGKILLs while it holds pins: an SDK client
 * that opens a session with a short lease (kept alive by the SDK), pins pages of a file
 * writable, DMA-writes into them, says so on stdout, then idles until killed.
 *
 * Protocol: one JSON line on stdout, {"pinned": pinId, "session": sessionId}, written after
 * the pin and its DMA completed; {"fatal": message} on any failure (exit 3).
 *
 * Run: node dist/test/dma/pin-holder-child.js '{"address":"127.0.0.1:1234","ino":3,"npages":4,"leaseMs":1000}'
 */
import { DaxClient } from '../../client';

interface Args {
  address: string;
  ino: number;
  npages: number;
  leaseMs: number;
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as Args;
  const client = DaxClient.connect(args.address, { deadlineMs: 10_000 });
  const session = await client.openSession({ clientName: 'doomed-pin-holder', leaseMs: args.leaseMs });
  await session.attached;
  const pin = await client.pin(args.ino, 0, args.npages, { writable: true, session });
  for (let page = 0; page < args.npages; page++) await pin.dmaWrite(page, 0, Buffer.from(`child pin page ${page}`));
  process.stdout.write(`${JSON.stringify({ pinned: pin.id, session: session.id })}\n`);
  // The SDK's keep-alive and renewal timers are unref'd: hold the process open until killed.
  setInterval(() => undefined, 1 << 30);
}

main().catch((err: unknown) => {
  process.stdout.write(`${JSON.stringify({ fatal: String(err) })}\n`);
  process.exit(3);
});
