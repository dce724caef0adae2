// The agent's open proxied connections: listed for inspection, waited for or closed on drain.
import type * as net from 'node:net';

export interface TrackedConnection {
  id: string;
  direction: 'outbound' | 'inbound';
  podUid: string;
  source: string;
  destination: string;
  startedAt: number;
  sockets: net.Socket[];
}

export class ConnectionTracker {
  private readonly open = new Map<string, TrackedConnection>();
  private waiters: Array<() => void> = [];
  private counter = 0;

  nextId(direction: 'outbound' | 'inbound'): string {
    this.counter += 1;
    return `${direction === 'outbound' ? 'o' : 'i'}${this.counter}`;
  }

  add(connection: TrackedConnection): void {
    this.open.set(connection.id, connection);
  }

  remove(id: string): void {
    this.open.delete(id);
    if (this.open.size === 0) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    }
  }

  get size(): number {
    return this.open.size;
  }

  list(): TrackedConnection[] {
    return [...this.open.values()];
  }

  /** Resolves true when every connection has finished, false when the deadline passed first. */
  waitForIdle(deadlineMs: number): Promise<boolean> {
    if (this.open.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== wake);
        resolve(false);
      }, deadlineMs);
      const wake = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.waiters.push(wake);
    });
  }

  /** Close what is left; used when the drain deadline passes or a pod is released. */
  destroyWhere(predicate: (c: TrackedConnection) => boolean): number {
    let count = 0;
    for (const connection of this.open.values()) {
      if (!predicate(connection)) continue;
      count += 1;
      // A reset, not a FIN: a peer must not take a cut-off stream for a complete one.
      for (const socket of connection.sockets) if (!socket.destroyed) socket.resetAndDestroy();
    }
    return count;
  }
}
