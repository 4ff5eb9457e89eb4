/**
 * A session's events on their way to its Events stream: at most one sink (the stream
 * currently attached) and a bounded FIFO for when that sink pushes back (its write()
 * returned false; the sink calls resume() on 'drain').
 *
 * Events never end a session (the model of inotify's IN_Q_OVERFLOW):
 * - no stream attached: nothing is queued; the events are counted as lost;
 * - the attached stream's reader falls behind: past maxQueued events, further ones are
 *   dropped and counted;
 * - lost events are reported by one marker, EventsLost{count}, written after what is
 *   queued (or first thing to the next stream attached). The client then treats all its
 *   PTEs as suspect and re-validates them; correctness never depends on events, since the
 *   token check on every Load/Store is the fence (S7).
 * Memory: at most maxQueued events plus one counter, whatever the client does.
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
  /** Events dropped since the last EventsLost marker; a marker is owed while > 0. */
  private lostCount = 0;
  /** Since the session opened, for the admin API and tests. */
  lostTotal = 0;

  constructor(private readonly maxQueued: number) {}

  get queued(): number {
    return this.queue.length;
  }

  push(event: SessionEvent): void {
    if (this.endedWith !== null) return;
    // Once events are lost, later ones go too until the marker is written: the client
    // re-validates everything after the marker anyway, and order stays simple.
    if (this.sink === null || this.lostCount > 0 || this.queue.length >= this.maxQueued) {
      this.lostCount++;
      this.lostTotal++;
      this.pump();
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
        // What waited for this stream is lost with it; the next stream is told.
        this.lostCount += this.queue.length;
        this.lostTotal += this.queue.length;
        this.queue.length = 0;
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
    if (this.sinkReady && this.queue.length === 0 && this.lostCount > 0 && this.endedWith === null) {
      const count = this.lostCount;
      this.lostCount = 0;
      this.sinkReady = sink.write({ kind: 'eventsLost', count });
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
