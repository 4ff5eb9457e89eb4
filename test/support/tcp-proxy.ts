/**
 * A TCP proxy on 127.0.0.1 between a client and a server (the cluster tests put one
 * between a daxd node and etcd): cut() destroys every proxied connection and refuses new
 * ones, as a network partition does; restore() lets connections through again. close()
 * ends it (idempotent).
 */
import net from 'node:net';

export interface TcpProxy {
  /** http://127.0.0.1:PORT: the proxy's own address, to give the client instead of the server's. */
  url: string;
  /** Connections accepted and forwarded so far. */
  readonly connections: number;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  let open = true;
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    connections++;
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    const done = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.pipe(upstream);
    upstream.pipe(client);
    for (const s of [client, upstream]) {
      s.on('error', done);
      s.on('close', done);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  let closed: Promise<void> | null = null;
  return {
    url: `http://127.0.0.1:${port}`,
    get connections() { return connections; },
    cut: () => {
      open = false;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore: () => { open = true; },
    close: () => (closed ??= new Promise<void>((resolve) => {
      open = false;
      for (const s of sockets) s.destroy();
      sockets.clear();
      server.close(() => resolve());
    })),
  };
}
