// The controller's own TLS certificate for its gRPC port, issued from the mesh CA it holds and handed to grpc-js
// as a certificate provider, so the port keeps listening while the certificate changes: re-issued at half its
// lifetime, and at once when another authority starts to sign (a root rotation's switch), so agents that have
// dropped the old root still verify the controller after the rotation finishes.
import { X509Certificate } from 'node:crypto';
import type { experimental } from '@grpc/grpc-js';
import type { SpiffeId } from '../identity';
import type { Logger } from '../telemetry';
import { CaServiceError } from './ca-errors';
import type { CaSnapshot, CaSource } from './ca-store';

type IdentityListener = experimental.IdentityCertificateUpdateListener;
type IdentityUpdate = experimental.IdentityCertificateUpdate;

export interface ServingCertificateOptions {
  ca: CaSource;
  identity: SpiffeId;
  dnsNames: string[];
  ttlSeconds: number;
  log: Logger;
}

/** What a failed re-issue waits before it tries again. */
const RETRY_MS = 30_000;

export class ServingCertificate implements experimental.CertificateProvider {
  readonly #options: ServingCertificateOptions;
  readonly #listeners = new Set<IdentityListener>();
  #latest: IdentityUpdate | null = null;
  #issuer: string | undefined;
  #notAfter: Date | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopWatch: (() => void) | undefined;
  #closed = false;
  #issued = 0;

  private constructor(options: ServingCertificateOptions) {
    this.#options = options;
  }

  /** Issues the first certificate (from the CA's current snapshot) and follows the CA from then on. */
  static async start(options: ServingCertificateOptions): Promise<ServingCertificate> {
    const serving = new ServingCertificate(options);
    const snapshot = options.ca.current();
    if (snapshot === undefined)
      throw new CaServiceError('FERRY_ERR_CA_UNAVAILABLE', 'serving certificate: the CA holds no usable authority');
    await serving.#issue(snapshot, 'first');
    serving.#stopWatch = options.ca.onChange((next) => {
      if (next.metadata.issuer !== serving.#issuer) void serving.#renew(next, `issuer ${next.metadata.issuer} signs now`);
    });
    return serving;
  }

  /** Certificates issued so far, and the current one's expiry. */
  stats(): { issued: number; notAfter: string | undefined; issuer: string | undefined } {
    return { issued: this.#issued, notAfter: this.#notAfter?.toISOString(), issuer: this.#issuer };
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#listeners.add(listener);
    // After the caller has finished registering: grpc-js adds its own watcher only once this returns, and
    // a certificate delivered before that would never reach the port.
    queueMicrotask(() => {
      if (this.#listeners.has(listener)) listener(this.#latest);
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#listeners.delete(listener);
  }

  // No client certificates: agents authenticate with their tokens.
  addCaCertificateListener(): void {}

  removeCaCertificateListener(): void {}

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#stopWatch?.();
  }

  async #renew(snapshot: CaSnapshot, why: string): Promise<void> {
    try {
      await this.#issue(snapshot, why);
    } catch (err) {
      // The current certificate stays in use until it expires; the next try comes soon.
      this.#options.log.error({ err, why }, 'serving certificate not re-issued; trying again');
      this.#schedule(RETRY_MS);
    }
  }

  async #issue(snapshot: CaSnapshot, why: string): Promise<void> {
    if (this.#closed) return;
    const { identity, dnsNames, ttlSeconds, log } = this.#options;
    const serving = await snapshot.ca.issueServing({ identity, dnsNames, ttlSeconds });
    if (this.#closed) return;
    this.#latest = { certificate: Buffer.from(serving.chainPem.join('')), privateKey: Buffer.from(serving.keyPem) };
    this.#issuer = snapshot.metadata.issuer;
    // The CA caps a leaf at its issuer's own expiry: half of what the certificate really has left.
    this.#notAfter = new Date(new X509Certificate(serving.certPem).validTo);
    this.#issued += 1;
    for (const listener of this.#listeners) listener(this.#latest);
    log.info({ why, issuer: this.#issuer, notAfter: this.#notAfter.toISOString() }, 'serving certificate issued');
    this.#schedule(Math.max(1000, (this.#notAfter.getTime() - Date.now()) / 2));
  }

  #schedule(ms: number): void {
    clearTimeout(this.#timer);
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      const snapshot = this.#options.ca.current();
      if (snapshot !== undefined) void this.#renew(snapshot, 'half of its lifetime passed');
      else this.#schedule(RETRY_MS);
    }, ms);
    this.#timer.unref();
  }
}
