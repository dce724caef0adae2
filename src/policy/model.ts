// The normalised forms of Istio's AuthorizationPolicy and PeerAuthentication (security.istio.io/v1): plain JSON
// data, checked once by validate.ts, carried in the agent's snapshot file, compiled by PolicySet. Each shape is one
// TypeBox definition: its TypeScript type is Static<> of the JSON schema readers of Ferry's own files check.
import { Type, type Static } from '@sinclair/typebox';
import { mapOf, stringEnum } from './schema-kit';

/**
 * Istio's root namespace (meshConfig.rootNamespace, `istio-system` there): policies in it apply mesh-wide, and
 * no Namespace document has to declare it.
 */
export const DEFAULT_ROOT_NAMESPACE = 'ferry-system';

/** Annotations that turn an AuthorizationPolicy into a dry run (Istio's, and Ferry's own spelling). */
export const DRY_RUN_ANNOTATIONS = ['istio.io/dry-run', 'ferry.dev/dry-run'] as const;

export const AUTHORIZATION_API_VERSIONS = ['security.istio.io/v1', 'security.istio.io/v1beta1'] as const;

// The schemas are strict about shape, not about values: validate.ts already checked those when the policy was read
// from a document, and PolicySet re-checks what only code can (CIDRs, condition keys) when it compiles.

const strings = Type.Array(Type.String());
const ports = Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }));
const labels = mapOf(Type.String());

export const AUTHORIZATION_ACTIONS = ['ALLOW', 'DENY', 'AUDIT'] as const;
export type AuthorizationAction = (typeof AUTHORIZATION_ACTIONS)[number];

const PolicySourceSchema = Type.Object(
  {
    principals: Type.Optional(strings),
    notPrincipals: Type.Optional(strings),
    namespaces: Type.Optional(strings),
    notNamespaces: Type.Optional(strings),
    serviceAccounts: Type.Optional(strings),
    notServiceAccounts: Type.Optional(strings),
    ipBlocks: Type.Optional(strings),
    notIpBlocks: Type.Optional(strings),
    requestPrincipals: Type.Optional(strings),
    notRequestPrincipals: Type.Optional(strings),
    remoteIpBlocks: Type.Optional(strings),
    notRemoteIpBlocks: Type.Optional(strings),
  },
  { additionalProperties: false },
);
/**
 * One `from[].source`. Fields are ANDed, values within a field ORed. serviceAccounts are `namespace/name`
 * (a bare name in the policy is completed with the policy's namespace, as Istio does). requestPrincipals and
 * remoteIpBlocks (and their not* forms) are L7 fields: kept, but not enforced yet (see PolicySet).
 */
export type PolicySource = Static<typeof PolicySourceSchema>;

const PolicyOperationSchema = Type.Object(
  {
    ports: Type.Optional(ports),
    notPorts: Type.Optional(ports),
    hosts: Type.Optional(strings),
    notHosts: Type.Optional(strings),
    methods: Type.Optional(strings),
    notMethods: Type.Optional(strings),
    paths: Type.Optional(strings),
    notPaths: Type.Optional(strings),
  },
  { additionalProperties: false },
);
/** One `to[].operation`. Ports are L4; hosts, methods and paths (and their not* forms) are L7. */
export type PolicyOperation = Static<typeof PolicyOperationSchema>;

const PolicyConditionSchema = Type.Object(
  { key: Type.String(), values: Type.Optional(strings), notValues: Type.Optional(strings) },
  { additionalProperties: false },
);
/** One `when[]` condition: the key's value is one of `values` (when given) and none of `notValues`. */
export type PolicyCondition = Static<typeof PolicyConditionSchema>;

const AuthorizationRuleSchema = Type.Object(
  {
    from: Type.Optional(Type.Array(PolicySourceSchema)),
    to: Type.Optional(Type.Array(PolicyOperationSchema)),
    when: Type.Optional(Type.Array(PolicyConditionSchema)),
  },
  { additionalProperties: false },
);
/** A rule matches when its from, to and when all match; an absent part matches anything. */
export type AuthorizationRule = Static<typeof AuthorizationRuleSchema>;

export const AUTHORIZATION_POLICY_JSON_SCHEMA = Type.Object(
  {
    namespace: Type.String(),
    name: Type.String(),
    action: stringEnum(AUTHORIZATION_ACTIONS),
    /** `istio.io/dry-run: "true"`: evaluated and reported, never enforced. */
    dryRun: Type.Boolean(),
    /** spec.selector.matchLabels; absent (not `{}`) when the policy covers its whole scope. */
    selector: Type.Optional(labels),
    /** No rules: an ALLOW policy matches nothing ("allow-nothing"), a DENY policy never matches. */
    rules: Type.Array(AuthorizationRuleSchema),
  },
  { additionalProperties: false },
);
/** A normalised AuthorizationPolicy (see the field comments on AUTHORIZATION_POLICY_JSON_SCHEMA). */
export type AuthorizationPolicy = Static<typeof AUTHORIZATION_POLICY_JSON_SCHEMA>;

export const MTLS_MODE_VALUES = ['STRICT', 'PERMISSIVE', 'DISABLE', 'UNSET'] as const;
export type MtlsMode = (typeof MTLS_MODE_VALUES)[number];
const mtlsMode = stringEnum(MTLS_MODE_VALUES);

export const PEER_AUTHENTICATION_JSON_SCHEMA = Type.Object(
  {
    namespace: Type.String(),
    name: Type.String(),
    /** spec.selector.matchLabels; absent when the policy is namespace-wide (or mesh-wide in the root namespace). */
    selector: Type.Optional(labels),
    /** spec.mtls.mode; UNSET (also when mtls is absent) inherits from the level above. */
    mode: mtlsMode,
    /** spec.portLevelMtls, sorted by port; only with a selector. */
    portLevelMtls: Type.Array(
      Type.Object({ port: Type.Integer({ minimum: 1, maximum: 65535 }), mode: mtlsMode }, { additionalProperties: false }),
    ),
  },
  { additionalProperties: false },
);
/** A normalised PeerAuthentication (see the field comments on PEER_AUTHENTICATION_JSON_SCHEMA). */
export type PeerAuthentication = Static<typeof PEER_AUTHENTICATION_JSON_SCHEMA>;
