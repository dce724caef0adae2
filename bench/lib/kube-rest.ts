// A JSON client of the Kubernetes API for benchmarks that write objects by the thousand: one pool of keep-alive
// TLS connections with the kubeconfig's credentials (@kubernetes/client-node makes a new https.Agent, so a new
// connection and TLS handshake, for every request), retries of 429 and 5xx answers, and a bounded-concurrency map.
import { KubeConfig } from '@kubernetes/client-node';
import { Agent, request } from 'undici';

/** An answer other than 2xx, after retries; `status` 0 when no answer came at all. */
export class KubeRestError extends Error {
  constructor(
    readonly status: number,
    readonly method: string,
    readonly path: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${method} ${path}: ${status === 0 ? 'no answer' : `HTTP ${status}`}: ${detail.slice(0, 400)}`, options);
    this.name = 'KubeRestError';
  }
}

export interface KubeRestOptions {
  /** Connections kept open to the API server. Default 32. */
  connections?: number;
  /** One request (headers and body). Default 30 s. */
  timeoutMs?: number;
  /** Attempts of a request answered 429/5xx or not answered. Default 5. */
  attempts?: number;
}

export type PatchType = 'merge' | 'json';

const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
};

export class KubeRest {
  readonly server: string;
  readonly #dispatcher: Agent;
  readonly #headers: Record<string, string>;
  readonly #timeoutMs: number;
  readonly #attempts: number;
  /** Requests answered, and retried, since construction. */
  readonly counts = { requests: 0, retries: 0 };

  private constructor(server: string, dispatcher: Agent, headers: Record<string, string>, options: KubeRestOptions) {
    this.server = server.replace(/\/$/, '');
    this.#dispatcher = dispatcher;
    this.#headers = headers;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#attempts = options.attempts ?? 5;
  }

  /** A client with the current context of `kubeconfigPath` (client certificate or token, the cluster's CA). */
  static async fromKubeconfig(kubeconfigPath: string, options: KubeRestOptions = {}): Promise<KubeRest> {
    const kube = new KubeConfig();
    kube.loadFromFile(kubeconfigPath);
    const cluster = kube.getCurrentCluster();
    if (cluster === null) throw new Error(`${kubeconfigPath}: no current cluster`);
    const tls: { ca?: unknown; cert?: unknown; key?: unknown; headers?: Record<string, unknown> } = {};
    await kube.applyToHTTPSOptions(tls as Parameters<KubeConfig['applyToHTTPSOptions']>[0]);
    const headers: Record<string, string> = { accept: 'application/json' };
    for (const [name, value] of Object.entries(tls.headers ?? {})) headers[name.toLowerCase()] = String(value);
    const dispatcher = new Agent({
      connections: options.connections ?? 32,
      keepAliveTimeout: 30_000,
      headersTimeout: options.timeoutMs ?? 30_000,
      bodyTimeout: options.timeoutMs ?? 30_000,
      connect: {
        ca: tls.ca as string | Buffer | undefined,
        cert: tls.cert as string | Buffer | undefined,
        key: tls.key as string | Buffer | undefined,
      },
    });
    return new KubeRest(cluster.server, dispatcher, headers, options);
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>('GET', path);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>('POST', path, body);
  }

  patch<T>(path: string, body: unknown, type: PatchType = 'merge'): Promise<T> {
    return this.call<T>('PATCH', path, body, PATCH_CONTENT_TYPES[type]);
  }

  /**
   * One request; 429 and 5xx answers (the API server's own back-pressure) and connection failures are tried
   * again after 100 ms, 200 ms, … up to `attempts` in all, honouring Retry-After up to 5 s.
   */
  async call<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    let last: KubeRestError | undefined;
    for (let attempt = 0; attempt < this.#attempts; attempt++) {
      let delayMs = 100 * 2 ** attempt;
      try {
        const answer = await request(`${this.server}${path}`, {
          method: method as 'GET',
          dispatcher: this.#dispatcher,
          headers: payload === undefined ? this.#headers : { ...this.#headers, 'content-type': contentType },
          body: payload,
          signal: AbortSignal.timeout(this.#timeoutMs),
        });
        const text = await answer.body.text();
        this.counts.requests++;
        if (answer.statusCode >= 200 && answer.statusCode < 300) return (text === '' ? undefined : JSON.parse(text)) as T;
        last = new KubeRestError(answer.statusCode, method, path, statusMessage(text));
        if (answer.statusCode !== 429 && answer.statusCode < 500) throw last;
        const retryAfter = Number(answer.headers['retry-after']);
        if (Number.isFinite(retryAfter) && retryAfter > 0) delayMs = Math.min(5000, retryAfter * 1000);
      } catch (err) {
        if (err === last) throw err;
        last = new KubeRestError(0, method, path, (err as Error).message, { cause: err });
      }
      this.counts.retries++;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
    throw last as KubeRestError;
  }

  close(): Promise<void> {
    return this.#dispatcher.close();
  }
}

/** The `message` of a Kubernetes Status body, else the body's start. */
function statusMessage(text: string): string {
  try {
    const status = JSON.parse(text) as { message?: unknown };
    if (typeof status.message === 'string') return status.message;
  } catch {
    // not JSON: quote it as it is
  }
  return text.slice(0, 400);
}

/**
 * `work` for every item, at most `concurrency` at once, results in item order. The first failure stops new
 * work from starting and is thrown once the work in flight has settled.
 */
export async function mapBounded<T, R>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failure: { err: unknown } | undefined;
  const lane = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const index = next++;
      try {
        results[index] = await work(items[index], index);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, lane));
  if (failure !== undefined) throw failure.err;
  return results;
}
