/**
 * 64-bit little-endian fields holding safe integers (< 2^53). Reading a value that is
 * not a safe integer means the media is corrupt: callers check with isSafeInteger.
 */
export function getU64(dv: DataView, offset: number): number {
  const lo = dv.getUint32(offset, true);
  const hi = dv.getUint32(offset + 4, true);
  return hi * 0x1_0000_0000 + lo;
}

export function setU64(dv: DataView, offset: number, value: number): void {
  dv.setUint32(offset, value >>> 0, true);
  dv.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}

export function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
