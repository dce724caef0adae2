// TLS settings of HBONE (HTTP/2 CONNECT over mutual TLS) and the peer-certificate checks that turn a
// chain-verified certificate into a workload identity (SPIFFE X.509-SVID spec §5, validation).
import type * as crypto from 'node:crypto';
import type * as tls from 'node:tls';
import { IdentityError, parseSpiffeUri, principalOf, readCertificateNames } from '../identity';
import { PeerIdentityError } from './errors';
import type { PeerIdentity } from './types';

/** HBONE is HTTP/2 only (ALPN "h2", RFC 7301 / RFC 9113 §3.2). */
export const HBONE_ALPN_PROTOCOLS: readonly string[] = Object.freeze(['h2']);
/** TLS 1.3 only (RFC 8446): one round trip, no renegotiation, certificates encrypted on the wire. */
export const HBONE_TLS_MIN_VERSION: tls.SecureVersion = 'TLSv1.3';
export const HBONE_TLS_MAX_VERSION: tls.SecureVersion = 'TLSv1.3';

/** Context options shared by the client and server side of HBONE (the key and chain are added by identity). */
export const HBONE_SECURE_CONTEXT_OPTIONS = Object.freeze({
  minVersion: HBONE_TLS_MIN_VERSION,
  maxVersion: HBONE_TLS_MAX_VERSION,
});

function describe(certificate: crypto.X509Certificate): string {
  return `peer certificate serial ${certificate.serialNumber}`;
}

/**
 * Identity of a peer certificate the TLS layer has already chain-verified against the bundle. Per the
 * X.509-SVID spec a leaf SVID has exactly one URI SAN (§2) and is not a CA (§4.1). Throws PeerIdentityError.
 */
export function verifyPeerIdentity(certificate: crypto.X509Certificate, trustDomain: string): PeerIdentity {
  const what = describe(certificate);
  let names: { uris: string[]; ca: boolean };
  try {
    names = readCertificateNames(certificate.raw);
  } catch (err) {
    throw new PeerIdentityError('unreadable', `${what}: extensions cannot be read: ${(err as Error).message}`, { cause: err });
  }
  if (names.ca) throw new PeerIdentityError('ca-certificate', `${what}: is a CA certificate (basicConstraints cA), not a workload SVID`);
  if (names.uris.length === 0) throw new PeerIdentityError('no-uri-san', `${what}: has no URI SAN (an X.509-SVID has exactly one)`);
  if (names.uris.length > 1) {
    throw new PeerIdentityError(
      'multiple-uri-sans',
      `${what}: has ${names.uris.length} URI SANs (${names.uris.join(', ')}); an X.509-SVID has exactly one`,
    );
  }
  let id: ReturnType<typeof parseSpiffeUri>;
  try {
    id = parseSpiffeUri(names.uris[0]);
  } catch (err) {
    if (!(err instanceof IdentityError)) throw err;
    throw new PeerIdentityError('not-spiffe', `${what}: URI SAN is not a workload SPIFFE ID: ${err.message}`, { cause: err });
  }
  if (id.trustDomain !== trustDomain) {
    throw new PeerIdentityError('trust-domain', `${what}: trust domain "${id.trustDomain}" is not ours ("${trustDomain}")`);
  }
  return { ...id, principal: principalOf(id) };
}
