// What the agent's admin API (127.0.0.1:15000) answers, as JSON. `ferry inspect` reads these shapes;
// they are the contract between the two and change only together.
import type { AuthorizationPolicy, PeerAuthentication } from '../policy';
import type { ConnectionDescription } from '../proxy';
import type { Service } from '../state';

/** A workload as this agent sees it: every pod in the model, enrolled here or not. */
export interface WorkloadDump {
  uid: string;
  namespace: string;
  name: string;
  node: string;
  ips: string[];
  serviceAccount: string;
  /** `spiffe://<td>/ns/<ns>/sa/<sa>` */
  identity: string;
  /** Istio's workload name (owner or pod name), canonical service and revision: the metrics' labels. */
  workloadName: string;
  app: string;
  version: string;
  /** HBONE: meshed (its traffic arrives in tunnels); TCP: not in the mesh. */
  protocol: 'HBONE' | 'TCP';
  /** Enrolled by this agent (on this node, listeners open, capture on). */
  enrolled: boolean;
}

export interface CertificateDump {
  identity: string;
  principal: string;
  serial: string;
  issuer: string;
  notBefore: string;
  notAfter: string;
  /** `valid`, `expired`, `not yet valid`. */
  state: string;
  /** Seconds until notAfter (negative once expired). */
  expiresInSeconds: number;
  /** Leaf first, then intermediates; PEM. Never the private key. */
  chain: string[];
}

export interface TrustAnchorDump {
  subject: string;
  notAfter: string;
  fingerprint256: string;
}

/**
 * GET /trust: the CA generation this agent has caught up with (its roots trusted and, after an issuer
 * change, its certificates re-issued), the roots it trusts and who issued its certificates. A CA
 * rotation polls it on every node before moving to the next phase.
 */
export interface TrustDump {
  node: string;
  /** Where the trust bundle comes from: `ca-dir PATH` or `controller ADDRESS`. */
  source: string;
  /** 0 until the first trust bundle is in force. */
  generation: number;
  /** steady, rotating, switched; absent before the first bundle. */
  phase?: string;
  /** The CA's issuer at `generation`, in WorkloadCertificate.issuer's form. */
  issuer?: string;
  roots: TrustAnchorDump[];
  certificates: Array<{ principal: string; issuer: string; notAfter: string }>;
}

export interface LinkDump {
  /** connect4, connect6, sock_ops, sk_lookup */
  program: string;
  /** A cgroup directory, or `NAMESPACE/POD` for a pod's sk_lookup link. */
  target: string;
  linkId: number;
  progId: number;
  /** The kernel still has the link on its hook (a detached link keeps its id but captures nothing). */
  attached: boolean;
}

export interface MapDump {
  name: string;
  type: string;
  entries: number;
  maxEntries: number;
}

export interface ConfigDump {
  node: string;
  /** The snapshot revision the agent runs on, and how many times its policies changed. */
  revision: number;
  policyRevision: number;
  ready: { ready: boolean; reason?: string };
  workloads: WorkloadDump[];
  services: Service[];
  policies: {
    authorizationPolicies: AuthorizationPolicy[];
    peerAuthentications: PeerAuthentication[];
    warnings: string[];
  };
  certificates: CertificateDump[];
  trustBundle: TrustAnchorDump[];
  /** Map occupancy is sampled on a timer (counting walks every key): `mapsSampledAt` says when. */
  bpf: { links: LinkDump[]; maps: MapDump[]; mapsSampledAt?: string; verdicts: VerdictDump[] };
  /** Pods of this node whose traffic the programs refuse, and why (enrolment pending, workload gone). */
  refusedPods: Array<{ uid: string; pod: string; reason: string }>;
}

/** One of the BPF programs' verdict counters. */
export interface VerdictDump {
  program: string;
  verdict: string;
  count: number;
}

/**
 * An open proxied connection (TCP or an HBONE stream): its parties as the access record will name
 * them (path, workloads, Service, principals), and its bytes so far.
 */
export interface ConnectionDump extends ConnectionDescription {
  id: string;
  direction: 'outbound' | 'inbound';
  source: string;
  destination: string;
  /** Bytes the source sent so far, and bytes the destination sent back. */
  bytesSent: number;
  bytesReceived: number;
  startedAt: string;
  ageMs: number;
}

export interface ConnectionsDump {
  connections: ConnectionDump[];
}

export interface LoggingDump {
  /** The root level, and components whose level differs from it. */
  level: string;
  components: Record<string, string>;
}

/** GET /handover: the agent answering, and its hand-overs. */
export interface HandoverDump {
  pid: number;
  pod?: string;
  node: string;
  /**
   * `from`: taken over from a predecessor (`in-progress` until it stopped accepting, then `complete`),
   * or `none` when this agent started fresh.
   */
  from: { state: 'none' | 'in-progress' | 'complete' | 'failed'; pid?: number; pod?: string; reason?: string };
  /** `to`: handed over to a successor (`draining` once it accepts and this agent drains), or `none`. */
  to: { state: 'none' | 'in-progress' | 'draining'; pid?: number; pod?: string };
}
