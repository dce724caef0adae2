// src/identity: SPIFFE workload identities, the CA (in process, its storage-independent rotation state — the
// controller keeps it in a Secret — and the controller service's protocol and client), and the agent's workload certificates.
export {
  DEFAULT_TRUST_DOMAIN,
  checkTrustDomain,
  parsePrincipal,
  parseSpiffeUri,
  principalOf,
  sameSpiffeId,
  spiffeUri,
  type SpiffeId,
} from './spiffe';
export {
  CLOCK_SKEW_SECONDS,
  CertificateAuthority,
  DEFAULT_CERT_TTL_SECONDS,
  DEFAULT_ROOT_TTL_SECONDS,
  createIntermediateAuthority,
  createRootAuthority,
  type AuthorityMaterial,
  type CertificateAuthorityClient,
  type CertificateAuthorityOptions,
  type SignRequest,
  type SignResponse,
} from './certificate-authority';
export {
  CA_METADATA,
  NEXT_STEP,
  PHASES,
  applyCaTransition,
  caCertName,
  caChainName,
  caIssuerOf,
  caKeyName,
  checkCaMetadata,
  expectPhase,
  formatCaMetadata,
  initialCaState,
  loadCaIssuer,
  parseCaMetadata,
  planRotationStep,
  type CaChange,
  type CaCreateOptions,
  type CaFile,
  type CaFiles,
  type CaIssuer,
  type CaMetadata,
  type RotationPhase,
  type CaTransition,
  type RotationStep,
} from './ca-state';
export {
  BACKOFF_CAP_MS,
  BACKOFF_START_MS,
  RENEWAL_JITTER,
  RENEWAL_LATEST,
  WorkloadCertificate,
  WorkloadCertificates,
  realTimers,
  type CertificateEvent,
  type Timers,
  type WorkloadCertificatesOptions,
} from './workload-certificates';
export { issuerNameOf, readCertificateNames } from './x509';
export { IDENTITY_ERROR_CODES, IdentityError, type IdentityErrorCode } from './errors';
export {
  CA_PROTO_FILE,
  CA_SERVICE_NAME,
  certificateServiceClient,
  certificateServiceDefinition,
  protoRoot,
  type CaRotationPhaseName,
  type SignRequestMessage,
  type SignResponseMessage,
  type TrustBundleMessage,
  type WatchTrustBundleRequestMessage,
} from './ca-proto';
export { GrpcCaClient, type GrpcCaClientOptions, type TrustBundleWatchOptions } from './grpc-ca-client';
