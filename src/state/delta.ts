// Typed changes to the agent's model, as every ConfigSource delivers them (ztunnel's ProxyStateUpdater: update
// and remove by name): the resource kinds, how each is named, and the delta between two whole snapshots.
import type { AuthorizationPolicy, PeerAuthentication } from '../policy';
import type { ClusterSnapshot, Service, Workload } from './model';

/** Upserts carry whole resources (named by their own fields); removals name them. */
export interface ResourceDelta<T> {
  upsert?: T[];
  remove?: string[];
}

/**
 * One step of configuration. Within a kind, removals apply before upserts. Workloads are named by uid, the
 * others "namespace/name" (resourceName).
 */
export interface StateDelta {
  workloads?: ResourceDelta<Workload>;
  services?: ResourceDelta<Service>;
  authorizationPolicies?: ResourceDelta<AuthorizationPolicy>;
  peerAuthentications?: ResourceDelta<PeerAuthentication>;
}

export interface ResourceTypes {
  workload: Workload;
  service: Service;
  authorizationPolicy: AuthorizationPolicy;
  peerAuthentication: PeerAuthentication;
}

export type ResourceKind = keyof ResourceTypes;

export const RESOURCE_KINDS: readonly ResourceKind[] = ['workload', 'service', 'authorizationPolicy', 'peerAuthentication'];

/** Which StateDelta field carries each kind. */
export const DELTA_FIELDS = {
  workload: 'workloads',
  service: 'services',
  authorizationPolicy: 'authorizationPolicies',
  peerAuthentication: 'peerAuthentications',
} as const satisfies { [K in ResourceKind]: keyof StateDelta };

/** The name a resource is known by in deltas, the controller's store and on the wire. */
export function resourceName<K extends ResourceKind>(kind: K, value: ResourceTypes[K]): string {
  if (kind === 'workload') return (value as Workload).uid;
  const { namespace, name } = value as Service | AuthorizationPolicy | PeerAuthentication;
  return `${namespace}/${name}`;
}

/** The delta field of `kind`, typed. */
export function deltaOf<K extends ResourceKind>(delta: StateDelta, kind: K): ResourceDelta<ResourceTypes[K]> | undefined {
  return delta[DELTA_FIELDS[kind]] as ResourceDelta<ResourceTypes[K]> | undefined;
}

export function isEmptyDelta(delta: StateDelta): boolean {
  for (const kind of RESOURCE_KINDS) {
    const d = deltaOf(delta, kind);
    if (d && ((d.upsert?.length ?? 0) > 0 || (d.remove?.length ?? 0) > 0)) return false;
  }
  return true;
}

/** Structural equality of JSON-shaped values, whatever the key order of their objects. */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    if (a.length !== other.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameValue(a[i], other[i])) return false;
    return true;
  }
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  const keys = Object.keys(left).filter((k) => left[k] !== undefined);
  if (keys.length !== Object.keys(right).filter((k) => right[k] !== undefined).length) return false;
  for (const key of keys) if (!sameValue(left[key], right[key])) return false;
  return true;
}

/** What must change to turn `current` into `next`: the resources added or different, and those gone. */
export function resourcesDelta<K extends ResourceKind>(
  kind: K,
  current: Iterable<ResourceTypes[K]>,
  next: readonly ResourceTypes[K][],
): ResourceDelta<ResourceTypes[K]> {
  const before = new Map<string, ResourceTypes[K]>();
  for (const value of current) before.set(resourceName(kind, value), value);
  const upsert: ResourceTypes[K][] = [];
  const seen = new Set<string>();
  for (const value of next) {
    const name = resourceName(kind, value);
    seen.add(name);
    const old = before.get(name);
    if (old === undefined || !sameValue(old, value)) upsert.push(value);
  }
  const remove = [...before.keys()].filter((name) => !seen.has(name));
  return { upsert, remove };
}

/** The resources of a whole snapshot, by kind. */
export interface ResourceSets {
  workloads: Iterable<Workload>;
  services: Iterable<Service>;
  authorizationPolicies: Iterable<AuthorizationPolicy>;
  peerAuthentications: Iterable<PeerAuthentication>;
}

/** The delta that turns `current` (an empty model when undefined) into `next`, a whole snapshot. */
export function snapshotDelta(current: ResourceSets | undefined, next: ClusterSnapshot): StateDelta {
  return {
    workloads: resourcesDelta('workload', current?.workloads ?? [], next.workloads),
    services: resourcesDelta('service', current?.services ?? [], next.services),
    authorizationPolicies: resourcesDelta('authorizationPolicy', current?.authorizationPolicies ?? [], next.authorizationPolicies ?? []),
    peerAuthentications: resourcesDelta('peerAuthentication', current?.peerAuthentications ?? [], next.peerAuthentications ?? []),
  };
}
