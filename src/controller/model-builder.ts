// Keeps Ferry's model in step with the cluster: each informer event re-translates exactly the model resources it
// touches (a Pod → its workload; a Namespace → the workloads of its pods; a Service or one of its EndpointSlices →
// that Service; a policy → itself) and hands only real changes to the sink, so an update that changes nothing
// Ferry reads (a Pod's status conditions, a slice's resourceVersion) never reaches an agent.
import type { KubernetesObject, V1EndpointSlice, V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import {
  SERVICE_NAME_LABEL,
  authorizationPolicyFromK8s,
  peerAuthenticationFromK8s,
  serviceFromK8s,
  workloadFromPod,
  type ClusterWatch,
  type CustomObject,
  type ObjectProblem,
} from '../k8s';
import type { ResourceKind, ResourceTypes } from '../state';
import type { Logger } from '../telemetry';

export type ModelKind = ResourceKind;

/** Where the model goes (the config server's resource store). Keys: a workload's UID; `namespace/name` otherwise. */
export interface ModelSink {
  upsert<K extends ModelKind>(kind: K, key: string, value: ResourceTypes[K]): void;
  remove(kind: ModelKind, key: string): void;
}

/** Told about every object Ferry cannot take as written (the production one writes Kubernetes Events). */
export interface ObjectReporter {
  invalid(kind: string, object: KubernetesObject, problems: readonly ObjectProblem[], warnings: readonly string[]): void;
}

const keyOf = (object: KubernetesObject): string => `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;

export class ModelBuilder {
  /** What the sink last got, serialized, per kind and key: a repeat is not sent again. */
  readonly #sent = new Map<ModelKind, Map<string, string>>();
  readonly #watch: ClusterWatch;
  readonly #sink: ModelSink;
  readonly #reporter: ObjectReporter;
  readonly #rootNamespace: string | undefined;

  constructor(options: { watch: ClusterWatch; sink: ModelSink; reporter: ObjectReporter; log: Logger; rootNamespace?: string }) {
    this.#watch = options.watch;
    this.#sink = options.sink;
    this.#reporter = options.reporter;
    this.#rootNamespace = options.rootNamespace;
    for (const kind of ['workload', 'service', 'authorizationPolicy', 'peerAuthentication'] as const) this.#sent.set(kind, new Map());
    const w = options.watch;
    const both = <T>(
      resource: { on(event: 'add' | 'update' | 'delete', handler: (object: T) => void): void },
      handler: (object: T) => void,
    ) => {
      resource.on('add', handler);
      resource.on('update', handler);
    };
    both<V1Pod>(w.pods, (pod) => this.#pod(pod));
    w.pods.on('delete', (pod) => this.#removed('workload', pod.metadata?.uid ?? keyOf(pod)));
    const namespaceChanged = (namespace: V1Namespace): void => {
      for (const pod of w.pods.list(namespace.metadata?.name)) this.#pod(pod);
    };
    both<V1Namespace>(w.namespaces, namespaceChanged);
    w.namespaces.on('delete', namespaceChanged);
    both<V1Service>(w.services, (service) => this.#service(service.metadata?.namespace ?? '', service.metadata?.name ?? ''));
    w.services.on('delete', (service) => this.#removed('service', keyOf(service)));
    const sliceChanged = (slice: V1EndpointSlice): void => {
      const name = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
      if (name !== undefined) this.#service(slice.metadata?.namespace ?? '', name);
    };
    both<V1EndpointSlice>(w.endpointSlices, sliceChanged);
    w.endpointSlices.on('delete', sliceChanged);
    both<CustomObject>(w.authorizationPolicies, (policy) => {
      const t = authorizationPolicyFromK8s(policy);
      this.#report('AuthorizationPolicy', policy, t.problems, t.warnings);
      this.#changed('authorizationPolicy', keyOf(policy), t.value);
    });
    w.authorizationPolicies.on('delete', (policy) => this.#removed('authorizationPolicy', keyOf(policy)));
    both<CustomObject>(w.peerAuthentications, (policy) => {
      const t = peerAuthenticationFromK8s(policy, this.#rootNamespace);
      this.#report('PeerAuthentication', policy, t.problems, t.warnings);
      this.#changed('peerAuthentication', keyOf(policy), t.value);
    });
    w.peerAuthentications.on('delete', (policy) => this.#removed('peerAuthentication', keyOf(policy)));
  }

  /** How many resources of each kind the sink holds. */
  counts(): Record<ModelKind, number> {
    const counts = {} as Record<ModelKind, number>;
    for (const [kind, sent] of this.#sent) counts[kind] = sent.size;
    return counts;
  }

  #pod(pod: V1Pod): void {
    // Not scheduled yet: no node, no address, nothing an agent could do with it. A host-network pod has its
    // node's addresses: it is no workload of its own (as in Istio ambient), or the node's traffic would carry its name.
    // A finished pod (Succeeded, Failed) is no workload either: its addresses may be reused. Should its network
    // namespace still be there, its agent refuses its traffic until it is gone — it is never left unmeshed.
    const phase = pod.status?.phase;
    if (!pod.spec?.nodeName || pod.spec.hostNetwork === true || phase === 'Succeeded' || phase === 'Failed') {
      this.#removed('workload', pod.metadata?.uid ?? keyOf(pod));
      return;
    }
    const namespace = this.#watch.namespaces.get(pod.metadata?.namespace ?? '');
    const t = workloadFromPod(pod, namespace);
    this.#report('Pod', pod, t.problems, t.warnings);
    this.#changed('workload', t.value.uid, t.value);
  }

  #service(namespace: string, name: string): void {
    const service = this.#watch.services.get(name, namespace);
    if (service === undefined) return;
    const slices = this.#watch.endpointSlices.list(namespace).filter((slice) => slice.metadata?.labels?.[SERVICE_NAME_LABEL] === name);
    this.#changed('service', `${namespace}/${name}`, serviceFromK8s(service, slices));
  }

  #report(kind: string, object: KubernetesObject, problems: readonly ObjectProblem[], warnings: readonly string[]): void {
    if (problems.length > 0 || warnings.length > 0) this.#reporter.invalid(kind, object, problems, warnings);
  }

  #changed<K extends ModelKind>(kind: K, key: string, value: ResourceTypes[K]): void {
    const sent = this.#sent.get(kind);
    const text = JSON.stringify(value);
    if (sent === undefined || sent.get(key) === text) return;
    sent.set(key, text);
    this.#sink.upsert(kind, key, value);
  }

  #removed(kind: ModelKind, key: string): void {
    const sent = this.#sent.get(kind);
    if (sent?.delete(key)) this.#sink.remove(kind, key);
  }
}
