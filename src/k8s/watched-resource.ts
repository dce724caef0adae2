// One Kubernetes collection kept in memory by list+watch (@kubernetes/client-node's informer), made to survive
// the API server: the informer relists by itself after 410 Gone (resourceVersion expired, RFC 7232-style
// "too old"), but after any other failure — the API server restarting, a refused connection — it stops, so this
// restarts it with capped, jittered backoff from the last resourceVersion it saw.
import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../telemetry';

export type ResourceEvent = 'add' | 'update' | 'delete';

export interface WatchedResourceOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** API path of the collection, e.g. /api/v1/pods or /apis/security.istio.io/v1/authorizationpolicies. */
  path: string;
  /** The list call for the same collection (an API client method). */
  list: () => Promise<KubernetesListObject<T>>;
  /** The same selectors the list call uses, for the watch (e.g. spec.nodeName=node-a). */
  labelSelector?: string;
  fieldSelector?: string;
  log: Logger;
  backoffStartMs?: number;
  backoffCapMs?: number;
}

export interface WatchedResourceStats {
  /** Full lists: the first, and each after a 410 or an expired resourceVersion. */
  lists: number;
  /** Watch or list failures (each followed by a restart). */
  errors: number;
  lastError?: string;
}

const BACKOFF_START_MS = 200;
const BACKOFF_CAP_MS = 10_000;

/**
 * Start with `start()`; `synced` resolves after the first complete list. Handlers run in the informer's order
 * (add/update/delete per object); after a relist, objects that vanished meanwhile are delivered as deletes.
 */
export class WatchedResource<T extends KubernetesObject> {
  readonly path: string;
  readonly synced: Promise<void>;
  readonly #informer: ListWatch<T>;
  readonly #log: Logger;
  readonly #start: number;
  readonly #cap: number;
  #backoff: number;
  #timer: NodeJS.Timeout | undefined;
  #stopped = true;
  #markSynced: () => void = () => {};
  #stats: WatchedResourceStats = { lists: 0, errors: 0 };

  constructor(options: WatchedResourceOptions<T>) {
    this.path = options.path;
    this.#log = options.log.child({ resource: options.path });
    this.#start = options.backoffStartMs ?? BACKOFF_START_MS;
    this.#cap = options.backoffCapMs ?? BACKOFF_CAP_MS;
    this.#backoff = this.#start;
    this.synced = new Promise((resolve) => {
      this.#markSynced = resolve;
    });
    const list = async (): Promise<KubernetesListObject<T>> => {
      const result = await options.list();
      this.#stats.lists++;
      this.#backoff = this.#start;
      // The informer applies the list right after this returns; a microtask later it has.
      queueMicrotask(() => this.#markSynced());
      return result;
    };
    this.#informer = new ListWatch<T>(
      options.path,
      new Watch(options.kubeConfig),
      list,
      false,
      options.labelSelector,
      options.fieldSelector,
    );
    this.#informer.on('error', (err: unknown) => this.#failed(err));
  }

  on(event: ResourceEvent, handler: (object: T) => void): void {
    this.#informer.on(event, handler);
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    void this.#run();
  }

  /** Stops watching; the cache keeps what it last saw. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#informer.stop();
  }

  list(namespace?: string): readonly T[] {
    return this.#informer.list(namespace);
  }

  get(name: string, namespace?: string): T | undefined {
    return this.#informer.get(name, namespace);
  }

  stats(): WatchedResourceStats {
    return { ...this.#stats };
  }

  async #run(): Promise<void> {
    try {
      await this.#informer.start();
    } catch (err) {
      this.#failed(err);
    }
  }

  #failed(err: unknown): void {
    if (this.#stopped || this.#timer !== undefined) return;
    this.#stats.errors++;
    this.#stats.lastError = describe(err);
    const delay = Math.round(this.#backoff * (0.5 + Math.random() / 2));
    this.#backoff = Math.min(this.#backoff * 2, this.#cap);
    this.#log.warn({ err: this.#stats.lastError, retryInMs: delay }, 'watch failed; restarting');
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#stopped) void this.#run();
    }, delay);
    this.#timer.unref();
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown; statusCode?: unknown }).statusCode ?? (err as { code?: unknown }).code;
    return code !== undefined ? `${err.message} (${String(code)})` : err.message;
  }
  return String(err);
}
