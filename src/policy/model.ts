// The normalised forms of Istio's AuthorizationPolicy and PeerAuthentication (security.istio.io/v1): plain JSON
// data, checked once by validate.ts, carried in the agent's snapshot file, compiled by PolicySet.

/**
 * Istio's root namespace (meshConfig.rootNamespace, `istio-system` there): policies in it apply mesh-wide, and
 * no Namespace document has to declare it.
 */
export const DEFAULT_ROOT_NAMESPACE = 'ferry-system';

/** Annotations that turn an AuthorizationPolicy into a dry run (Istio's, and Ferry's own spelling). */
export const DRY_RUN_ANNOTATIONS = ['istio.io/dry-run', 'ferry.dev/dry-run'] as const;

export const AUTHORIZATION_API_VERSIONS = ['security.istio.io/v1', 'security.istio.io/v1beta1'] as const;

export type AuthorizationAction = 'ALLOW' | 'DENY' | 'AUDIT';

/**
 * One `from[].source`. Fields are ANDed, values within a field ORed. serviceAccounts are `namespace/name`
 * (a bare name in the policy is completed with the policy's namespace, as Istio does). requestPrincipals and
 * remoteIpBlocks (and their not* forms) are L7 fields: kept, but not enforced yet (see PolicySet).
 */
export interface PolicySource {
  principals?: string[];
  notPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  serviceAccounts?: string[];
  notServiceAccounts?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
}

/** One `to[].operation`. Ports are L4; hosts, methods and paths (and their not* forms) are L7. */
export interface PolicyOperation {
  ports?: number[];
  notPorts?: number[];
  hosts?: string[];
  notHosts?: string[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}

/** One `when[]` condition: the key's value is one of `values` (when given) and none of `notValues`. */
export interface PolicyCondition {
  key: string;
  values?: string[];
  notValues?: string[];
}

/** A rule matches when its from, to and when all match; an absent part matches anything. */
export interface AuthorizationRule {
  from?: PolicySource[];
  to?: PolicyOperation[];
  when?: PolicyCondition[];
}

export interface AuthorizationPolicy {
  namespace: string;
  name: string;
  action: AuthorizationAction;
  /** `istio.io/dry-run: "true"`: evaluated and reported, never enforced. */
  dryRun: boolean;
  /** spec.selector.matchLabels; absent (not `{}`) when the policy covers its whole scope. */
  selector?: Record<string, string>;
  /** No rules: an ALLOW policy matches nothing ("allow-nothing"), a DENY policy never matches. */
  rules: AuthorizationRule[];
}

export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE' | 'UNSET';

export interface PeerAuthentication {
  namespace: string;
  name: string;
  /** spec.selector.matchLabels; absent when the policy is namespace-wide (or mesh-wide in the root namespace). */
  selector?: Record<string, string>;
  /** spec.mtls.mode; UNSET (also when mtls is absent) inherits from the level above. */
  mode: MtlsMode;
  /** spec.portLevelMtls, sorted by port; only with a selector. */
  portLevelMtls: { port: number; mode: MtlsMode }[];
}

// ---------------------------------------------------------------------------------------------------------------
// JSON schemas of the normalised forms, for readers of files Ferry wrote itself (the snapshot file): strict about
// shape, not about values — validate.ts already checked those when the policy was read from YAML.

const strings = { type: 'array', items: { type: 'string' } } as const;
const ports = { type: 'array', items: { type: 'integer', minimum: 1, maximum: 65535 } } as const;
const labels = { type: 'object', additionalProperties: { type: 'string' } } as const;
const mtlsMode = { enum: ['STRICT', 'PERMISSIVE', 'DISABLE', 'UNSET'] } as const;

export const AUTHORIZATION_POLICY_JSON_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['namespace', 'name', 'action', 'dryRun', 'rules'],
  properties: {
    namespace: { type: 'string' },
    name: { type: 'string' },
    action: { enum: ['ALLOW', 'DENY', 'AUDIT'] },
    dryRun: { type: 'boolean' },
    selector: labels,
    rules: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        properties: {
          from: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              properties: {
                principals: strings,
                notPrincipals: strings,
                namespaces: strings,
                notNamespaces: strings,
                serviceAccounts: strings,
                notServiceAccounts: strings,
                ipBlocks: strings,
                notIpBlocks: strings,
                requestPrincipals: strings,
                notRequestPrincipals: strings,
                remoteIpBlocks: strings,
                notRemoteIpBlocks: strings,
              },
            },
          },
          to: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              properties: {
                ports,
                notPorts: ports,
                hosts: strings,
                notHosts: strings,
                methods: strings,
                notMethods: strings,
                paths: strings,
                notPaths: strings,
              },
            },
          },
          when: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['key'],
              properties: { key: { type: 'string' }, values: strings, notValues: strings },
            },
          },
        },
      },
    },
  },
} as const;

export const PEER_AUTHENTICATION_JSON_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['namespace', 'name', 'mode', 'portLevelMtls'],
  properties: {
    namespace: { type: 'string' },
    name: { type: 'string' },
    selector: labels,
    mode: mtlsMode,
    portLevelMtls: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['port', 'mode'],
        properties: { port: { type: 'integer', minimum: 1, maximum: 65535 }, mode: mtlsMode },
      },
    },
  },
} as const;
