/**
 * The resources a session holds (PTEs, pins, ...), each with the callback that gives it
 * back. S7: when the session ends, for whatever reason, every callback runs, so a client
 * that dies never holds a block or a PTE past its lease.
 *
 * The layers that create resources (server/dax for PTEs and pins) attach them here and
 * detach them when they are given back the normal way (unmap, unpin); the registry does
 * not know what they are.
 */
import assert from 'node:assert';
import { LimitError } from '../errors';
import { SESSION_RESOURCES_MAX } from './limits';
import type { SessionEndReason } from './session-event';

export interface SessionResource {
  /** A short label for counts and the dashboard: 'pte', 'pin', ... */
  readonly kind: string;
  /**
   * Give the resource back because the session ended. Runs once, and only if the
   * resource is still attached. It must not throw for expected conditions: a throw is a
   * bug, reported after every other resource has been released.
   */
  release(reason: SessionEndReason): void | Promise<void>;
}

export type ResourceHandle = number;

export class ResourceRegistry {
  private readonly resources = new Map<ResourceHandle, SessionResource>();
  private readonly countByKind = new Map<string, number>();
  private nextHandle: ResourceHandle = 1;
  private sealed = false;

  constructor(private readonly maxResources = SESSION_RESOURCES_MAX) {}

  /** Attach a resource; the caller must have checked the session is open (Session.attach does). */
  attach(resource: SessionResource): ResourceHandle {
    assert(!this.sealed, 'attach to a registry that already released everything');
    if (this.resources.size >= this.maxResources) {
      throw new LimitError('session resources', this.resources.size + 1, this.maxResources);
    }
    const handle = this.nextHandle++;
    this.resources.set(handle, resource);
    this.countByKind.set(resource.kind, (this.countByKind.get(resource.kind) ?? 0) + 1);
    return handle;
  }

  /** Detach without releasing (the resource was given back the normal way). False if gone. */
  detach(handle: ResourceHandle): boolean {
    const resource = this.resources.get(handle);
    if (resource === undefined) return false;
    this.resources.delete(handle);
    this.countByKind.set(resource.kind, (this.countByKind.get(resource.kind) ?? 1) - 1);
    return true;
  }

  get size(): number {
    return this.resources.size;
  }

  count(kind: string): number {
    return this.countByKind.get(kind) ?? 0;
  }

  /**
   * Release everything, newest first (a pin taken after a PTE goes before it, mirroring
   * how they were built up). Runs every callback even if some throw; then throws an
   * AggregateError of the throws (bugs).
   */
  async releaseAll(reason: SessionEndReason): Promise<void> {
    assert(!this.sealed, 'releaseAll twice');
    this.sealed = true;
    const all = [...this.resources.values()].reverse();
    this.resources.clear();
    this.countByKind.clear();
    const failures: unknown[] = [];
    for (const resource of all) {
      try {
        await resource.release(reason);
      } catch (err) {
        failures.push(err);
      }
    }
    if (failures.length > 0) {
      throw new AggregateError(failures, `${failures.length} of ${all.length} session resources failed to release`);
    }
  }
}
