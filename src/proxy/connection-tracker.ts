// The agent's open proxied connections (TCP or HBONE streams): listed for inspection, re-checked
// when policy changes, waited for or closed on drain.
import type { ByteCounts } from '../telemetry';
import type { AuthorizationVerdict, InboundSource, ProxyPod, SocketAddress } from './types';

/** What is known of the parties so far: the access record being built (workloads, service, principals, path). */
export interface ConnectionDescription {
  path: string;
  sourceWorkload?: string;
  sourceNamespace?: string;
  sourcePrincipal?: string;
  destinationService?: string;
  destinationWorkload?: string;
  destinationNamespace?: string;
  destinationPrincipal?: string;
}

/** What a connection arriving at a pod was authorized as; kept so a policy change can re-check it. */
export interface AuthorizationContext {
  pod: ProxyPod;
  source: InboundSource;
  destination: SocketAddress;
  /** Admitted as plaintext (no mTLS): re-check PeerAuthentication too. */
  plaintext: boolean;
  /** The latest decision; a denial here is what closed the connection. */
  verdict?: AuthorizationVerdict;
}

export interface TrackedConnection {
  id: string;
  direction: 'outbound' | 'inbound';
  podUid: string;
  source: string;
  destination: string;
  startedAt: number;
  /** Absent for connections whose destination authorizes them elsewhere (HBONE out, passthrough). */
  auth?: AuthorizationContext;
  /** Live: the parties as the access record names them, and the bytes relayed so far. */
  record: ConnectionDescription;
  counts: ByteCounts;
  /** Set by whoever closes the connection early; becomes the access record's error. */
  closeReason?: string;
  /** Closed because a policy change denied it (response flag DENY). */
  denied?: boolean;
  /**
   * Reset every side now (TCP RST / RST_STREAM): a peer must not take a cut-off stream for a
   * complete one. Idempotent.
   */
  abort(): void;
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

  /**
   * Abort the matching connections; used when the drain deadline passes, a pod is released or a
   * policy change denies them. They leave the tracker when their relay finishes, not here.
   */
  destroyWhere(predicate: (c: TrackedConnection) => boolean, reason?: string): number {
    let count = 0;
    for (const connection of [...this.open.values()]) {
      if (!predicate(connection)) continue;
      count += 1;
      if (reason !== undefined) connection.closeReason ??= reason;
      connection.abort();
    }
    return count;
  }
}
