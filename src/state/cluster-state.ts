// The agent's view of the cluster with the lookups the data path needs: workload by IP, Service by
// VIP and port, where a connection to an address should really go, and the compiled policies.
import { DEFAULT_ROOT_NAMESPACE, PolicySet, policyFingerprint, type AuthorizationPolicy, type PeerAuthentication } from '../policy';
import type { ClusterSnapshot, Endpoint, Service, ServicePort, Workload } from './model';

/** Where a captured connection goes after Service resolution. */
export type Destination =
  | { kind: 'service'; service: Service; port: ServicePort; endpoint: Endpoint; workload?: Workload }
  | { kind: 'workload'; workload: Workload; ip: string; port: number }
  | { kind: 'passthrough'; ip: string; port: number }
  | { kind: 'no-endpoints'; service: Service; port: ServicePort };

function vipKey(ip: string, port: number): string {
  return `${ip}|${port}`;
}

export class ClusterState {
  private snapshot: ClusterSnapshot = { version: 1, revision: 0, workloads: [], services: [] };
  private byIp = new Map<string, Workload>();
  private byUid = new Map<string, Workload>();
  private byVip = new Map<string, { service: Service; port: ServicePort }>();
  private byEndpoint = new Map<string, Service>();
  /** Round-robin position per VIP:port; kept across updates so a refresh does not reset the rotation. */
  private readonly cursors = new Map<string, number>();
  private policySet: PolicySet;
  private policyChanges = 0;

  /** `rootNamespace`: where mesh-wide policies live (DEFAULT_ROOT_NAMESPACE). */
  constructor(options: { rootNamespace?: string } = {}) {
    this.policySet = new PolicySet([], [], options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE);
  }

  get revision(): number {
    return this.snapshot.revision;
  }

  get workloads(): readonly Workload[] {
    return this.snapshot.workloads;
  }

  get services(): readonly Service[] {
    return this.snapshot.services;
  }

  /** The policies as validated (the snapshot's), for inspection; `policies` is what decides. */
  get authorizationPolicies(): readonly AuthorizationPolicy[] {
    return this.snapshot.authorizationPolicies ?? [];
  }

  get peerAuthentications(): readonly PeerAuthentication[] {
    return this.snapshot.peerAuthentications ?? [];
  }

  /** AuthorizationPolicies and PeerAuthentications, compiled; the same object until the policies change. */
  get policies(): PolicySet {
    return this.policySet;
  }

  /**
   * Grows by one each time replace() brings different policies (compared by fingerprint), and only then: the
   * agent re-checks open connections when it moves, not on every snapshot.
   */
  get policyRevision(): number {
    return this.policyChanges;
  }

  /**
   * Replace the whole model; lookups see the new one at once. Throws PolicyError, leaving the model as it was,
   * when the snapshot's policies cannot be compiled (parseSnapshot already refuses such a file).
   */
  replace(snapshot: ClusterSnapshot): void {
    const authorizationPolicies = snapshot.authorizationPolicies ?? [];
    const peerAuthentications = snapshot.peerAuthentications ?? [];
    const root = this.policySet.rootNamespace;
    // First, so that a policy that cannot be compiled changes nothing.
    const policies =
      policyFingerprint(authorizationPolicies, peerAuthentications, root) === this.policySet.fingerprint
        ? this.policySet
        : new PolicySet(authorizationPolicies, peerAuthentications, root);
    const byIp = new Map<string, Workload>();
    const byUid = new Map<string, Workload>();
    for (const workload of snapshot.workloads) {
      byUid.set(workload.uid, workload);
      for (const ip of workload.ips) byIp.set(ip, workload);
    }
    const byVip = new Map<string, { service: Service; port: ServicePort }>();
    for (const service of snapshot.services) {
      for (const vip of service.vips) {
        for (const port of service.ports) byVip.set(vipKey(vip, port.port), { service, port });
      }
    }
    // Endpoint address and target port → the first Service (by namespace and name) that has it.
    const byEndpoint = new Map<string, Service>();
    const ordered = [...snapshot.services].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
    for (const service of ordered) {
      for (const port of service.ports) {
        for (const endpoint of port.endpoints) {
          const key = vipKey(endpoint.ip, endpoint.port);
          if (!byEndpoint.has(key)) byEndpoint.set(key, service);
        }
      }
    }
    this.snapshot = snapshot;
    this.byEndpoint = byEndpoint;
    this.byIp = byIp;
    this.byUid = byUid;
    this.byVip = byVip;
    if (policies !== this.policySet) {
      this.policySet = policies;
      this.policyChanges++;
    }
  }

  workloadByIp(ip: string): Workload | undefined {
    return this.byIp.get(ip);
  }

  workload(uid: string): Workload | undefined {
    return this.byUid.get(uid);
  }

  /** Workloads scheduled on `node` that the agent must enrol. */
  meshedWorkloadsOn(node: string): Workload[] {
    return this.snapshot.workloads.filter((w) => w.node === node && w.meshEnabled);
  }

  /** The Service whose endpoints include the workload on target `port` (the first by namespace/name when several do). */
  serviceOf(workload: Workload, port: number): Service | undefined {
    for (const ip of workload.ips) {
      const service = this.byEndpoint.get(vipKey(ip, port));
      if (service) return service;
    }
    return undefined;
  }

  serviceByVip(ip: string, port: number): { service: Service; port: ServicePort } | undefined {
    return this.byVip.get(vipKey(ip, port));
  }

  /** Resolve an original destination: a Service VIP picks an endpoint round robin; a pod IP names its workload. */
  resolve(ip: string, port: number): Destination {
    const key = vipKey(ip, port);
    const entry = this.byVip.get(key);
    if (entry) {
      const endpoints = entry.port.endpoints;
      if (endpoints.length === 0) return { kind: 'no-endpoints', service: entry.service, port: entry.port };
      const cursor = this.cursors.get(key) ?? 0;
      const endpoint = endpoints[cursor % endpoints.length];
      this.cursors.set(key, (cursor + 1) % endpoints.length);
      const workload = endpoint.workloadUid ? this.byUid.get(endpoint.workloadUid) : this.byIp.get(endpoint.ip);
      return { kind: 'service', service: entry.service, port: entry.port, endpoint, workload };
    }
    const workload = this.byIp.get(ip);
    if (workload) return { kind: 'workload', workload, ip, port };
    return { kind: 'passthrough', ip, port };
  }
}
