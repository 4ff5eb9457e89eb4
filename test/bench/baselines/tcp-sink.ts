/**
 * The receiving end of the loopback TCP baseline, run as a child process (as daxd is):
 * listens on 127.0.0.1 port 0, prints {"tcp": "127.0.0.1:PORT"}, counts the bytes of each
 * connection and, when the sender half-closes, answers with the count as one JSON line.
 * Exits on SIGTERM.
 */
import net from 'node:net';

const server = net.createServer((socket) => {
  let bytes = 0;
  socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
  socket.on('end', () => socket.end(`${JSON.stringify({ bytes })}\n`));
  socket.on('error', () => socket.destroy());
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address() as net.AddressInfo;
  process.stdout.write(`${JSON.stringify({ tcp: `127.0.0.1:${address.port}` })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
