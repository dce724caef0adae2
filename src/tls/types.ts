// The identity surface the proxy consumes, restated here so src/tls implements it structurally
// without importing src/proxy (src/proxy/types.ts is the declaration the proxy compiles against).
import type * as crypto from 'node:crypto';
import type * as tls from 'node:tls';

/** A peer's verified workload identity (from the single SPIFFE URI SAN of its certificate). */
export interface PeerIdentity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
  /** `<trust-domain>/ns/<ns>/sa/<sa>` */
  principal: string;
}

export interface IdentityContexts {
  client: tls.SecureContext;
  server: tls.SecureContext;
  notAfter: Date;
}

export interface TlsProvider {
  readonly trustDomain: string;
  principalFor(namespace: string, serviceAccount: string): string;
  contexts(principal: string): IdentityContexts | undefined;
  peerIdentity(certificate: crypto.X509Certificate): PeerIdentity;
}
