/**
 * A raw HTTP/2 client that sends daxd calls and never reads the replies: its streams stay
 * paused, so it grants the server no window past the initial 64 KiB. What grpc-js clients
 * never do (they buffer every reply they are sent), so the server's bounds are what holds.
 */
import http2 from 'node:http2';

/** Protobuf varint. */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A gRPC length-prefixed message. */
function frame(body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
}

/** A gRPC-framed ReadRequest{ino, offset, length}. */
function readRequestFrame(ino: number, offset: number, length: number): Buffer {
  return frame(Buffer.from([0x08, ...varint(ino), 0x10, ...varint(offset), 0x18, ...varint(length)]));
}

/**
 * A client that sends Files.Read calls on one HTTP/2 connection and never reads: its
 * streams stay paused, so it never grants the server more window than the initial one.
 */
export class StalledReader {
  readonly session: http2.ClientHttp2Session;
  readonly streams: http2.ClientHttp2Stream[] = [];
  constructor(address: string) {
    this.session = http2.connect(`http://${address}`, { settings: { initialWindowSize: 65_535 } });
    this.session.on('error', () => undefined);
  }

  read(ino: number, offset: number, length: number): http2.ClientHttp2Stream {
    return this.send('/daxd.v1.Files/Read', readRequestFrame(ino, offset, length), true);
  }

  /** A Files.ReadStream sending one batch of `count` reads of `length` bytes (left open). */
  readStream(ino: number, count: number, length: number): http2.ClientHttp2Stream {
    const ops = Buffer.concat(Array.from({ length: count }, (_, i) => {
      const op = Buffer.from([0x08, ...varint(i), 0x10, ...varint(ino), 0x18, ...varint(i * length), 0x20, ...varint(length)]);
      return Buffer.from([0x0a, ...varint(op.length), ...op]);
    }));
    return this.send('/daxd.v1.Files/ReadStream', frame(ops), false);
  }

  private send(path: string, body: Buffer, end: boolean): http2.ClientHttp2Stream {
    const stream = this.session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    stream.on('error', () => undefined);
    stream.pause();
    if (end) stream.end(body);
    else stream.write(body);
    this.streams.push(stream);
    return stream;
  }

  close(): void {
    this.session.destroy();
  }
}

