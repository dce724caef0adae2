// The shapes of the agent's one in-memory model: workloads (pods), services with endpoints, and policies.
import type { AuthorizationPolicy, PeerAuthentication } from '../policy';

export interface Workload {
  /** "namespace/name" */
  uid: string;
  namespace: string;
  name: string;
  node: string;
  serviceAccount: string;
  ips: string[];
  labels: Record<string, string>;
  /** Namespace opted in and the pod not opted out: the agent enrols it. */
  meshEnabled: boolean;
  /** Where the agent finds the pod's network namespace (/run/netns/NAME or /proc/PID/ns/net). */
  netnsPath: string;
  excludeOutboundPorts: number[];
  excludeOutboundCidrs: string[];
}

export interface Endpoint {
  ip: string;
  port: number;
  /** uid of the backing workload, when it is one the model knows. */
  workloadUid?: string;
}

export interface ServicePort {
  name?: string;
  port: number;
  endpoints: Endpoint[];
}

export interface Service {
  namespace: string;
  name: string;
  /** name.namespace.svc.cluster.local */
  hostname: string;
  vips: string[];
  ports: ServicePort[];
}

/** Everything the agent is told, as one document; `revision` grows with every change. */
export interface ClusterSnapshot {
  version: 1;
  revision: number;
  workloads: Workload[];
  services: Service[];
  /** Normalised by src/policy (validateAuthorizationPolicy). Absent means none, as in snapshots that predate policies. */
  authorizationPolicies?: AuthorizationPolicy[];
  /** Normalised by src/policy (validatePeerAuthentication). Absent means none. */
  peerAuthentications?: PeerAuthentication[];
}

export function workloadUid(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}
