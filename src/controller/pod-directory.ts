// Which pods run on which node, for the CA's "is this service account on the caller's node?" question:
// an index fed by Pod events, and a list/watch informer on the API server that feeds it.
import { CoreV1Api, ListWatch, Watch, type KubeConfig, type KubernetesListObject, type V1Pod } from '@kubernetes/client-node';
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
  /** First wait before a failed list/watch is started again; doubles up to 30 s. Default 500 ms. */
  restartDelayMs?: number;
}

const RESTART_CAP_MS = 30_000;

/**
 * A PodIndex kept by a list/watch informer on every Pod of the cluster. `start` resolves once the
 * first list is in (before that `synced` is false and the CA refuses to decide). A failed list or a
 * broken watch is started again with backoff; the index keeps its last contents meanwhile, and a
 * relist reports the pods that went while it was away as deletions.
 */
export class KubePodDirectory implements PodDirectory {
  readonly index = new PodIndex();
  readonly #informer: ListWatch<V1Pod>;
  readonly #log: Logger;
  readonly #restartStartMs: number;
  #restartMs: number;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #synced = false;
  #lastFailure = 0;

  constructor(kube: KubeConfig, options: KubePodDirectoryOptions) {
    const core = kube.makeApiClient(CoreV1Api);
    this.#log = options.log;
    this.#restartStartMs = options.restartDelayMs ?? 500;
    this.#restartMs = this.#restartStartMs;
    const list = (): Promise<KubernetesListObject<V1Pod>> => core.listPodForAllNamespaces() as Promise<KubernetesListObject<V1Pod>>;
    this.#informer = new ListWatch<V1Pod>('/api/v1/pods', new Watch(kube), list, false);
    this.#informer.on('add', (pod) => this.index.upsert(pod));
    this.#informer.on('update', (pod) => this.index.upsert(pod));
    this.#informer.on('delete', (pod) => this.index.remove(pod));
    this.#informer.on('error', (err) => this.#failed(err));
  }

  /** Resolves after the first complete list. */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.#informer.start();
    // ListWatch reports a failed list through 'error' and resolves anyway: wait for a good one.
    while (!this.#stopped && this.#informer.latestResourceVersion() === '') {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    this.#synced = !this.#stopped;
  }

  get synced(): boolean {
    return this.#synced;
  }

  podsOnNode(node: string): Iterable<PodOnNode> {
    return this.index.podsOnNode(node);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#informer.stop();
  }

  #failed(err: unknown): void {
    if (this.#stopped) return;
    // ListWatch says 'connect' before it lists, so success is not reported: a failure long after
    // the previous one starts the backoff over.
    const now = Date.now();
    if (now - this.#lastFailure > 2 * RESTART_CAP_MS) this.#restartMs = this.#restartStartMs;
    this.#lastFailure = now;
    this.#log.warn({ err, retryInMs: this.#restartMs }, 'pod list/watch failed; starting it again');
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      if (!this.#stopped) void this.#informer.start();
    }, this.#restartMs);
    this.#restartMs = Math.min(this.#restartMs * 2, RESTART_CAP_MS);
  }
}
