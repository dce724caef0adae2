// Which pods run on which node, for the CA's "is this service account on the caller's node?" question:
// an index fed by Pod events, and a list/watch on the API server (WatchedResource) that feeds it.
import { CoreV1Api, type KubeConfig, type KubernetesListObject, type V1Pod } from '@kubernetes/client-node';
import { WatchedResource } from '../k8s';
import type { Logger } from '../telemetry';

export interface PodOnNode {
  namespace: string;
  serviceAccount: string;
  uid: string;
  name: string;
}

/** What the CA service asks: the pods scheduled on `node` that may still run (not Succeeded or Failed). */
export interface PodDirectory {
  podsOnNode(node: string): Iterable<PodOnNode>;
}

/**
 * Pods by node, keyed by UID, updated one Pod event at a time (the controller's own Pod informer can
 * feed it). A pod counts from the moment it is bound to a node (`spec.nodeName`) until it terminates:
 * Pending pods need their certificate before they start, and pods being deleted still serve while
 * they drain. Succeeded and Failed pods never run again (a pod's containers are not restarted past
 * those phases), so they are dropped.
 */
export class PodIndex implements PodDirectory {
  readonly #byNode = new Map<string, Map<string, PodOnNode>>();
  readonly #nodeOf = new Map<string, string>();

  /** An added or updated Pod. */
  upsert(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (uid === undefined || uid === '') return;
    const node = pod.spec?.nodeName;
    const phase = pod.status?.phase;
    if (node === undefined || node === '' || phase === 'Succeeded' || phase === 'Failed') {
      this.#drop(uid);
      return;
    }
    const previous = this.#nodeOf.get(uid);
    if (previous !== undefined && previous !== node) this.#drop(uid);
    let pods = this.#byNode.get(node);
    if (pods === undefined) {
      pods = new Map();
      this.#byNode.set(node, pods);
    }
    pods.set(uid, {
      namespace: pod.metadata?.namespace ?? 'default',
      // The ServiceAccount admission plugin fills in "default" when a pod names none.
      serviceAccount: pod.spec?.serviceAccountName || 'default',
      uid,
      name: pod.metadata?.name ?? '',
    });
    this.#nodeOf.set(uid, node);
  }

  /** A deleted Pod. */
  remove(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (uid !== undefined) this.#drop(uid);
  }

  podsOnNode(node: string): Iterable<PodOnNode> {
    return this.#byNode.get(node)?.values() ?? [];
  }

  /** Pods indexed, on every node. */
  get size(): number {
    return this.#nodeOf.size;
  }

  #drop(uid: string): void {
    const node = this.#nodeOf.get(uid);
    if (node === undefined) return;
    this.#nodeOf.delete(uid);
    const pods = this.#byNode.get(node);
    pods?.delete(uid);
    if (pods?.size === 0) this.#byNode.delete(node);
  }
}

export interface KubePodDirectoryOptions {
  log: Logger;
}

/**
 * A PodIndex kept by a list/watch (WatchedResource) on every Pod of the cluster, for a CA service that runs
 * without the controller's own Pod informer. `start` resolves once the first list is in (before that `synced`
 * is false and the CA refuses to decide); the watch restarts with backoff and a relist reports the pods that
 * went while it was away as deletions.
 */
export class KubePodDirectory implements PodDirectory {
  readonly index = new PodIndex();
  readonly #pods: WatchedResource<V1Pod>;
  #synced = false;

  constructor(kube: KubeConfig, options: KubePodDirectoryOptions) {
    const core = kube.makeApiClient(CoreV1Api);
    this.#pods = new WatchedResource<V1Pod>({
      kubeConfig: kube,
      path: '/api/v1/pods',
      list: () => core.listPodForAllNamespaces() as Promise<KubernetesListObject<V1Pod>>,
      log: options.log,
    });
    this.#pods.on('add', (pod) => this.index.upsert(pod));
    this.#pods.on('update', (pod) => this.index.upsert(pod));
    this.#pods.on('delete', (pod) => this.index.remove(pod));
  }

  /** Resolves after the first complete list. */
  async start(): Promise<void> {
    this.#pods.start();
    await this.#pods.synced;
    this.#synced = true;
  }

  get synced(): boolean {
    return this.#synced;
  }

  podsOnNode(node: string): Iterable<PodOnNode> {
    return this.index.podsOnNode(node);
  }

  async stop(): Promise<void> {
    await this.#pods.stop();
  }
}
