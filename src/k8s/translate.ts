// Kubernetes objects as the API server returns them → Ferry's model: a Pod (with its Namespace) becomes a
// Workload, a Service with its EndpointSlices becomes a Service with endpoints, Istio security objects become
// normalised policies. Pure functions: the controller calls them on informer caches, tests on plain objects.
import type { V1EndpointSlice, V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import {
  DEFAULT_ROOT_NAMESPACE,
  validateAuthorizationPolicy,
  validatePeerAuthentication,
  type AuthorizationPolicy,
  type PeerAuthentication,
} from '../policy';
import type { Endpoint, Service, ServicePort, Workload } from '../state';
import {
  DEFAULT_NAMESPACE,
  DEFAULT_SERVICE_ACCOUNT,
  EXCLUDE_OUTBOUND_CIDRS_ANNOTATION,
  EXCLUDE_OUTBOUND_PORTS_ANNOTATION,
  POD_ANNOTATIONS,
  ferryAnnotationProblems,
  meshEnabledFor,
  parseExcludedCidrs,
  parseExcludedPorts,
  type ObjectProblem,
} from './mesh-rules';

/** The label EndpointSlice controllers put on every slice of a Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const CLUSTER_DOMAIN = 'cluster.local';

/** What translating one object gave: the model value, and what was wrong with it (never silently dropped). */
export interface Translation<T> {
  value: T;
  problems: ObjectProblem[];
  warnings: string[];
}

/** `kind namespace/name` for messages and event subjects. */
export function objectRef(kind: string, object: { metadata?: { namespace?: string; name?: string } }): string {
  const namespace = object.metadata?.namespace;
  return `${kind} ${namespace ? `${namespace}/` : ''}${object.metadata?.name ?? '(unnamed)'}`;
}

/** Pods that have finished hold no sockets and their addresses may already be reused. */
function podTerminated(pod: V1Pod): boolean {
  return pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
}

/**
 * A Pod as a Workload. The workload is keyed by the Pod's UID (a recreated pod of the same name is a new
 * workload). Enrolment needs the namespace's opt-in; host-network pods share the node's namespace and are never
 * enrolled. A bad exclusion annotation enrols the pod without that exclusion and reports the field — capturing
 * more is the safe side.
 */
export function workloadFromPod(pod: V1Pod, namespace: V1Namespace | undefined): Translation<Workload> {
  const metadata = pod.metadata ?? {};
  const annotations = metadata.annotations ?? {};
  const problems = ferryAnnotationProblems('Pod', annotations, POD_ANNOTATIONS);
  const ports = parseExcludedPorts(annotations[EXCLUDE_OUTBOUND_PORTS_ANNOTATION]);
  const cidrs = parseExcludedCidrs(annotations[EXCLUDE_OUTBOUND_CIDRS_ANNOTATION]);
  problems.push(...ports.problems, ...cidrs.problems);
  const warnings = [...ports.warnings, ...cidrs.warnings].map((w) => `${objectRef('Pod', pod)}: ${w}`);
  const ips = (pod.status?.podIPs ?? []).map((entry) => entry.ip).filter((ip): ip is string => typeof ip === 'string' && ip !== '');
  if (ips.length === 0 && pod.status?.podIP) ips.push(pod.status.podIP);
  const meshEnabled =
    meshEnabledFor(namespace?.metadata?.annotations, annotations) && pod.spec?.hostNetwork !== true && !podTerminated(pod);
  return {
    value: {
      uid: metadata.uid ?? `${metadata.namespace ?? DEFAULT_NAMESPACE}/${metadata.name ?? ''}`,
      namespace: metadata.namespace ?? DEFAULT_NAMESPACE,
      name: metadata.name ?? '',
      node: pod.spec?.nodeName ?? '',
      serviceAccount: pod.spec?.serviceAccountName || DEFAULT_SERVICE_ACCOUNT,
      ips: podTerminated(pod) ? [] : ips,
      labels: { ...(metadata.labels ?? {}) },
      meshEnabled,
      netnsPath: '',
      excludeOutboundPorts: ports.problems.length === 0 ? ports.value : [],
      excludeOutboundCidrs: cidrs.problems.length === 0 ? cidrs.value : [],
    },
    problems,
    warnings,
  };
}

/**
 * A Service with the endpoints its EndpointSlices list. A slice port is matched to a Service port by name (the
 * EndpointSlice controller copies the Service port's name); endpoints whose `ready` condition is false are left
 * out, as kube-proxy does. Headless Services have no VIP but keep their endpoints.
 */
export function serviceFromK8s(service: V1Service, slices: readonly V1EndpointSlice[]): Service {
  const namespace = service.metadata?.namespace ?? DEFAULT_NAMESPACE;
  const name = service.metadata?.name ?? '';
  const vips = (service.spec?.clusterIPs ?? (service.spec?.clusterIP ? [service.spec.clusterIP] : [])).filter(
    (ip) => ip !== '' && ip !== 'None',
  );
  const ports: ServicePort[] = (service.spec?.ports ?? [])
    .filter((p) => (p.protocol ?? 'TCP') === 'TCP')
    .map((p) => {
      const endpoints: Endpoint[] = [];
      const seen = new Set<string>();
      for (const slice of slices) {
        const slicePort = (slice.ports ?? []).find((sp) => (sp.name ?? '') === (p.name ?? '') && (sp.protocol ?? 'TCP') === 'TCP');
        if (slicePort?.port === undefined || slicePort.port === null) continue;
        for (const endpoint of slice.endpoints ?? []) {
          if (endpoint.conditions?.ready === false) continue;
          const uid = endpoint.targetRef?.kind === 'Pod' ? endpoint.targetRef.uid : undefined;
          for (const ip of endpoint.addresses ?? []) {
            const key = `${ip}|${slicePort.port}`;
            if (seen.has(key)) continue;
            seen.add(key);
            endpoints.push(uid ? { ip, port: slicePort.port, workloadUid: uid } : { ip, port: slicePort.port });
          }
        }
      }
      endpoints.sort((a, b) => (a.ip === b.ip ? a.port - b.port : a.ip < b.ip ? -1 : 1));
      return p.name ? { name: p.name, port: p.port, endpoints } : { port: p.port, endpoints };
    });
  return { namespace, name, hostname: `${name}.${namespace}.svc.${CLUSTER_DOMAIN}`, vips, ports };
}

/**
 * An AuthorizationPolicy from the API. One Ferry cannot enforce as written is never dropped — that would open
 * what its author meant to close — but replaced by a stand-in that denies everything to the workloads it
 * selects (its whole namespace when the selector itself is unreadable), and reported.
 */
export function authorizationPolicyFromK8s(object: unknown): Translation<AuthorizationPolicy> {
  const result = validateAuthorizationPolicy(object, { origin: 'api-server' });
  if (result.value !== undefined) return { value: result.value, problems: [], warnings: result.warnings };
  const { namespace, name, selector } = identify(object);
  return {
    value: { namespace, name, action: 'DENY', dryRun: false, ...(selector ? { selector } : {}), rules: [{}] },
    problems: result.problems,
    warnings: [
      `${objectRef('AuthorizationPolicy', { metadata: { namespace, name } })}: not valid; enforced as deny-all for the workloads it selects`,
    ],
  };
}

/** A PeerAuthentication from the API; one Ferry cannot read is enforced as STRICT for what it selects. */
export function peerAuthenticationFromK8s(object: unknown, rootNamespace = DEFAULT_ROOT_NAMESPACE): Translation<PeerAuthentication> {
  const result = validatePeerAuthentication(object, { rootNamespace, origin: 'api-server' });
  if (result.value !== undefined) return { value: result.value, problems: [], warnings: result.warnings };
  const { namespace, name, selector } = identify(object);
  return {
    value: { namespace, name, ...(selector ? { selector } : {}), mode: 'STRICT', portLevelMtls: [] },
    problems: result.problems,
    warnings: [
      `${objectRef('PeerAuthentication', { metadata: { namespace, name } })}: not valid; enforced as STRICT for the workloads it selects`,
    ],
  };
}

function identify(object: unknown): { namespace: string; name: string; selector?: Record<string, string> } {
  const record = (value: unknown): Record<string, unknown> =>
    typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  const metadata = record(record(object).metadata);
  const matchLabels = record(record(record(record(object).spec).selector).matchLabels);
  const entries = Object.entries(matchLabels);
  const selector = entries.every(([, v]) => typeof v === 'string') ? (Object.fromEntries(entries) as Record<string, string>) : undefined;
  return {
    namespace: typeof metadata.namespace === 'string' ? metadata.namespace : DEFAULT_NAMESPACE,
    name: typeof metadata.name === 'string' ? metadata.name : '',
    // An unreadable selector widens the stand-in to the namespace; an empty one already means the namespace.
    ...(selector && entries.length > 0 ? { selector } : {}),
  };
}
