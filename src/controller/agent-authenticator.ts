// Who is calling the controller: an agent's bound service-account token, checked by a Kubernetes TokenReview
// for Ferry's audience, must belong to the agent's service account and name the node its pod runs on.
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { AuthenticationV1Api, type KubeConfig, type V1TokenReviewStatus } from '@kubernetes/client-node';
import { FerryError } from '../errors';

/** The audience agents request their projected token for, and the only one the controller accepts. */
export const AGENT_TOKEN_AUDIENCE = 'ferry-controller';
export const DEFAULT_AGENT_SERVICE_ACCOUNT: Readonly<{ namespace: string; name: string }> = {
  namespace: 'ferry-system',
  name: 'ferry-agent',
};

/** Extra fields the API server adds to the user of a pod-bound service-account token (KEP-4193). */
export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';
export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';

export const AGENT_AUTH_ERROR_CODES = {
  FERRY_ERR_AGENT_AUTH_REFUSED:
    "an agent's call was refused: no bearer token, a token the API server does not authenticate for Ferry's audience, " +
    "not the agent's service account, or a token not bound to a pod on a node (the message names which)",
  FERRY_ERR_AGENT_AUTH_REVIEW:
    'the TokenReview could not be made (the API server is unreachable or refused the controller), or too many were waiting',
} as const;

export type AgentAuthErrorCode = keyof typeof AGENT_AUTH_ERROR_CODES;

/** A refused or failed authentication; `grpcCode` is the status to answer the call with. */
export class AgentAuthError extends FerryError<AgentAuthErrorCode> {
  constructor(
    code: AgentAuthErrorCode,
    readonly grpcCode: grpc.status,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/**
 * A gRPC status for an error thrown while serving a call: errors that carry `grpcCode` (agent
 * authentication, the CA service) keep their status and message; anything else is INTERNAL with a
 * message that gives nothing away (log the error itself).
 */
export function toGrpcStatus(err: unknown): Partial<grpc.StatusObject> {
  const code = (err as { grpcCode?: unknown } | null)?.grpcCode;
  if (typeof code === 'number' && Number.isInteger(code) && err instanceof Error) {
    return { code, details: err.message, metadata: new grpc.Metadata() };
  }
  return { code: grpc.status.INTERNAL, details: 'internal error', metadata: new grpc.Metadata() };
}

/** The authenticated caller: an agent, on `node`, running as `namespace/serviceAccount` in pod `podName`. */
export interface AgentIdentity {
  node: string;
  /** The Kubernetes user name, `system:serviceaccount:<namespace>:<name>`. */
  subject: string;
  podName: string;
  podUid: string;
  namespace: string;
  serviceAccount: string;
}

/** What every controller service asks of authentication; rejects with AgentAuthError. */
export interface AgentAuthenticator {
  authenticate(metadata: grpc.Metadata, peer: string): Promise<AgentIdentity>;
}

/** One TokenReview: the API server's verdict on `token` for `audiences`. */
export type TokenReviewer = (token: string, audiences: string[]) => Promise<V1TokenReviewStatus>;

/** TokenReviews through the API server of `kube` (the controller needs `create tokenreviews`, e.g. system:auth-delegator). */
export function kubeTokenReviewer(kube: KubeConfig): TokenReviewer {
  const api = kube.makeApiClient(AuthenticationV1Api);
  return async (token, audiences) => {
    const review = await api.createTokenReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } },
    });
    return review.status ?? {};
  };
}

export interface TokenReviewAuthenticatorOptions {
  /** How reviews are made: `kubeTokenReviewer(kube)` in the controller. */
  review: TokenReviewer;
  audience?: string;
  /** The agent's service account; default ferry-system/ferry-agent. */
  agentServiceAccount?: { namespace: string; name: string };
  /** How long a positive review is reused (never past the token's exp). Default 30 s. */
  cacheTtlMs?: number;
  /** Positive reviews kept, least recently used dropped first. Default 4096. */
  cacheSize?: number;
  /** Reviews in flight at once; the API server is shared. Default 32. */
  maxConcurrentReviews?: number;
  /** Reviews waiting for a slot; beyond, calls get UNAVAILABLE rather than queueing without bound. Default 1024. */
  maxQueuedReviews?: number;
  /** A review that takes longer fails (UNAVAILABLE). Default 10 s. */
  reviewTimeoutMs?: number;
  now?: () => number;
}

/** Tokens longer than this are refused before any review: a JWT of a bound token is ~1 KiB. */
export const MAX_TOKEN_BYTES = 8192;
const TOKEN = /^[A-Za-z0-9._~+/-]+=*$/;

interface CacheEntry {
  identity: AgentIdentity;
  expiresAt: number;
}

export interface AuthenticatorStats {
  /** Authentications answered from the cache. */
  cacheHits: number;
  /** TokenReviews sent to the API server. */
  reviews: number;
  /** Authentications that joined a review already in flight for the same token. */
  joined: number;
  refused: number;
  cached: number;
}

/**
 * Agent authentication by TokenReview, cached: a positive review is reused for `cacheTtlMs` or until
 * the token expires, whichever is first, keyed by the token's SHA-256 (the token itself is not kept),
 * so a thousand agents reconnecting cost a thousand reviews once, not on every call. Concurrent calls
 * with the same token share one review. Refusals are not cached: a refused token costs a review each
 * time, bounded by the concurrency and queue caps.
 */
export class TokenReviewAuthenticator implements AgentAuthenticator {
  readonly audience: string;
  readonly agentUser: string;
  readonly #review: TokenReviewer;
  readonly #ttlMs: number;
  readonly #size: number;
  readonly #maxConcurrent: number;
  readonly #maxQueued: number;
  readonly #timeoutMs: number;
  readonly #now: () => number;
  /** Map order is recency order: a hit moves its entry to the end, eviction takes the first. */
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inflight = new Map<string, Promise<AgentIdentity>>();
  readonly #waiting: Array<() => void> = [];
  #running = 0;
  readonly #stats = { cacheHits: 0, reviews: 0, joined: 0, refused: 0 };

  constructor(options: TokenReviewAuthenticatorOptions) {
    const account = options.agentServiceAccount ?? DEFAULT_AGENT_SERVICE_ACCOUNT;
    this.audience = options.audience ?? AGENT_TOKEN_AUDIENCE;
    this.agentUser = `system:serviceaccount:${account.namespace}:${account.name}`;
    this.#review = options.review;
    this.#ttlMs = options.cacheTtlMs ?? 30_000;
    this.#size = options.cacheSize ?? 4096;
    this.#maxConcurrent = options.maxConcurrentReviews ?? 32;
    this.#maxQueued = options.maxQueuedReviews ?? 1024;
    this.#timeoutMs = options.reviewTimeoutMs ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  async authenticate(metadata: grpc.Metadata, peer: string): Promise<AgentIdentity> {
    try {
      const token = bearerToken(metadata, peer);
      const key = createHash('sha256').update(token).digest('hex');
      const hit = this.#cache.get(key);
      if (hit !== undefined) {
        this.#cache.delete(key);
        if (hit.expiresAt > this.#now()) {
          this.#cache.set(key, hit);
          this.#stats.cacheHits += 1;
          return { ...hit.identity };
        }
      }
      const pending = this.#inflight.get(key);
      if (pending !== undefined) {
        this.#stats.joined += 1;
        return { ...(await pending) };
      }
      const review = this.#reviewed(token, key, peer).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, review);
      return { ...(await review) };
    } catch (err) {
      if (err instanceof AgentAuthError && err.code === 'FERRY_ERR_AGENT_AUTH_REFUSED') this.#stats.refused += 1;
      throw err;
    }
  }

  stats(): AuthenticatorStats {
    return { ...this.#stats, cached: this.#cache.size };
  }

  async #reviewed(token: string, key: string, peer: string): Promise<AgentIdentity> {
    await this.#slot(peer);
    let status: V1TokenReviewStatus;
    try {
      this.#stats.reviews += 1;
      status = await withTimeout(this.#review(token, [this.audience]), this.#timeoutMs, peer);
    } catch (err) {
      if (err instanceof AgentAuthError) throw err;
      throw new AgentAuthError(
        'FERRY_ERR_AGENT_AUTH_REVIEW',
        grpc.status.UNAVAILABLE,
        `agent at ${peer}: the TokenReview failed: ${reviewFailure(err)}`,
        { cause: err },
      );
    } finally {
      this.#release();
    }
    const identity = this.#check(status, token, peer);
    const exp = tokenExpiry(token);
    const expiresAt = Math.min(this.#now() + this.#ttlMs, exp ?? Number.POSITIVE_INFINITY);
    if (expiresAt > this.#now()) {
      this.#cache.set(key, { identity, expiresAt });
      while (this.#cache.size > this.#size) this.#cache.delete(this.#cache.keys().next().value as string);
    }
    return identity;
  }

  /** The review's verdict as the agent's identity, or the refusal naming its cause. */
  #check(status: V1TokenReviewStatus, token: string, peer: string): AgentIdentity {
    const refuse = (code: grpc.status, problem: string): never => {
      throw new AgentAuthError('FERRY_ERR_AGENT_AUTH_REFUSED', code, `agent at ${peer}: ${problem}`);
    };
    const audiences = status.audiences ?? [];
    if (status.authenticated !== true || !audiences.includes(this.audience)) {
      // The API server answers a token for another audience with authenticated false and an error;
      // the token's own (unverified) aud claim only serves to say so plainly.
      const claimed = tokenAudiences(token);
      if (claimed !== undefined && !claimed.includes(this.audience)) {
        refuse(
          grpc.status.UNAUTHENTICATED,
          `wrong audience: the token is for [${claimed.join(', ')}], not "${this.audience}" (request the projected token with audience ${this.audience})`,
        );
      }
      if (status.authenticated === true) {
        refuse(grpc.status.UNAUTHENTICATED, `wrong audience: the TokenReview did not confirm audience "${this.audience}"`);
      }
      refuse(grpc.status.UNAUTHENTICATED, `the TokenReview did not authenticate the token: ${status.error || 'no reason given'}`);
    }
    const user = status.user ?? {};
    const username = user.username ?? '';
    if (username !== this.agentUser) {
      refuse(
        grpc.status.PERMISSION_DENIED,
        `not the agent's service account: the token is for "${username}", expected "${this.agentUser}"`,
      );
    }
    const one = (name: string): string | undefined => {
      const values = user.extra?.[name];
      return Array.isArray(values) && values.length === 1 && typeof values[0] === 'string' && values[0] !== '' ? values[0] : undefined;
    };
    const node = one(NODE_NAME_EXTRA);
    const podName = one(POD_NAME_EXTRA);
    const podUid = one(POD_UID_EXTRA);
    if (podName === undefined || podUid === undefined) {
      refuse(
        grpc.status.PERMISSION_DENIED,
        `no node binding: the token of ${username} is not bound to a pod (request it with a boundObjectRef to the agent's pod)`,
      );
    }
    if (node === undefined) {
      refuse(
        grpc.status.PERMISSION_DENIED,
        `no node binding: the token of ${username} is bound to pod ${podName}, which was not on a node when the token was issued`,
      );
    }
    const [, , namespace, serviceAccount] = username.split(':');
    return { node: node as string, subject: username, podName: podName as string, podUid: podUid as string, namespace, serviceAccount };
  }

  #slot(peer: string): Promise<void> {
    if (this.#running < this.#maxConcurrent) {
      this.#running += 1;
      return Promise.resolve();
    }
    if (this.#waiting.length >= this.#maxQueued) {
      return Promise.reject(
        new AgentAuthError(
          'FERRY_ERR_AGENT_AUTH_REVIEW',
          grpc.status.UNAVAILABLE,
          `agent at ${peer}: ${this.#waiting.length} TokenReviews are already waiting; try again later`,
        ),
      );
    }
    return new Promise((resolve) => {
      // The slot is handed over by #release, so #running already counts this review.
      this.#waiting.push(resolve);
    });
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next !== undefined) next();
    else this.#running -= 1;
  }
}

/** The token of `authorization: Bearer <token>` (RFC 6750 §2.1), exactly one such header. */
function bearerToken(metadata: grpc.Metadata, peer: string): string {
  const refuse = (problem: string): never => {
    throw new AgentAuthError('FERRY_ERR_AGENT_AUTH_REFUSED', grpc.status.UNAUTHENTICATED, `agent at ${peer}: ${problem}`);
  };
  const values = metadata.get('authorization');
  if (values.length === 0) refuse('no token: the call has no "authorization: Bearer <token>" metadata');
  if (values.length > 1) refuse(`${values.length} authorization values; expected exactly one`);
  const value = values[0];
  if (typeof value !== 'string') refuse('the authorization metadata is binary; expected "Bearer <token>"');
  const text = value as string;
  if (text.length > MAX_TOKEN_BYTES + 7) refuse(`the authorization value is ${text.length} bytes; at most ${MAX_TOKEN_BYTES} are accepted`);
  const match = /^bearer +(\S+)$/i.exec(text);
  if (match === null) refuse('the authorization value is not "Bearer <token>"');
  const token = (match as RegExpExecArray)[1];
  if (!TOKEN.test(token)) refuse('the bearer token has characters a token cannot have');
  return token;
}

/** The payload of a JWS compact serialization (RFC 7515 §3.1), unverified, or undefined when it is not one. */
function jwtClaims(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    return typeof claims === 'object' && claims !== null && !Array.isArray(claims) ? (claims as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** `aud` (RFC 7519 §4.1.3: a string or an array of strings). */
function tokenAudiences(token: string): string[] | undefined {
  const aud = jwtClaims(token)?.aud;
  if (typeof aud === 'string') return [aud];
  if (Array.isArray(aud) && aud.every((a) => typeof a === 'string')) return aud as string[];
  return undefined;
}

/** `exp` in milliseconds; read only after the API server has verified the token. */
function tokenExpiry(token: string): number | undefined {
  const exp = jwtClaims(token)?.exp;
  return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
}

function reviewFailure(err: unknown): string {
  const e = err as { code?: unknown; body?: unknown; message?: unknown };
  if (typeof e.code === 'number') {
    // An ApiException: its body is the API server's Status; its reason says enough (and never holds the token).
    let body = e.body;
    if (typeof body === 'string') {
      try {
        body = JSON.parse(body);
      } catch {
        // not JSON: no reason to quote
      }
    }
    const reason = (body as { message?: unknown } | null | undefined)?.message;
    return `HTTP ${e.code}${typeof reason === 'string' ? `: ${reason.slice(0, 300)}` : ''}`;
  }
  return String(e.message ?? err)
    .split('\n')[0]
    .slice(0, 300);
}

function withTimeout<T>(promise: Promise<T>, ms: number, peer: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new AgentAuthError(
            'FERRY_ERR_AGENT_AUTH_REVIEW',
            grpc.status.UNAVAILABLE,
            `agent at ${peer}: the TokenReview took over ${ms} ms`,
          ),
        ),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
