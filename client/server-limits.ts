/**
 * The data-path limits of the server this SDK talks to: `max_io_bytes` and
 * `max_message_bytes` of its VolumeInfo (Files.StatVolume). The SDK sizes every read and
 * write op, stream message and mapping batch by them, so a server may raise or lower its
 * limits (docs/PROTOCOL.md) without the SDK carrying a copy.
 *
 * Fetched once, lazily: the first read, write or mapping access starts the fetch and
 * goes ahead with the wire defaults (wire/limits.ts), which every v1 server accepts; the
 * calls after the answer use the server's values. A failed fetch keeps the defaults and
 * is tried again by the next I/O; a server that does not report the fields (0) keeps the
 * defaults for good.
 */
import { MESSAGE_BYTES_MAX, RPC_IO_BYTES_MAX } from '../wire/limits';
import type { VolumeInfo__Output } from '../wire/generated/daxd/v1/VolumeInfo';
import { u64ToNumber } from '../wire/from-wire';

/**
 * Room a message needs besides its data (op headers, field tags): the wire's message
 * limit is one full I/O plus this.
 */
const MESSAGE_FRAMING_BYTES = MESSAGE_BYTES_MAX - RPC_IO_BYTES_MAX;

export interface DataPathLimits {
  /** Most data one op, one stream message or one mapping batch carries. */
  ioBytesMax: number;
  /** Largest message the server takes (and the SDK's channel accepts). */
  messageBytesMax: number;
}

export class ServerLimits {
  private current: DataPathLimits;
  private known = false;
  private fetching: Promise<DataPathLimits> | null = null;
  /** StatVolume calls made for the limits (tests check it is one). */
  fetches = 0;

  /**
   * `statVolume`: one StatVolume call. `channelMessageBytesMax`: the message limit the
   * SDK's channel was built with; a server that takes larger messages is still sent at
   * most this much.
   */
  constructor(
    private readonly statVolume: () => Promise<VolumeInfo__Output>,
    private readonly channelMessageBytesMax = MESSAGE_BYTES_MAX,
  ) {
    this.current = { ioBytesMax: Math.min(RPC_IO_BYTES_MAX, channelMessageBytesMax - MESSAGE_FRAMING_BYTES), messageBytesMax: Math.min(MESSAGE_BYTES_MAX, channelMessageBytesMax) };
  }

  /** The limits to size a call by now: the server's once known, else the wire defaults. Starts the fetch. */
  now(): DataPathLimits {
    if (!this.known && this.fetching === null) void this.fetch().catch(() => undefined);
    return this.current;
  }

  /** The server's limits (fetched at most once while it answers); the defaults if it cannot say. */
  async get(): Promise<DataPathLimits> {
    if (this.known) return this.current;
    try {
      return await this.fetch();
    } catch {
      return this.current;
    }
  }

  /** Take the limits from a VolumeInfo the SDK got anyway (statVolume()). */
  adopt(info: VolumeInfo__Output): void {
    const io = u64ToNumber(info.max_io_bytes);
    const message = u64ToNumber(info.max_message_bytes);
    this.known = true;
    if (io <= 0 || message <= 0) return; // a server that does not report them: the defaults hold
    const messageBytesMax = Math.min(message, this.channelMessageBytesMax);
    this.current = { ioBytesMax: Math.max(1, Math.min(io, messageBytesMax - MESSAGE_FRAMING_BYTES)), messageBytesMax };
  }

  private fetch(): Promise<DataPathLimits> {
    if (this.fetching === null) {
      this.fetches++;
      this.fetching = this.statVolume().then(
        (info) => {
          this.adopt(info);
          return this.current;
        },
        (err: unknown) => {
          this.fetching = null; // tried again by the next I/O
          throw err;
        },
      );
    }
    return this.fetching;
  }
}
