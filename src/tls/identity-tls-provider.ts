// TlsProvider over WorkloadCertificates: a client and a server SecureContext per workload identity,
// rebuilt whenever a certificate or the trust bundle changes so that lookups are a Map read.
import * as crypto from 'node:crypto';
import type * as tls from 'node:tls';
import { principalOf, type CertificateEvent, type WorkloadCertificate, type WorkloadCertificates } from '../identity';
import type { Logger } from '../telemetry';
import { PeerIdentityError } from './errors';
import { HBONE_SECURE_CONTEXT_OPTIONS, verifyPeerIdentity } from './hbone-tls';
import type { IdentityContexts, PeerIdentity, TlsProvider } from './types';

export class IdentityTlsProvider implements TlsProvider {
  readonly trustDomain: string;
  readonly #certificates: WorkloadCertificates;
  readonly #log: Logger;
  readonly #contexts = new Map<string, IdentityContexts>();
  readonly #unsubscribe: () => void;

  constructor(certificates: WorkloadCertificates, log: Logger) {
    this.trustDomain = certificates.trustDomain;
    this.#certificates = certificates;
    this.#log = log;
    this.#unsubscribe = certificates.onChange((event) => this.#onChange(event));
    for (const cert of certificates.certificates()) this.#build(cert);
  }

  principalFor(namespace: string, serviceAccount: string): string {
    return principalOf({ trustDomain: this.trustDomain, namespace, serviceAccount });
  }

  /** Current contexts; undefined before the first certificate and once it has expired. */
  contexts(principal: string): IdentityContexts | undefined {
    const found = this.#contexts.get(principal);
    // The expiry timer removes it too; this guards against a timer that runs late.
    return found !== undefined && found.notAfter.getTime() > Date.now() ? found : undefined;
  }

  peerIdentity(certificate: crypto.X509Certificate): PeerIdentity {
    return verifyPeerIdentity(certificate, this.trustDomain);
  }

  /**
   * A `checkServerIdentity` for tls.connect that accepts only the peer `expectedPrincipal`: HBONE
   * clients check the server's exact SPIFFE ID, not a host name (there is no DNS SAN).
   */
  serverIdentityCheck(expectedPrincipal: string): (host: string, cert: tls.PeerCertificate) => Error | undefined {
    return (_host, cert) => {
      try {
        const peer = this.peerIdentity(new crypto.X509Certificate(cert.raw));
        if (peer.principal === expectedPrincipal) return undefined;
        return new PeerIdentityError('unexpected-identity', `server is ${peer.principal}, expected ${expectedPrincipal}`);
      } catch (err) {
        return err as Error;
      }
    };
  }

  /** Stop following certificate changes. */
  close(): void {
    this.#unsubscribe();
    this.#contexts.clear();
  }

  #onChange(event: CertificateEvent): void {
    switch (event.type) {
      case 'issued':
      case 'renewed':
        this.#build(event.certificate);
        break;
      case 'expired':
      case 'forgotten':
        this.#contexts.delete(event.principal);
        break;
      case 'bundle':
        for (const cert of this.#certificates.certificates()) this.#build(cert);
        break;
    }
  }

  #build(cert: WorkloadCertificate): void {
    const options = { ...HBONE_SECURE_CONTEXT_OPTIONS, ca: [...this.#certificates.trustBundle()] };
    try {
      // Two contexts, not one shared: OpenSSL keeps per-context session state for each role.
      this.#contexts.set(cert.principal, {
        client: cert.secureContext(options),
        server: cert.secureContext(options),
        notAfter: cert.notAfter,
      });
    } catch (err) {
      // The previous contexts (if any) stay: they are valid until their own notAfter.
      this.#log.error({ err, principal: cert.principal, serial: cert.serial }, 'cannot build TLS contexts');
    }
  }
}
