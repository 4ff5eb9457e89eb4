/**
 * `daxd serve`'s listen flags (--grpc, --http, --nbd): HOST:PORT with the port spelled
 * out, [ADDR]:PORT for IPv6. A bare host is refused: grpc-js would read `localhost` as
 * port 443 and bind it silently. Port 0 picks a free port.
 */
import { UsageError } from './args';

const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]\s]+):(\d{1,5})$/;
const PORT_MAX = 65535;

export function listenAddress(value: string, flag: string): string {
  const m = HOST_PORT.exec(value);
  if (m === null) throw new UsageError(`${flag} ${JSON.stringify(value)}: not HOST:PORT (the port is required; port 0 picks a free one)`);
  if (Number(m[2]) > PORT_MAX) throw new UsageError(`${flag} ${JSON.stringify(value)}: port ${m[2]} is past ${PORT_MAX}`);
  return value;
}
