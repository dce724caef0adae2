// src/tls: HBONE's TLS settings, peer identity checks, and the TlsProvider the proxy uses.
export {
  HBONE_ALPN_PROTOCOLS,
  HBONE_SECURE_CONTEXT_OPTIONS,
  HBONE_TLS_MAX_VERSION,
  HBONE_TLS_MIN_VERSION,
  verifyPeerIdentity,
} from './hbone-tls';
export { IdentityTlsProvider } from './identity-tls-provider';
export type { IdentityContexts, PeerIdentity, TlsProvider } from './types';
export { PeerIdentityError, TLS_ERROR_CODES, type PeerRejection } from './errors';
