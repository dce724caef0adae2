// Istio's standard TCP metric names and labels, and how a connection's parties become label values,
// so dashboards and Kiali built for Istio read Ferry's metrics unchanged. Every value is bounded by
// the workloads and services in the cluster: nothing per connection (no addresses, no ports).

export const ISTIO_TCP_METRICS = {
  opened: 'istio_tcp_connections_opened_total',
  closed: 'istio_tcp_connections_closed_total',
  /** Bytes the destination sent back ("during response"). */
  sent: 'istio_tcp_sent_bytes_total',
  /** Bytes the source sent ("during request"). */
  received: 'istio_tcp_received_bytes_total',
} as const;

export const ISTIO_TCP_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_canonical_service',
  'source_canonical_revision',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_canonical_service',
  'destination_canonical_revision',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
] as const;

export type IstioTcpLabel = (typeof ISTIO_TCP_LABELS)[number];
export type IstioTcpLabels = Record<IstioTcpLabel, string>;

/** Istio's value for anything not known. */
export const UNKNOWN = 'unknown';

/** `-`: none; DENY: refused by authorization or peer authentication; CONNECT: the upstream could not be reached. */
/**
 * Envoy's response flags, the subset Ferry sets: `-` none, DENY refused by policy (or by the mesh
 * before policy: a call to the agent's own ports, an unknown workload), CONNECT upstream
 * unreachable, UO overflow (a connection limit was hit).
 */
export type ResponseFlag = '-' | 'DENY' | 'CONNECT' | 'UO';

export type SecurityPolicy = 'mutual_tls' | 'unknown';

/** The parts of a workload (pod) the labels are made of; state's Workload has them all. */
export interface LabelledWorkload {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** The owning workload's name (a Deployment's, say); the pod's name when absent. */
  workloadName?: string;
}

export interface ServiceName {
  namespace: string;
  name: string;
  hostname: string;
}

/** One side of a connection as the reporting agent knows it. */
export interface TrafficParty {
  workload?: LabelledWorkload;
  /** When the workload is not known but its namespace is (from a verified identity). */
  namespace?: string;
  /** `spiffe://…` when verified (mutual TLS, or the agent's own pod on the same-node path). */
  principal?: string;
}

export interface TrafficDescription {
  reporter: 'source' | 'destination';
  source: TrafficParty;
  destination: TrafficParty & { service?: ServiceName };
  security: SecurityPolicy;
}

/** Istio's canonical service: the first of these labels a pod has, else its workload name. */
export function canonicalService(w: LabelledWorkload): string {
  return w.labels['service.istio.io/canonical-name'] ?? w.labels['app.kubernetes.io/name'] ?? w.labels.app ?? workloadName(w);
}

/** Istio's canonical revision, `latest` when none of these labels is set. */
export function canonicalRevision(w: LabelledWorkload): string {
  return w.labels['service.istio.io/canonical-revision'] ?? w.labels['app.kubernetes.io/version'] ?? w.labels.version ?? 'latest';
}

export function workloadName(w: LabelledWorkload): string {
  return w.workloadName ?? w.name;
}

/** The full label set of one connection; `response_flags` is `-` until the connection ends. */
export function istioTcpLabels(d: TrafficDescription, flag: ResponseFlag = '-'): IstioTcpLabels {
  const src = d.source.workload;
  const dst = d.destination.workload;
  const service = d.destination.service;
  const srcApp = src ? canonicalService(src) : UNKNOWN;
  const srcVersion = src ? canonicalRevision(src) : UNKNOWN;
  const dstApp = dst ? canonicalService(dst) : UNKNOWN;
  const dstVersion = dst ? canonicalRevision(dst) : UNKNOWN;
  return {
    reporter: d.reporter,
    source_workload: src ? workloadName(src) : UNKNOWN,
    source_workload_namespace: src?.namespace ?? d.source.namespace ?? UNKNOWN,
    source_principal: d.source.principal ?? UNKNOWN,
    source_app: srcApp,
    source_version: srcVersion,
    source_canonical_service: srcApp,
    source_canonical_revision: srcVersion,
    destination_service: service?.hostname ?? UNKNOWN,
    destination_service_name: service?.name ?? UNKNOWN,
    destination_service_namespace: service?.namespace ?? UNKNOWN,
    destination_workload: dst ? workloadName(dst) : UNKNOWN,
    destination_workload_namespace: dst?.namespace ?? d.destination.namespace ?? UNKNOWN,
    destination_principal: d.destination.principal ?? UNKNOWN,
    destination_app: dstApp,
    destination_version: dstVersion,
    destination_canonical_service: dstApp,
    destination_canonical_revision: dstVersion,
    request_protocol: 'tcp',
    response_flags: flag,
    connection_security_policy: d.security,
  };
}
