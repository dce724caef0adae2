// src/policy: Istio-shaped AuthorizationPolicy and PeerAuthentication — validation of the YAML documents into plain
// data, and PolicySet, which answers "which mTLS mode?" and "is this connection allowed?" on the data path.
export {
  AUTHORIZATION_API_VERSIONS,
  AUTHORIZATION_POLICY_JSON_SCHEMA,
  DEFAULT_ROOT_NAMESPACE,
  DRY_RUN_ANNOTATIONS,
  PEER_AUTHENTICATION_JSON_SCHEMA,
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
  formatPolicyPath,
  validateAuthorizationPolicy,
  validatePeerAuthentication,
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
