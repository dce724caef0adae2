// src/policy: Istio-shaped AuthorizationPolicy and PeerAuthentication — their document schemas (one TypeBox
// definition each, for ajv and the CRDs), validation of documents into plain data, and PolicySet, which answers
// "which mTLS mode?" and "is this connection allowed?" on the data path.
export {
  AUTHORIZATION_API_VERSIONS,
  AUTHORIZATION_POLICY_JSON_SCHEMA,
  DEFAULT_ROOT_NAMESPACE,
  DRY_RUN_ANNOTATIONS,
  PEER_AUTHENTICATION_JSON_SCHEMA,
  AUTHORIZATION_ACTIONS,
  MTLS_MODE_VALUES,
  type AuthorizationAction,
  type AuthorizationPolicy,
  type AuthorizationRule,
  type MtlsMode,
  type PeerAuthentication,
  type PolicyCondition,
  type PolicyOperation,
  type PolicySource,
} from './model';
export {
  AUTHORIZATION_POLICY_DOCUMENT_SCHEMA,
  PEER_AUTHENTICATION_DOCUMENT_SCHEMA,
  type AuthorizationPolicyDocument,
  type PeerAuthenticationDocument,
} from './document-schema';
export { CRD_GROUP, CRD_VERSIONS, crdOpenApiSchema, policyCrd, renderPolicyCrds, toStructuralSchema, type CrdSchema } from './crd';
export {
  formatPolicyPath,
  validateAuthorizationPolicy,
  validatePeerAuthentication,
  type DocumentOrigin,
  type PolicyValidation,
  type ValidateOptions,
} from './validate';
export {
  PolicySet,
  policyFingerprint,
  type AuthorizationDecision,
  type ConnectionAttributes,
  type DryRunResult,
  type EffectiveMtlsMode,
  type MtlsDecision,
  type PolicyWorkload,
} from './policy-set';
export { POLICY_ERROR_CODES, PolicyError, type PolicyProblem } from './errors';
