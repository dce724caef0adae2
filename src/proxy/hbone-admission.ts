// Agent-wide admission limits of the HBONE servers, shared by every pod's HboneListener: HTTP/2
// sessions per peer identity and pending TLS handshakes per source address.
import { numericOptions } from './hbone-protocol';

export interface HboneAdmissionLimits {
  /** Sessions one peer identity (SPIFFE principal) may hold across all of this agent's pods. */
  maxSessionsPerPeer: number;
  /** TLS handshakes in progress from one source address across all of this agent's pods. */
  maxPendingHandshakesPerSource: number;
}

/** 128 sessions per identity, 32 pending handshakes per address (see HboneServerLimits). */
export const HBONE_ADMISSION_DEFAULTS: HboneAdmissionLimits = {
  maxSessionsPerPeer: 128,
  maxPendingHandshakesPerSource: 32,
};

export const HBONE_ADMISSION_RANGES: { [K in keyof HboneAdmissionLimits]: [number, number] } = {
  maxSessionsPerPeer: [1, 1_000_000],
  maxPendingHandshakesPerSource: [1, 1_000_000],
};

export interface HboneAdmissionStats {
  /** Peer identities with at least one session, and the sessions they hold. */
  peers: number;
  sessions: number;
  /** Source addresses with handshakes in progress, and those handshakes. */
  sources: number;
  pendingHandshakes: number;
  /** Since the agent started: sessions refused at maxSessionsPerPeer, handshakes closed at maxPendingHandshakesPerSource. */
  sessionsRefused: number;
  handshakesEvicted: number;
}

/** A pending handshake as the admission sees it: where from, and how its listener closes it. */
export interface AdmittedHandshake {
  source: string;
  /** Close it to make room; the listener forgets it and counts the eviction. */
  evict(): void;
}

/**
 * One per agent (NodeProxy makes it and hands it to every HboneListener), so a peer cannot multiply
 * its share by spreading over the node's pods. Concurrency: every call runs on the event loop and
 * completes in one turn, so counts never race.
 */
export class HboneAdmission {
  private readonly sessionsByPeer = new Map<string, number>();
  /** Per source, insertion order is acceptance order: the first entry is the oldest. */
  private readonly handshakesBySource = new Map<string, Set<AdmittedHandshake>>();
  private readonly counts = { sessionsRefused: 0, handshakesEvicted: 0 };

  readonly limits: HboneAdmissionLimits;

  /** `limits` may be a whole HboneServerLimits; only the two fields above are read (and range-checked). */
  constructor(limits?: Partial<HboneAdmissionLimits>) {
    const picked: Partial<HboneAdmissionLimits> = {};
    for (const field of Object.keys(HBONE_ADMISSION_DEFAULTS) as Array<keyof HboneAdmissionLimits>) {
      if (limits?.[field] !== undefined) picked[field] = limits[field];
    }
    this.limits = numericOptions('hbone.admission', HBONE_ADMISSION_DEFAULTS, picked, HBONE_ADMISSION_RANGES);
  }

  /**
   * A handshake starts. Beyond the cap the OLDEST pending handshake from the same source is evicted,
   * whichever pod's listener holds it: the one that has had the longest to finish, and refusing the
   * new one instead would let a few stalled sockets shut that address out until they time out.
   */
  handshakeStarted(entry: AdmittedHandshake): void {
    const set = this.handshakesBySource.get(entry.source) ?? new Set<AdmittedHandshake>();
    this.handshakesBySource.set(entry.source, set);
    set.add(entry);
    while (set.size > this.limits.maxPendingHandshakesPerSource) {
      const [oldest] = set;
      set.delete(oldest);
      this.counts.handshakesEvicted += 1;
      oldest.evict();
    }
  }

  /** The handshake finished, failed or was evicted (idempotent). */
  handshakeSettled(entry: AdmittedHandshake): void {
    const set = this.handshakesBySource.get(entry.source);
    if (!set?.delete(entry)) return;
    if (set.size === 0) this.handshakesBySource.delete(entry.source);
  }

  /** Take a session slot for `principal`; false (and counted) at the cap. */
  sessionOpened(principal: string): boolean {
    const held = this.sessionsByPeer.get(principal) ?? 0;
    if (held >= this.limits.maxSessionsPerPeer) {
      this.counts.sessionsRefused += 1;
      return false;
    }
    this.sessionsByPeer.set(principal, held + 1);
    return true;
  }

  /** Give back a slot sessionOpened() granted. */
  sessionClosed(principal: string): void {
    const held = this.sessionsByPeer.get(principal) ?? 0;
    if (held <= 1) this.sessionsByPeer.delete(principal);
    else this.sessionsByPeer.set(principal, held - 1);
  }

  sessionsOf(principal: string): number {
    return this.sessionsByPeer.get(principal) ?? 0;
  }

  stats(): HboneAdmissionStats {
    let sessions = 0;
    for (const n of this.sessionsByPeer.values()) sessions += n;
    let pendingHandshakes = 0;
    for (const set of this.handshakesBySource.values()) pendingHandshakes += set.size;
    return {
      peers: this.sessionsByPeer.size,
      sessions,
      sources: this.handshakesBySource.size,
      pendingHandshakes,
      ...this.counts,
    };
  }
}
