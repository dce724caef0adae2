// The certificates of the workload identities this agent serves (after ztunnel's SecretManager): a fresh
// key in memory per issue, a CSR to the CA, renewal at half-life, capped backoff on failure, the trust bundle.
import * as crypto from 'node:crypto';
import * as tls from 'node:tls';
import { inspect } from 'node:util';
import type { Logger } from '../telemetry';
import { DEFAULT_CERT_TTL_SECONDS, type CertificateAuthorityClient } from './certificate-authority';
import { IdentityError } from './errors';
import { checkTrustDomain, principalOf, spiffeUri, type SpiffeId } from './spiffe';
import { EC_ALGORITHM, exportPkcs8Pem, generateKeyPair, splitPem, subtle, uriSans, x509 } from './x509';

/** Renewal falls at half the lifetime, moved by up to this fraction of the half so agents do not renew in step. */
export const RENEWAL_JITTER = 0.1;
/** ...and never later than this fraction of the lifetime, leaving room for retries. */
export const RENEWAL_LATEST = 0.8;
export const BACKOFF_START_MS = 1_000;
export const BACKOFF_CAP_MS = 30_000;
/** Retry delays are spread ±20% so agents that failed together do not retry together. */
const BACKOFF_JITTER = 0.2;
/** setTimeout's largest delay (2^31 - 1 ms, ~24.8 days); longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Clock and timers, injectable so tests can drive renewal and backoff without waiting. */
export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

const normalisePem = (pem: string): string => (pem.endsWith('\n') ? pem : `${pem}\n`);

/**
 * One issued X.509-SVID and its private key. The key lives only in `#key` (PKCS#8 PEM in memory,
 * never written anywhere): it is not enumerable, JSON and util.inspect leave it out, and the only
 * use of it is `secureContext()`, which hands it straight to OpenSSL.
 */
export class WorkloadCertificate {
  readonly identity: SpiffeId;
  readonly principal: string;
  /** Leaf first, then intermediates (never the root). */
  readonly chainPem: readonly string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Hex serial number of the leaf. */
  readonly serial: string;
  /** The leaf's issuer distinguished name. */
  readonly issuer: string;
  /** SHA-256 fingerprint of the leaf, colon-separated hex. */
  readonly fingerprint: string;
  readonly #key: string;

  constructor(identity: SpiffeId, chainPem: readonly string[], keyPem: string) {
    const leaf = new crypto.X509Certificate(chainPem[0]);
    this.identity = { ...identity };
    this.principal = principalOf(identity);
    this.chainPem = Object.freeze(chainPem.map(normalisePem));
    this.notBefore = new Date(leaf.validFrom);
    this.notAfter = new Date(leaf.validTo);
    this.serial = leaf.serialNumber;
    this.issuer = leaf.issuer.split('\n').join(', ');
    this.fingerprint = leaf.fingerprint256;
    this.#key = keyPem;
  }

  /** A TLS context presenting this certificate; `options` are everything but the key and chain. */
  secureContext(options: Omit<tls.SecureContextOptions, 'key' | 'cert' | 'pfx' | 'passphrase'>): tls.SecureContext {
    return tls.createSecureContext({ ...options, cert: this.chainPem.join(''), key: this.#key });
  }

  toJSON(): Record<string, unknown> {
    return {
      identity: this.identity,
      principal: this.principal,
      serial: this.serial,
      issuer: this.issuer,
      notBefore: this.notBefore.toISOString(),
      notAfter: this.notAfter.toISOString(),
      fingerprint: this.fingerprint,
      chainPem: this.chainPem,
    };
  }

  [inspect.custom](_depth: number, options: object): string {
    const shown = { ...this.toJSON(), chainPem: `[${this.chainPem.length} certificate(s)]`, key: '[redacted]' };
    return `WorkloadCertificate ${inspect(shown, options)}`;
  }
}

export type CertificateEvent =
  | { type: 'issued' | 'renewed'; certificate: WorkloadCertificate }
  | { type: 'expired' | 'forgotten'; identity: SpiffeId; principal: string }
  | { type: 'bundle'; roots: readonly string[] };

export interface WorkloadCertificatesOptions {
  ca: CertificateAuthorityClient;
  trustDomain: string;
  /** Requested lifetime; the CA may shorten it (never past its own notAfter). */
  ttlSeconds?: number;
  log: Logger;
  timers?: Timers;
  /** Uniform in [0, 1); injectable for tests. */
  random?: () => number;
}

/** A timer that may be re-armed; cancel through the holder so the current handle is the one cleared. */
interface Scheduled {
  handle: unknown;
}

interface Entry {
  id: SpiffeId;
  principal: string;
  cert?: WorkloadCertificate;
  inflight?: Promise<WorkloadCertificate>;
  renewTimer?: Scheduled;
  expiryTimer?: Scheduled;
  /** Consecutive failed issues, for the backoff. */
  failures: number;
}

/**
 * Issues, renews and holds the certificates of every identity `fetch` was asked for, until `forget`.
 * Concurrency: at most one issue per identity is in flight (concurrent fetches share it); timers are
 * cleared by `forget` and `close`, after which late CA answers are dropped.
 */
export class WorkloadCertificates {
  readonly trustDomain: string;
  readonly ttlSeconds: number;
  readonly #ca: CertificateAuthorityClient;
  readonly #log: Logger;
  readonly #timers: Timers;
  readonly #random: () => number;
  readonly #entries = new Map<string, Entry>();
  readonly #listeners = new Set<(event: CertificateEvent) => void>();
  #bundle: readonly string[] = [];
  #closed = false;

  constructor(options: WorkloadCertificatesOptions) {
    checkTrustDomain(options.trustDomain);
    this.trustDomain = options.trustDomain;
    this.ttlSeconds = options.ttlSeconds ?? DEFAULT_CERT_TTL_SECONDS;
    if (!Number.isSafeInteger(this.ttlSeconds) || this.ttlSeconds <= 0) {
      throw new IdentityError(
        'FERRY_ERR_IDENTITY_CERTIFICATE',
        `WorkloadCertificates ttlSeconds must be a positive integer, got ${this.ttlSeconds}`,
      );
    }
    this.#ca = options.ca;
    this.#log = options.log;
    this.#timers = options.timers ?? realTimers;
    this.#random = options.random ?? Math.random;
  }

  /**
   * The current certificate of `id`, issuing one first if there is none. A failed first issue rejects
   * and keeps retrying in the background (with backoff) until `forget(id)`; `onChange` reports success.
   */
  async fetch(id: SpiffeId): Promise<WorkloadCertificate> {
    if (this.#closed) throw new IdentityError('FERRY_ERR_IDENTITY_CERTIFICATE', `fetch ${principalOf(id)}: WorkloadCertificates is closed`);
    const principal = principalOf(id);
    if (id.trustDomain !== this.trustDomain) {
      throw new IdentityError(
        'FERRY_ERR_IDENTITY_CERTIFICATE',
        `fetch ${principal}: trust domain "${id.trustDomain}" is not this agent's "${this.trustDomain}"`,
      );
    }
    let entry = this.#entries.get(principal);
    if (entry === undefined) {
      entry = { id: { ...id }, principal, failures: 0 };
      this.#entries.set(principal, entry);
    }
    if (entry.cert !== undefined && entry.cert.notAfter.getTime() > this.#timers.now()) return entry.cert;
    return entry.inflight ?? this.#issue(entry, 'initial');
  }

  get(id: SpiffeId): WorkloadCertificate | undefined {
    return this.#entries.get(principalOf(id))?.cert;
  }

  certificates(): WorkloadCertificate[] {
    return [...this.#entries.values()].flatMap((e) => (e.cert === undefined ? [] : [e.cert]));
  }

  /** Stop renewing `id` and drop its certificate (the pod left this node). */
  forget(id: SpiffeId): void {
    const principal = principalOf(id);
    const entry = this.#entries.get(principal);
    if (entry === undefined) return;
    this.#clearTimers(entry);
    this.#entries.delete(principal);
    this.#emit({ type: 'forgotten', identity: entry.id, principal });
  }

  /**
   * Re-issue every certificate now (e.g. the CA's issuer switched during a root rotation). An issue
   * already in flight may have been signed by the old issuer, so it is awaited and followed by a new one.
   */
  async renewAll(reason: string): Promise<void> {
    this.#log.info({ count: this.#entries.size, reason }, 'renewing all workload certificates');
    await Promise.all(
      [...this.#entries.values()].map(async (entry) => {
        await entry.inflight?.catch(() => undefined);
        if (this.#entries.get(entry.principal) !== entry || this.#closed) return;
        await this.#issue(entry, reason).catch(() => undefined);
      }),
    );
  }

  trustBundle(): readonly string[] {
    return this.#bundle;
  }

  /** Replace the trusted roots (a watcher saw a new CA generation); fires 'bundle' when they differ. */
  setTrustBundle(roots: readonly string[]): void {
    if (roots.length === 0) throw new IdentityError('FERRY_ERR_IDENTITY_CERTIFICATE', 'trust bundle: no roots given');
    const normalised = roots.map((pem, i) => {
      try {
        new crypto.X509Certificate(pem);
      } catch (err) {
        throw new IdentityError('FERRY_ERR_IDENTITY_CERTIFICATE', `trust bundle root ${i}: not a PEM certificate`, { cause: err });
      }
      return normalisePem(pem);
    });
    if (normalised.join('') === this.#bundle.join('')) return;
    this.#bundle = Object.freeze(normalised);
    this.#log.info({ roots: normalised.length }, 'trust bundle updated');
    this.#emit({ type: 'bundle', roots: this.#bundle });
  }

  async refreshTrustBundle(): Promise<void> {
    this.setTrustBundle(await this.#ca.trustBundle());
  }

  onChange(listener: (event: CertificateEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Clear every timer; late CA answers are dropped. Certificates stay readable until the object is dropped. */
  close(): void {
    this.#closed = true;
    for (const entry of this.#entries.values()) this.#clearTimers(entry);
  }

  #issue(entry: Entry, reason: string): Promise<WorkloadCertificate> {
    this.#cancel(entry.renewTimer);
    entry.renewTimer = undefined;
    const attempt = this.#requestCertificate(entry.id);
    entry.inflight = attempt;
    return attempt.then(
      (cert) => {
        if (entry.inflight === attempt) entry.inflight = undefined;
        if (this.#closed || this.#entries.get(entry.principal) !== entry) {
          throw new IdentityError(
            'FERRY_ERR_IDENTITY_CERTIFICATE',
            `certificate for ${entry.principal}: forgotten while it was being issued`,
          );
        }
        this.#install(entry, cert, reason);
        return cert;
      },
      (err: unknown) => {
        if (entry.inflight === attempt) entry.inflight = undefined;
        const failure = new IdentityError(
          'FERRY_ERR_IDENTITY_CERTIFICATE',
          `certificate for ${entry.principal} (${reason}): ${(err as Error).message}`,
          { cause: err },
        );
        if (!this.#closed && this.#entries.get(entry.principal) === entry) this.#scheduleRetry(entry, failure);
        throw failure;
      },
    );
  }

  /** Key pair, CSR, CA call, and the checks of what came back. The key never leaves this function but in the result. */
  async #requestCertificate(id: SpiffeId): Promise<WorkloadCertificate> {
    if (this.#bundle.length === 0) await this.refreshTrustBundle();
    const uri = spiffeUri(id);
    const keys = await generateKeyPair(true);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      keys,
      signingAlgorithm: EC_ALGORITHM,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }])],
    });
    const spki = Buffer.from(await subtle.exportKey('spki', keys.publicKey));
    const { chainPem } = await this.#ca.sign({ csrPem: csr.toString('pem'), identity: id, ttlSeconds: this.ttlSeconds });
    const chain = await this.#checkChain(uri, chainPem, spki);
    return new WorkloadCertificate(id, chain, await exportPkcs8Pem(keys.privateKey));
  }

  /**
   * The CA's answer must certify our key, for exactly our SPIFFE ID, now, and chain to a trusted root.
   * Returns the chain one PEM per certificate (a CA may send several in one string).
   */
  async #checkChain(uri: string, chainPem: unknown, spki: Buffer): Promise<string[]> {
    const bad = (problem: string): never => {
      throw new IdentityError('FERRY_ERR_IDENTITY_CERTIFICATE', `CA answer for ${uri}: ${problem}`);
    };
    if (!Array.isArray(chainPem) || chainPem.length === 0 || !chainPem.every((p) => typeof p === 'string')) {
      bad('chainPem is not a non-empty array of PEM strings');
    }
    const pems = (chainPem as string[]).flatMap(splitPem);
    const chain = pems.map((p) => new crypto.X509Certificate(p));
    const leaf = chain[0];
    if (!leaf.publicKey.export({ type: 'spki', format: 'der' }).equals(spki)) bad('the leaf certifies a different public key');
    const uris = uriSans(new x509.X509Certificate(leaf.raw).getExtension(x509.SubjectAlternativeNameExtension));
    if (uris.length !== 1 || uris[0] !== uri) bad(`the leaf's URI SANs are [${uris.join(', ')}], expected [${uri}]`);
    const now = this.#timers.now();
    if (Date.parse(leaf.validTo) <= now) bad(`the leaf expired at ${leaf.validTo}`);
    for (let i = 0; i + 1 < chain.length; i += 1) {
      if (!chain[i].checkIssued(chain[i + 1]) || !chain[i].verify(chain[i + 1].publicKey)) {
        bad(`certificate ${i} of the chain is not signed by certificate ${i + 1}`);
      }
    }
    const top = chain[chain.length - 1];
    const anchored = (): boolean =>
      this.#bundle.some((pem) => {
        const root = new crypto.X509Certificate(pem);
        return top.checkIssued(root) && top.verify(root.publicKey);
      });
    // A chain from a root we do not know yet: the CA may have rotated; fetch its bundle once and look again.
    if (!anchored()) await this.refreshTrustBundle();
    if (!anchored()) bad(`the chain does not lead to any of the ${this.#bundle.length} trusted root(s)`);
    return pems;
  }

  #install(entry: Entry, cert: WorkloadCertificate, reason: string): void {
    const renewed = entry.cert !== undefined;
    this.#clearTimers(entry);
    entry.cert = cert;
    entry.failures = 0;
    // Lifetime counts from now, not from notBefore: notBefore is backdated for clock skew.
    const now = this.#timers.now();
    const lifetime = cert.notAfter.getTime() - now;
    const half = lifetime / 2;
    const renewIn = Math.min(half + (this.#random() * 2 - 1) * RENEWAL_JITTER * half, RENEWAL_LATEST * lifetime);
    entry.renewTimer = this.#at(now + renewIn, () => {
      void this.#issue(entry, 'renewal').catch(() => undefined);
    });
    entry.expiryTimer = this.#at(cert.notAfter.getTime(), () => this.#expire(entry, cert));
    this.#log.info(
      {
        principal: entry.principal,
        serial: cert.serial,
        notAfter: cert.notAfter.toISOString(),
        renewAt: new Date(now + renewIn).toISOString(),
        reason,
      },
      renewed ? 'certificate renewed' : 'certificate issued',
    );
    this.#emit({ type: renewed ? 'renewed' : 'issued', certificate: cert });
  }

  #scheduleRetry(entry: Entry, failure: Error): void {
    entry.failures += 1;
    const now = this.#timers.now();
    const base = Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * 2 ** Math.min(entry.failures - 1, 30));
    let delay = Math.min(BACKOFF_CAP_MS, base * (1 + (this.#random() * 2 - 1) * BACKOFF_JITTER));
    // While the old certificate is still valid, retry within the half of its life that is left, so a
    // long backoff cannot outlast it (but not sooner than the first backoff step).
    const remaining = entry.cert === undefined ? 0 : entry.cert.notAfter.getTime() - now;
    if (remaining > 0) delay = Math.min(delay, Math.max(remaining / 2, BACKOFF_START_MS));
    this.#cancel(entry.renewTimer);
    entry.renewTimer = this.#at(now + delay, () => {
      void this.#issue(entry, 'retry').catch(() => undefined);
    });
    this.#log.warn(
      {
        principal: entry.principal,
        failures: entry.failures,
        retryInMs: Math.round(delay),
        keepingCertificateUntil: entry.cert?.notAfter.toISOString(),
        err: failure,
      },
      'certificate issue failed',
    );
  }

  #expire(entry: Entry, cert: WorkloadCertificate): void {
    if (entry.cert !== cert) return;
    entry.cert = undefined;
    this.#log.error({ principal: entry.principal, serial: cert.serial }, 'certificate expired without renewal');
    this.#emit({ type: 'expired', identity: entry.id, principal: entry.principal });
  }

  /** Run `fn` at time `when`; a wait past setTimeout's limit is made of several, never fired early. */
  #at(when: number, fn: () => void): Scheduled {
    const scheduled: Scheduled = { handle: undefined };
    const arm = (): void => {
      const delay = when - this.#timers.now();
      scheduled.handle =
        delay > MAX_TIMER_MS ? this.#timers.setTimeout(arm, MAX_TIMER_MS) : this.#timers.setTimeout(fn, Math.max(0, delay));
    };
    arm();
    return scheduled;
  }

  #cancel(scheduled: Scheduled | undefined): void {
    if (scheduled !== undefined) this.#timers.clearTimeout(scheduled.handle);
  }

  #clearTimers(entry: Entry): void {
    this.#cancel(entry.renewTimer);
    this.#cancel(entry.expiryTimer);
    entry.renewTimer = undefined;
    entry.expiryTimer = undefined;
  }

  #emit(event: CertificateEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (err) {
        this.#log.error({ err, event: event.type }, 'certificate change listener threw');
      }
    }
  }
}
