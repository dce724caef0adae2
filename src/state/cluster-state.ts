// The agent's view of the cluster with the lookups the data path needs: workload by IP, Service by
// VIP and port, where a connection to an address should really go, and the compiled policies.
// Changes arrive as deltas (apply); each index is updated for just the resources that changed.
import { DEFAULT_ROOT_NAMESPACE, PolicySet, policyFingerprint, type AuthorizationPolicy, type PeerAuthentication } from '../policy';
import { deltaOf, resourceName, sameValue, snapshotDelta, type ResourceKind, type ResourceTypes, type StateDelta } from './delta';
import type { ClusterSnapshot, Endpoint, Service, ServicePort, Workload } from './model';

/** Where a captured connection goes after Service resolution. */
export type Destination =
  | { kind: 'service'; service: Service; port: ServicePort; endpoint: Endpoint; workload?: Workload }
  | { kind: 'workload'; workload: Workload; ip: string; port: number }
  | { kind: 'passthrough'; ip: string; port: number }
  | { kind: 'no-endpoints'; service: Service; port: ServicePort };

/** What one apply() changed: resources whose value differed (or that came or went), and whether policies did. */
export interface AppliedChange {
  workloads: number;
  services: number;
  /** The compiled policies changed: policyRevision moved (once). */
  policies: boolean;
}

function vipKey(ip: string, port: number): string {
  return `${ip}|${port}`;
}

/**
 * A key → values index where several resources may claim one key (two pods briefly sharing an IP while one
 * terminates, two Services listing one endpoint). Lists are almost always one long. `get` answers the first:
 * with `before`, the least by that order; without, the one added last.
 */
class ClaimIndex<V> {
  private readonly claims = new Map<string, V[]>();

  constructor(private readonly before?: (a: V, b: V) => boolean) {}

  get(key: string): V | undefined {
    return this.claims.get(key)?.[0];
  }

  has(key: string): boolean {
    return this.claims.has(key);
  }

  add(key: string, value: V): void {
    const list = this.claims.get(key);
    if (!list) {
      this.claims.set(key, [value]);
      return;
    }
    const before = this.before;
    if (!before) {
      list.unshift(value);
      return;
    }
    const at = list.findIndex((v) => before(value, v));
    list.splice(at === -1 ? list.length : at, 0, value);
  }

  /** Drop the claims of `key` that `owned` says are the leaving resource's. */
  delete(key: string, owned: (value: V) => boolean): void {
    const list = this.claims.get(key);
    if (!list) return;
    const kept = list.filter((v) => !owned(v));
    if (kept.length === 0) this.claims.delete(key);
    else this.claims.set(key, kept);
  }

  get size(): number {
    return this.claims.size;
  }
}

function serviceKey(service: Service): string {
  return `${service.namespace}/${service.name}`;
}

export class ClusterState {
  private currentRevision = 0;
  private readonly workloadsByUid = new Map<string, Workload>();
  private readonly servicesByName = new Map<string, Service>();
  private readonly authorizationPoliciesByName = new Map<string, AuthorizationPolicy>();
  private readonly peerAuthenticationsByName = new Map<string, PeerAuthentication>();
  private readonly byIp = new ClaimIndex<Workload>();
  private readonly byVip = new ClaimIndex<{ service: Service; port: ServicePort }>();
  /** Endpoint address and target port → the Services that list it, the first by namespace/name first. */
  private readonly byEndpoint = new ClaimIndex<Service>((a, b) => serviceKey(a).localeCompare(serviceKey(b)) < 0);
  private readonly byNode = new Map<string, Map<string, Workload>>();
  /** Round-robin position per VIP:port; kept across updates so a refresh does not reset the rotation. */
  private readonly cursors = new Map<string, number>();
  // The lists the getters hand out, rebuilt on first read after a change of their kind.
  private workloadList: Workload[] | undefined;
  private serviceList: Service[] | undefined;
  private authorizationPolicyList: AuthorizationPolicy[] | undefined;
  private peerAuthenticationList: PeerAuthentication[] | undefined;
  private policySet: PolicySet;
  private policyChanges = 0;

  /** `rootNamespace`: where mesh-wide policies live (DEFAULT_ROOT_NAMESPACE). */
  constructor(options: { rootNamespace?: string } = {}) {
    this.policySet = new PolicySet([], [], options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE);
  }

  /** The snapshot revision last applied, or the count of applied deltas when their source has no revisions. */
  get revision(): number {
    return this.currentRevision;
  }

  get workloads(): readonly Workload[] {
    this.workloadList ??= [...this.workloadsByUid.values()];
    return this.workloadList;
  }

  get services(): readonly Service[] {
    this.serviceList ??= [...this.servicesByName.values()];
    return this.serviceList;
  }

  /** The policies as validated, for inspection; `policies` is what decides. */
  get authorizationPolicies(): readonly AuthorizationPolicy[] {
    this.authorizationPolicyList ??= [...this.authorizationPoliciesByName.values()];
    return this.authorizationPolicyList;
  }

  get peerAuthentications(): readonly PeerAuthentication[] {
    this.peerAuthenticationList ??= [...this.peerAuthenticationsByName.values()];
    return this.peerAuthenticationList;
  }

  /** AuthorizationPolicies and PeerAuthentications, compiled; the same object until the policies change. */
  get policies(): PolicySet {
    return this.policySet;
  }

  /**
   * Grows by one each time an update brings different policies (compared by fingerprint), and only then: the
   * agent re-checks open connections when it moves, not on every update.
   */
  get policyRevision(): number {
    return this.policyChanges;
  }

  /**
   * Apply one delta; lookups see the result at once. Indexes change only for the resources that changed (an
   * upsert equal to what is held changes nothing), and policies are recompiled only when a policy resource
   * changed. Throws PolicyError, leaving the model as it was, when the resulting policies cannot be compiled
   * (sources validate each policy before, so this is a set that fails only together). `revision`: the
   * source's revision of the result; without one the state counts applied deltas.
   */
  apply(delta: StateDelta, revision?: number): AppliedChange {
    // First, so that policies that cannot be compiled change nothing.
    const policies = this.compilePolicies(delta);
    const change: AppliedChange = { workloads: 0, services: 0, policies: false };
    const workloads = deltaOf(delta, 'workload');
    for (const uid of workloads?.remove ?? []) change.workloads += this.setWorkload(uid, undefined);
    for (const w of workloads?.upsert ?? []) change.workloads += this.setWorkload(w.uid, w);
    const services = deltaOf(delta, 'service');
    for (const name of services?.remove ?? []) change.services += this.setService(name, undefined);
    for (const s of services?.upsert ?? []) change.services += this.setService(serviceKey(s), s);
    if (change.workloads > 0) this.workloadList = undefined;
    if (change.services > 0) this.serviceList = undefined;
    if (policies !== undefined) {
      this.commitPolicyMaps(delta);
      if (policies !== this.policySet) {
        this.policySet = policies;
        this.policyChanges++;
        change.policies = true;
      }
    }
    this.currentRevision = revision ?? this.currentRevision + 1;
    return change;
  }

  /**
   * Replace the whole model with a snapshot: applied as the delta from what is held, so unchanged resources
   * keep their objects, indexes and round-robin positions. Throws PolicyError like apply().
   */
  replace(snapshot: ClusterSnapshot): AppliedChange {
    return this.apply(
      snapshotDelta(
        {
          workloads: this.workloadsByUid.values(),
          services: this.servicesByName.values(),
          authorizationPolicies: this.authorizationPoliciesByName.values(),
          peerAuthentications: this.peerAuthenticationsByName.values(),
        },
        snapshot,
      ),
      snapshot.revision,
    );
  }

  /**
   * The PolicySet after `delta`: undefined when the delta touches no policy, the current one when the policies
   * it leaves are the same (fingerprint), else a new one. Throws PolicyError.
   */
  private compilePolicies(delta: StateDelta): PolicySet | undefined {
    const ap = deltaOf(delta, 'authorizationPolicy');
    const pa = deltaOf(delta, 'peerAuthentication');
    const touched = (d?: { upsert?: unknown[]; remove?: string[] }): boolean => (d?.upsert?.length ?? 0) + (d?.remove?.length ?? 0) > 0;
    if (!touched(ap) && !touched(pa)) return undefined;
    const authorizationPolicies = [...merged('authorizationPolicy', this.authorizationPoliciesByName, ap).values()];
    const peerAuthentications = [...merged('peerAuthentication', this.peerAuthenticationsByName, pa).values()];
    const root = this.policySet.rootNamespace;
    if (policyFingerprint(authorizationPolicies, peerAuthentications, root) === this.policySet.fingerprint) return this.policySet;
    return new PolicySet(authorizationPolicies, peerAuthentications, root);
  }

  private commitPolicyMaps(delta: StateDelta): void {
    const ap = deltaOf(delta, 'authorizationPolicy');
    const pa = deltaOf(delta, 'peerAuthentication');
    if (ap && changeMap('authorizationPolicy', this.authorizationPoliciesByName, ap)) this.authorizationPolicyList = undefined;
    if (pa && changeMap('peerAuthentication', this.peerAuthenticationsByName, pa)) this.peerAuthenticationList = undefined;
  }

  /** Put (or, with undefined, remove) one workload and its index entries; 1 when something changed. */
  private setWorkload(uid: string, next: Workload | undefined): number {
    const old = this.workloadsByUid.get(uid);
    if (old === undefined && next === undefined) return 0;
    if (old !== undefined && next !== undefined && sameValue(old, next)) return 0;
    if (old) {
      for (const ip of old.ips) this.byIp.delete(ip, (w) => w === old);
      const onNode = this.byNode.get(old.node);
      onNode?.delete(uid);
      if (onNode?.size === 0) this.byNode.delete(old.node);
    }
    if (next) {
      this.workloadsByUid.set(uid, next);
      for (const ip of next.ips) this.byIp.add(ip, next);
      let onNode = this.byNode.get(next.node);
      if (!onNode) {
        onNode = new Map();
        this.byNode.set(next.node, onNode);
      }
      onNode.set(uid, next);
    } else {
      this.workloadsByUid.delete(uid);
    }
    return 1;
  }

  /** Put (or remove) one Service and its VIP and endpoint index entries; 1 when something changed. */
  private setService(name: string, next: Service | undefined): number {
    const old = this.servicesByName.get(name);
    if (old === undefined && next === undefined) return 0;
    if (old !== undefined && next !== undefined && sameValue(old, next)) return 0;
    const vacated = new Set<string>();
    if (old) {
      for (const vip of old.vips) {
        for (const port of old.ports) {
          const key = vipKey(vip, port.port);
          this.byVip.delete(key, (entry) => entry.service === old);
          vacated.add(key);
        }
      }
      for (const port of old.ports) {
        for (const endpoint of port.endpoints) this.byEndpoint.delete(vipKey(endpoint.ip, endpoint.port), (s) => s === old);
      }
    }
    if (next) {
      this.servicesByName.set(name, next);
      for (const vip of next.vips) for (const port of next.ports) this.byVip.add(vipKey(vip, port.port), { service: next, port });
      for (const port of next.ports) {
        // One claim per Service and key, however many of its ports list the endpoint.
        for (const endpoint of port.endpoints) {
          const key = vipKey(endpoint.ip, endpoint.port);
          this.byEndpoint.delete(key, (s) => s === next);
          this.byEndpoint.add(key, next);
        }
      }
    } else {
      this.servicesByName.delete(name);
    }
    // A VIP:port nobody serves any more loses its rotation; one still served keeps it.
    for (const key of vacated) if (!this.byVip.has(key)) this.cursors.delete(key);
    return 1;
  }

  workloadByIp(ip: string): Workload | undefined {
    return this.byIp.get(ip);
  }

  workload(uid: string): Workload | undefined {
    return this.workloadsByUid.get(uid);
  }

  /** Workloads scheduled on `node` that the agent must enrol. */
  meshedWorkloadsOn(node: string): Workload[] {
    const onNode = this.byNode.get(node);
    if (!onNode) return [];
    return [...onNode.values()].filter((w) => w.meshEnabled);
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
      const workload = endpoint.workloadUid ? this.workloadsByUid.get(endpoint.workloadUid) : this.byIp.get(endpoint.ip);
      return { kind: 'service', service: entry.service, port: entry.port, endpoint, workload };
    }
    const workload = this.byIp.get(ip);
    if (workload) return { kind: 'workload', workload, ip, port };
    return { kind: 'passthrough', ip, port };
  }
}

/** `current` with `delta` applied, as a new map (current is left alone). */
function merged<K extends 'authorizationPolicy' | 'peerAuthentication'>(
  kind: K,
  current: ReadonlyMap<string, ResourceTypes[K]>,
  delta: { upsert?: ResourceTypes[K][]; remove?: string[] } | undefined,
): Map<string, ResourceTypes[K]> {
  const next = new Map(current);
  if (delta) changeMap(kind, next, delta);
  return next;
}

/** Apply removals then upserts to `map`; true when it changed. */
function changeMap<K extends ResourceKind>(
  kind: K,
  map: Map<string, ResourceTypes[K]>,
  delta: { upsert?: ResourceTypes[K][]; remove?: string[] },
): boolean {
  let changed = false;
  for (const name of delta.remove ?? []) changed = map.delete(name) || changed;
  for (const value of delta.upsert ?? []) {
    const name = resourceName(kind, value);
    const old = map.get(name);
    if (old !== undefined && sameValue(old, value)) continue;
    map.set(name, value);
    changed = true;
  }
  return changed;
}
