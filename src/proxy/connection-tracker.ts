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
  /** For the idle timeout: the byte total last seen, and since when it has not moved. */
  activity?: { total: number; since: number };
  /**
   * Reset every side now (TCP RST / RST_STREAM): a peer must not take a cut-off stream for a
   * complete one. Idempotent.
   */
  abort(): void;
}

export class ConnectionTracker {
  private readonly open = new Map<string, TrackedConnection>();
  /** Open connections per pod (podUid), for the per-pod cap. */
  private readonly perPod = new Map<string, number>();
  private waiters: Array<() => void> = [];
  private counter = 0;

  nextId(direction: 'outbound' | 'inbound'): string {
    this.counter += 1;
    return `${direction === 'outbound' ? 'o' : 'i'}${this.counter}`;
  }

  add(connection: TrackedConnection): void {
    this.open.set(connection.id, connection);
    this.perPod.set(connection.podUid, (this.perPod.get(connection.podUid) ?? 0) + 1);
  }

  remove(id: string): void {
    const connection = this.open.get(id);
    if (!connection) return;
    this.open.delete(id);
    const left = (this.perPod.get(connection.podUid) ?? 1) - 1;
    if (left > 0) this.perPod.set(connection.podUid, left);
    else this.perPod.delete(connection.podUid);
    if (this.open.size === 0) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    }
  }

  get size(): number {
    return this.open.size;
  }

  /** Open connections of one pod (as the source of outbound ones, the destination of inbound ones). */
  openFor(podUid: string): number {
    return this.perPod.get(podUid) ?? 0;
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
