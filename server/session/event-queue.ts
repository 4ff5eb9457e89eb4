/**
 * A session's events on their way to its Events stream: a bounded FIFO with at most one
 * sink (the stream currently attached). Events wait here while no stream is attached or
 * while the attached one pushes back (its write() returned false); the sink calls
 * resume() on 'drain'. Overflow calls onOverflow once (the session then ends: S7).
 */
import assert from 'node:assert';
import type { SessionEndReason, SessionEvent } from './session-event';

/** Why a sink stops receiving: the session ended, or a newer stream took over. */
export type SinkEndReason = SessionEndReason | 'replaced';

export interface EventSink {
  /** Deliver one event; false means "buffered, stop until resume()". */
  write(event: SessionEvent): boolean;
  /** No more events for this sink. Called once, after every queued event was written. */
  end(reason: SinkEndReason): void;
}

export class EventQueue {
  private readonly queue: SessionEvent[] = [];
  private sink: EventSink | null = null;
  private sinkReady = false;
  private endedWith: SessionEndReason | null = null;
  private overflowed = false;

  constructor(
    private readonly maxQueued: number,
    private readonly onOverflow: () => void,
  ) {}

  get queued(): number {
    return this.queue.length;
  }

  push(event: SessionEvent): void {
    if (this.endedWith !== null || this.overflowed) return;
    if (this.queue.length >= this.maxQueued) {
      this.overflowed = true;
      this.onOverflow();
      return;
    }
    this.queue.push(event);
    this.pump();
  }

  /** Attach a sink, replacing (and ending) the previous one. Returns a detach function. */
  attach(sink: EventSink): () => void {
    if (this.endedWith !== null) {
      sink.end(this.endedWith);
      return () => {};
    }
    const previous = this.sink;
    this.sink = sink;
    this.sinkReady = true;
    if (previous !== null) previous.end('replaced');
    this.pump();
    return () => {
      if (this.sink === sink) {
        this.sink = null;
        this.sinkReady = false;
      }
    };
  }

  /** The sink drained: deliver what waits. Ignored from a sink that is no longer attached. */
  resume(sink: EventSink): void {
    if (this.sink !== sink) return;
    this.sinkReady = true;
    this.pump();
  }

  /** End the queue: deliver what is queued (if a sink can take it), then end the sink. */
  end(reason: SessionEndReason): void {
    if (this.endedWith !== null) return;
    this.endedWith = reason;
    this.pump();
  }

  private pump(): void {
    const sink = this.sink;
    if (sink === null) return;
    while (this.sinkReady && this.queue.length > 0) {
      const event = this.queue.shift();
      assert(event !== undefined);
      this.sinkReady = sink.write(event);
    }
    // Ending does not wait for a slow reader to drain: the session is gone, and its
    // remaining events (invalidations of PTEs that no longer exist) are moot.
    if (this.endedWith !== null) {
      this.sink = null;
      this.queue.length = 0;
      sink.end(this.endedWith);
    }
  }
}
