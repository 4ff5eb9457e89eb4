/**
 * CPU per MiB of the bulk codecs against the protobufjs path they replace, in-process
 * (no network, so it stays meaningful on a busy machine). Printed by `npm run bench:bulk`.
 *   - server read reply: old = allocUnsafe + the read's copy + protobufjs + grpc-js's frame
 *     copy; new = the read's copy into withHeadroom + header in front + frame in place;
 *   - client write request: protobufjs + frame copy vs the bulk encoder + frame in place;
 *   - server write request decode: protobufjs decode + toObject vs the bulk decoder.
 */
import * as protobuf from 'protobufjs';
import { PROTO_PATH } from '../../wire/proto';
import { decodeWriteStreamRequest, encodeReadStreamResponse, encodeWriteStreamRequest, framedInPlace, withHeadroom } from '../../wire/bulk-codec';
import { MiB } from '../support/units';

export interface CodecFigure { label: string; usPerMiB: number }

export function codecMicro(iterations = 300): CodecFigure[] {
  const root = new protobuf.Root();
  root.loadSync(PROTO_PATH, { keepCase: true });
  root.resolveAll();
  const rs = root.lookupType('daxd.v1.ReadStreamResponse');
  const ws = root.lookupType('daxd.v1.WriteStreamRequest');
  const encodeWith = (t: protobuf.Type) => (v: unknown) => Buffer.from(t.encode(t.fromObject(v as Record<string, unknown>)).finish());
  const frameCopy = (m: Buffer) => {
    const out = Buffer.allocUnsafe(m.length + 5);
    m.copy(out, 5);
    return out;
  };
  const source = Buffer.alloc(MiB, 7);
  const wsBytes = encodeWith(ws)({ ops: [{ id: 1, ino: 5, offset: 0, data: source, sync: false }] });
  const time = (label: string, f: () => void): CodecFigure => {
    for (let i = 0; i < 20; i++) f();
    const t0 = process.cpuUsage();
    for (let i = 0; i < iterations; i++) f();
    const u = process.cpuUsage(t0);
    return { label, usPerMiB: (u.user + u.system) / iterations };
  };
  return [
    time('read reply, old: read copy + protobufjs + frame copy', () => {
      const b = Buffer.allocUnsafe(MiB);
      source.copy(b);
      frameCopy(encodeWith(rs)({ results: [{ id: 1, data: b }] }));
    }),
    time('read reply, new: read copy into headroom, framed in place', () => {
      const b = withHeadroom(MiB);
      source.copy(b);
      framedInPlace(encodeReadStreamResponse({ results: [{ id: 1, data: b }] }, encodeWith(rs)));
    }),
    time('write request encode, old: protobufjs + frame copy', () => {
      frameCopy(encodeWith(ws)({ ops: [{ id: 1, ino: 5, offset: 0, data: source, sync: false }] }));
    }),
    time('write request encode, new: bulk encoder, framed in place', () => {
      framedInPlace(encodeWriteStreamRequest({ ops: [{ id: 1, ino: 5, offset: 0, data: source, sync: false }] }, encodeWith(ws)));
    }),
    time('write request decode, old: protobufjs decode + toObject', () => {
      ws.toObject(ws.decode(wsBytes), { longs: String, enums: String, defaults: true, oneofs: true });
    }),
    time('write request decode, new: bulk decoder (views)', () => {
      decodeWriteStreamRequest(wsBytes);
    }),
  ];
}

export function formatCodecMicro(figures: CodecFigure[]): string {
  const width = Math.max(...figures.map((f) => f.label.length));
  return figures.map((f) => `${f.label.padEnd(width)}  ${f.usPerMiB.toFixed(0)} us CPU per MiB`).join('\n');
}
