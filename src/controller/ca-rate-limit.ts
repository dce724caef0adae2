// Token buckets per key (an agent's node), bounded in number: what keeps one agent from making the CA sign
// without limit, whatever its token allows.

export interface TokenBucketOptions {
  /** Tokens a full bucket holds: the burst an agent may spend at once (renewing every certificate after a switch). */
  burst: number;
  /** Tokens added per second. */
  perSecond: number;
  /** Buckets kept; the least recently used goes first (a full bucket forgets nothing by going). Default 10 000. */
  maxKeys?: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** One bucket per key, refilled continuously; `take` spends one token or says how long until one is there. */
export class TokenBuckets {
  readonly burst: number;
  readonly perSecond: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: TokenBucketOptions) {
    if (!(options.burst >= 1) || !(options.perSecond > 0)) {
      throw new RangeError(`token bucket: burst must be at least 1 and perSecond above 0, got ${options.burst} and ${options.perSecond}`);
    }
    this.burst = options.burst;
    this.perSecond = options.perSecond;
    this.#maxKeys = options.maxKeys ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** 0 when a token was taken; otherwise the milliseconds until the next one (nothing is taken). */
  take(key: string): number {
    const now = this.#now();
    const bucket = this.#buckets.get(key) ?? { tokens: this.burst, at: now };
    this.#buckets.delete(key);
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond);
    bucket.at = now;
    this.#buckets.set(key, bucket);
    // A bucket that went is full when it comes back, so dropping the least recently used one only
    // forgives a key that has been quiet longest.
    while (this.#buckets.size > this.#maxKeys) this.#buckets.delete(this.#buckets.keys().next().value as string);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - bucket.tokens) / this.perSecond) * 1000);
  }

  get size(): number {
    return this.#buckets.size;
  }
}
