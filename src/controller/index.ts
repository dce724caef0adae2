// src/controller: `ferry controller` — the model built from the cluster, the config stream to agents, the CA
// service (agents authenticated by TokenReview of their bound tokens, the CA in a Secret).
export { ModelBuilder, type ModelKind, type ModelSink, type ObjectReporter } from './model-builder';
export { CONTROLLER_COMPONENT, EventReporter, INVALID_EVENT_REASON, WARNING_EVENT_REASON, describeProblems } from './event-reporter';
export {
  AGENT_AUTH_ERROR_CODES,
  AGENT_TOKEN_AUDIENCE,
  AgentAuthError,
  DEFAULT_AGENT_SERVICE_ACCOUNT,
  MAX_TOKEN_BYTES,
  NODE_NAME_EXTRA,
  POD_NAME_EXTRA,
  POD_UID_EXTRA,
  TokenReviewAuthenticator,
  kubeTokenReviewer,
  toGrpcStatus,
  type AgentAuthenticator,
  type AgentIdentity,
  type AuthenticatorStats,
  type TokenReviewAuthenticatorOptions,
  type TokenReviewer,
} from './agent-authenticator';
export {
  CaService,
  DEFAULT_CA_SERVICE_LIMITS,
  caServerOptions,
  trustBundleMessage,
  type CaServiceLimits,
  type CaServiceOptions,
  type CaServiceStats,
} from './ca-service';
export {
  CA_BUNDLE_CONFIGMAP_NAME,
  CA_GENERATION_ANNOTATION,
  CA_NAMESPACE,
  CA_SECRET_NAME,
  CaHolder,
  KubeCaStore,
  ROOT_CERT_KEY,
  ensureCaSecret,
  publishTrustBundle,
  readTrustBundle,
  rotateCa,
  type CaObjectNames,
  type CaSnapshot,
  type CaSource,
  type EnsureCaOptions,
} from './ca-store';
export { CA_SERVICE_ERROR_CODES, CaServiceError, type CaServiceErrorCode } from './ca-errors';
export { KubePodDirectory, PodIndex, type PodDirectory, type PodOnNode } from './pod-directory';
export { TokenBuckets, type TokenBucketOptions } from './ca-rate-limit';
export {
  CONFIG_SERVER_ERROR_CODES,
  ConfigServer,
  ConfigServerError,
  DEFAULT_CONFIG_SERVER_LIMITS,
  ResourceStore,
  type ConfigServerLimits,
  type ConfigServerOptions,
  type ConfigServerStats,
  type ResourceStoreOptions,
  type StreamAuthenticator,
  type StreamIdentity,
} from './config-server';
export { ServingCertificate, type ServingCertificateOptions } from './serving-certificate';
