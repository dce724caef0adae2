// The user-facing shapes of AuthorizationPolicy and PeerAuthentication (security.istio.io/v1 and v1beta1), each
// defined once with TypeBox: the raw documents' TypeScript types, the JSON schemas validate.ts checks with ajv, and
// (through crd.ts) the CRDs' openAPIV3Schema. Istio's own rules that a schema cannot say live in validate.ts.
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { AUTHORIZATION_API_VERSIONS } from './model';
import {
  FERRY_DOC,
  FERRY_REJECTED,
  KUBERNETES_PRESERVE_UNKNOWN_FIELDS,
  KUBERNETES_VALIDATIONS,
  intOrString,
  mapOf,
  stringEnum,
} from './schema-kit';

// A node's `description` is the "expected …" half of the message when that node is wrong (explainAjvError);
// `x-ferry-doc`, where present, is what `kubectl explain` shows instead.

const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
// CRD object names are DNS-1123 subdomains (Kubernetes apimachinery validation), so dots are allowed.
const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
const QUALIFIED_NAME =
  '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$';
const QUALIFIED_NAME_TEXT =
  "a key like app or example.com/tier (optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.')";
const LABEL_VALUE = '^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$';
const LABEL_VALUE_TEXT = "a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
const API_VERSION_TEXT = 'security.istio.io/v1 (or security.istio.io/v1beta1)';
export const PORT_TEXT = 'a port from 1 to 65535, as Istio writes it (a string such as "8080") or a number';

// Istio's own CRDs bound these lists (istio/api kubernetes/customresourcedefinitions.gen.yaml); so does Ferry, on
// both paths, so a policy the API server stores is one Ferry accepts.
export const MAX_RULES = 512;
export const MAX_FROM = 512;
export const MAX_SERVICE_ACCOUNTS = 16;
export const MAX_SERVICE_ACCOUNT_LENGTH = 320;
export const MAX_MATCH_LABELS = 4096;

export const article = (kind: string): string => (/^[AEIOU]/.test(kind) ? `an ${kind}` : `a ${kind}`);

const labelValue = Type.String({ pattern: LABEL_VALUE, maxLength: 63, description: LABEL_VALUE_TEXT });
const keys = { pattern: QUALIFIED_NAME, maxLength: 317, description: QUALIFIED_NAME_TEXT };

const strings = (what: string, doc?: string) =>
  Type.Array(Type.String({ description: `${what.replace(/s$/, '')} (a string)` }), {
    description: `a list of ${what}`,
    ...(doc !== undefined ? { [FERRY_DOC]: doc } : {}),
  });

// ---------------------------------------------------------------------------------------------------------------
// metadata: Kubernetes ObjectMeta. Ferry reads name, namespace, labels and annotations; the fields the API server
// sets are accepted as they come (objects read back from it, `kubectl get -o yaml`), and any other field is a typo.

const OBJECT_META_PROPERTIES = {
  name: Type.String({
    pattern: DNS_SUBDOMAIN,
    maxLength: 253,
    description: "a policy name: a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)",
  }),
  namespace: Type.Optional(
    Type.String({
      pattern: DNS_LABEL,
      maxLength: 63,
      description: "a namespace name: a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)",
    }),
  ),
  labels: Type.Optional(mapOf(labelValue, { description: 'labels: a mapping of keys to strings', keys })),
  annotations: Type.Optional(
    mapOf(Type.String({ description: 'an annotation value (a string; quote "true")' }), {
      description: 'annotations: a mapping of keys to strings',
      keys,
    }),
  ),
  // Set by the API server (ObjectMeta, k8s.io/apimachinery meta/v1); Ferry does not read them.
  generateName: Type.Optional(Type.Unknown()),
  uid: Type.Optional(Type.Unknown()),
  resourceVersion: Type.Optional(Type.Unknown()),
  generation: Type.Optional(Type.Unknown()),
  creationTimestamp: Type.Optional(Type.Unknown()),
  deletionTimestamp: Type.Optional(Type.Unknown()),
  deletionGracePeriodSeconds: Type.Optional(Type.Unknown()),
  ownerReferences: Type.Optional(Type.Unknown()),
  finalizers: Type.Optional(Type.Unknown()),
  managedFields: Type.Optional(Type.Unknown()),
  selfLink: Type.Optional(Type.Unknown()),
};
const METADATA_TEXT = 'object metadata (a mapping with at least name)';

/** metadata as a file may write it: ObjectMeta's fields, no others. */
const ObjectMeta = Type.Object(OBJECT_META_PROPERTIES, { additionalProperties: false, description: METADATA_TEXT });
/**
 * metadata as the API server returns it: it validated ObjectMeta itself, and a newer server may add fields this
 * Ferry does not know, which must not make it refuse every policy.
 */
const ServedObjectMeta = Type.Object(OBJECT_META_PROPERTIES, { additionalProperties: true, description: METADATA_TEXT });

const Selector = Type.Object(
  {
    matchLabels: Type.Optional(
      mapOf(labelValue, {
        description: 'matchLabels: a mapping of keys to strings',
        maxProperties: MAX_MATCH_LABELS,
        keys,
        [FERRY_DOC]: "Labels a pod must all carry for the policy to apply to it; none (or {}) means every pod in the policy's scope.",
        // The key pattern itself (propertyNames) is Ferry's check only; these are Istio's CRD rules for keys.
        [KUBERNETES_VALIDATIONS]: [
          { rule: 'self.all(key, !key.contains("*"))', message: 'wildcard not allowed in label key match' },
          { rule: 'self.all(key, key.size() != 0)', message: 'key must not be empty' },
        ],
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'a workload selector {matchLabels}',
    [FERRY_DOC]:
      'The workloads (pods) the policy applies to, by label. Without it the policy covers its whole namespace, or the mesh in the root namespace.',
  },
);

/** Written by a control plane through the status subresource; Ferry does not read it. */
const Status = Type.Object(
  {},
  {
    additionalProperties: true,
    description: 'a status mapping (written by the control plane)',
    [KUBERNETES_PRESERVE_UNKNOWN_FIELDS]: true,
    [FERRY_DOC]: 'Written by the control plane through the status subresource; not set by users.',
  },
);

function documentSchema<K extends string, S extends TSchema, M extends TSchema>(kind: K, spec: S, metadata: M, docsPage: string) {
  return Type.Object(
    {
      apiVersion: stringEnum(AUTHORIZATION_API_VERSIONS, {
        description: API_VERSION_TEXT,
        [FERRY_DOC]: 'security.istio.io/v1 (stored) or security.istio.io/v1beta1 (served, same schema).',
      }),
      kind: stringEnum([kind] as const, { description: kind, [FERRY_DOC]: kind }),
      metadata,
      spec: Type.Optional(spec),
      status: Type.Optional(Status),
    },
    {
      additionalProperties: false,
      description: article(kind),
      [FERRY_DOC]: `Istio's ${kind} (security.istio.io), as Ferry enforces it. See https://istio.io/latest/docs/reference/config/security/${docsPage}/`,
    },
  );
}

// ---------------------------------------------------------------------------------------------------------------
// AuthorizationPolicy.

export const SOURCE_FIELDS = [
  'principals',
  'notPrincipals',
  'requestPrincipals',
  'notRequestPrincipals',
  'namespaces',
  'notNamespaces',
  'serviceAccounts',
  'notServiceAccounts',
  'ipBlocks',
  'notIpBlocks',
  'remoteIpBlocks',
  'notRemoteIpBlocks',
] as const;
export const OPERATION_FIELDS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;

const L7_DOC =
  'An HTTP attribute: kept, but not enforced yet (Ferry authorizes TCP connections); an ALLOW rule with it matches nothing, a DENY or AUDIT rule is enforced without it.';
const NOT = (field: string): string => `Like ${field}, but the rule matches only when none of these matches.`;

const serviceAccounts = (doc: string) =>
  Type.Array(
    Type.String({
      maxLength: MAX_SERVICE_ACCOUNT_LENGTH,
      description: `a service account: NAMESPACE/NAME, or NAME in the policy's namespace (at most ${MAX_SERVICE_ACCOUNT_LENGTH} characters)`,
    }),
    { maxItems: MAX_SERVICE_ACCOUNTS, description: `a list of at most ${MAX_SERVICE_ACCOUNTS} service accounts`, [FERRY_DOC]: doc },
  );

const Source = Type.Object(
  {
    principals: Type.Optional(
      strings(
        'principals',
        'Peer identities from the mutual TLS certificate, TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT without spiffe://; each exact, "*", "prefix*" or "*suffix".',
      ),
    ),
    notPrincipals: Type.Optional(strings('notPrincipals', NOT('principals'))),
    requestPrincipals: Type.Optional(strings('requestPrincipals', `Request (JWT) identities, ISSUER/SUBJECT. ${L7_DOC}`)),
    notRequestPrincipals: Type.Optional(strings('notRequestPrincipals', `${NOT('requestPrincipals')} ${L7_DOC}`)),
    namespaces: Type.Optional(strings('namespaces', 'Namespaces of the peer\'s identity; each exact, "*", "prefix*" or "*suffix".')),
    notNamespaces: Type.Optional(strings('notNamespaces', NOT('namespaces'))),
    serviceAccounts: Type.Optional(
      serviceAccounts(
        "Peer service accounts, NAMESPACE/NAME or NAME in the policy's namespace; not together with principals or namespaces.",
      ),
    ),
    notServiceAccounts: Type.Optional(serviceAccounts(NOT('serviceAccounts'))),
    ipBlocks: Type.Optional(strings('ipBlocks', "The peer's address: IP addresses or CIDRs (IPv4 or IPv6), e.g. 10.0.0.0/8.")),
    notIpBlocks: Type.Optional(strings('notIpBlocks', NOT('ipBlocks'))),
    remoteIpBlocks: Type.Optional(strings('remoteIpBlocks', `The original client address (X-Forwarded-For). ${L7_DOC}`)),
    notRemoteIpBlocks: Type.Optional(strings('notRemoteIpBlocks', `${NOT('remoteIpBlocks')} ${L7_DOC}`)),
  },
  {
    additionalProperties: false,
    description: 'a source {principals, namespaces, ipBlocks, …}',
    [FERRY_DOC]: 'Who is connecting. Fields are ANDed, the values of one field ORed; at least one field must be set.',
    [KUBERNETES_VALIDATIONS]: [
      {
        rule:
          '((has(self.serviceAccounts) && self.serviceAccounts.size() > 0) || (has(self.notServiceAccounts) && self.notServiceAccounts.size() > 0)) ? ' +
          '!((has(self.principals) && self.principals.size() > 0) || (has(self.notPrincipals) && self.notPrincipals.size() > 0) || ' +
          '(has(self.namespaces) && self.namespaces.size() > 0) || (has(self.notNamespaces) && self.notNamespaces.size() > 0)) : true',
        message: 'Cannot set serviceAccounts with namespaces or principals',
      },
    ],
  },
);

const ports = (doc: string) =>
  Type.Array(intOrString({ description: PORT_TEXT }), { description: `a list of ports, e.g. ["8080"]`, [FERRY_DOC]: doc });

const Operation = Type.Object(
  {
    hosts: Type.Optional(strings('hosts', `Host header values. ${L7_DOC}`)),
    notHosts: Type.Optional(strings('notHosts', `${NOT('hosts')} ${L7_DOC}`)),
    ports: Type.Optional(ports('Destination ports of the connection, 1 to 65535 (written as strings, as Istio does, or numbers).')),
    notPorts: Type.Optional(ports(NOT('ports'))),
    methods: Type.Optional(strings('methods', `HTTP methods. ${L7_DOC}`)),
    notMethods: Type.Optional(strings('notMethods', `${NOT('methods')} ${L7_DOC}`)),
    paths: Type.Optional(strings('paths', `HTTP paths. ${L7_DOC}`)),
    notPaths: Type.Optional(strings('notPaths', `${NOT('paths')} ${L7_DOC}`)),
  },
  {
    additionalProperties: false,
    description: 'an operation {ports, notPorts, …}',
    [FERRY_DOC]: 'What is being reached. Fields are ANDed, the values of one field ORed; at least one field must be set.',
  },
);

const Condition = Type.Object(
  {
    key: Type.String({
      description: 'an attribute such as source.ip or destination.port',
      [FERRY_DOC]:
        'The attribute: source.ip, source.namespace, source.principal, destination.ip or destination.port (enforced); remote.ip, request.auth.*, request.headers[NAME] or connection.sni (HTTP attributes, not enforced yet).',
    }),
    values: Type.Optional(
      strings('values', "Values the attribute must match one of (the key's syntax: an address, a port, a principal…)."),
    ),
    notValues: Type.Optional(strings('values', 'Values the attribute must match none of.')),
  },
  {
    additionalProperties: false,
    description: 'a condition {key, values, notValues}',
    [FERRY_DOC]: 'One more condition on the connection; values or notValues (or both) must be set.',
  },
);

const Rule = Type.Object(
  {
    from: Type.Optional(
      Type.Array(
        Type.Object(
          { source: Source },
          {
            additionalProperties: false,
            description: 'a {source} entry',
            [FERRY_DOC]: 'One source; the rule matches when any entry does.',
          },
        ),
        {
          maxItems: MAX_FROM,
          description: 'a list of {source}',
          [FERRY_DOC]: 'Sources the rule matches, any of them; absent matches every source (an empty list is refused).',
        },
      ),
    ),
    to: Type.Optional(
      Type.Array(
        Type.Object(
          { operation: Operation },
          {
            additionalProperties: false,
            description: 'an {operation} entry',
            [FERRY_DOC]: 'One operation; the rule matches when any entry does.',
          },
        ),
        {
          description: 'a list of {operation}',
          [FERRY_DOC]: 'Operations the rule matches, any of them; absent matches every operation (an empty list is refused).',
        },
      ),
    ),
    when: Type.Optional(
      Type.Array(Condition, {
        description: 'a list of conditions {key, values, notValues}',
        [FERRY_DOC]: 'Further conditions, all of which must hold.',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'a rule {from, to, when} (an empty rule {} matches every connection)',
    [FERRY_DOC]: 'Matches a connection when from, to and when all match; an empty rule {} matches every connection.',
  },
);

const AuthorizationPolicySpec = Type.Object(
  {
    selector: Type.Optional(Selector),
    // Real Istio fields that Ferry refuses with a message of its own (validate.ts); left out of the CRD.
    targetRef: Type.Optional(Type.Unknown({ [FERRY_REJECTED]: true })),
    targetRefs: Type.Optional(Type.Unknown({ [FERRY_REJECTED]: true })),
    provider: Type.Optional(Type.Unknown({ [FERRY_REJECTED]: true })),
    action: Type.Optional(
      stringEnum(['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'], {
        description: 'ALLOW, DENY or AUDIT',
        [FERRY_REJECTED]: ['CUSTOM'],
        [FERRY_DOC]:
          'What a matching rule does: ALLOW (the default), DENY or AUDIT. DENY policies are checked first; a workload with any ALLOW policy accepts only what one allows. CUSTOM is not supported.',
      }),
    ),
    rules: Type.Optional(
      Type.Array(Rule, {
        maxItems: MAX_RULES,
        description: 'a list of rules {from, to, when}',
        [FERRY_DOC]:
          'The rules; the policy matches a connection when any rule does. No rules: an ALLOW policy allows nothing, a DENY policy never matches.',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'an AuthorizationPolicy spec {selector, action, rules}',
    [FERRY_DOC]: 'Access control for the selected workloads: which connections are allowed, denied or audited.',
  },
);

export const AUTHORIZATION_POLICY_DOCUMENT_SCHEMA = documentSchema(
  'AuthorizationPolicy',
  AuthorizationPolicySpec,
  ObjectMeta,
  'authorization-policy',
);
/** The same document as the API server returns it (see ServedObjectMeta). */
export const SERVED_AUTHORIZATION_POLICY_DOCUMENT_SCHEMA = documentSchema(
  'AuthorizationPolicy',
  AuthorizationPolicySpec,
  ServedObjectMeta,
  'authorization-policy',
);
/** An AuthorizationPolicy as written (YAML or JSON), once it passed AUTHORIZATION_POLICY_DOCUMENT_SCHEMA. */
export type AuthorizationPolicyDocument = Static<typeof AUTHORIZATION_POLICY_DOCUMENT_SCHEMA>;

// ---------------------------------------------------------------------------------------------------------------
// PeerAuthentication.

export const MTLS_MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;
const MTLS_MODE_DOC =
  'STRICT: mutual TLS only, plaintext refused; PERMISSIVE: both; DISABLE: plaintext; UNSET (or absent): inherit from the namespace, then the mesh (PERMISSIVE by default).';

const Mtls = (doc: string) =>
  Type.Object(
    { mode: Type.Optional(stringEnum(MTLS_MODES, { description: 'STRICT, PERMISSIVE, DISABLE or UNSET', [FERRY_DOC]: MTLS_MODE_DOC })) },
    { additionalProperties: false, description: 'an mTLS setting {mode}', [FERRY_DOC]: doc },
  );

const PeerAuthenticationSpec = Type.Object(
  {
    selector: Type.Optional(Selector),
    mtls: Type.Optional(Mtls('Mutual TLS for the selected workloads, every port.')),
    portLevelMtls: Type.Optional(
      mapOf(Mtls('Mutual TLS for this port.'), {
        description: 'a mapping of port numbers to {mode}',
        keys: { pattern: '^[0-9]+$', description: 'a port number from 1 to 65535' },
        [FERRY_DOC]:
          "Per-port settings that override mtls: the key is the workload's port number (the container port). Only with a selector.",
        [KUBERNETES_VALIDATIONS]: [
          { rule: 'self.all(key, 0 < int(key) && int(key) <= 65535)', message: 'port must be between 1-65535' },
          { rule: 'self.size() > 0', message: 'portLevelMtls must not be empty' },
        ],
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'a PeerAuthentication spec {selector, mtls, portLevelMtls}',
    [FERRY_DOC]: 'Whether the selected workloads accept plaintext, mutual TLS, or both.',
    [KUBERNETES_VALIDATIONS]: [
      {
        rule: 'has(self.portLevelMtls) ? (has(self.selector) && has(self.selector.matchLabels) && self.selector.matchLabels.size() > 0) : true',
        message: 'portLevelMtls requires selector',
      },
    ],
  },
);

export const PEER_AUTHENTICATION_DOCUMENT_SCHEMA = documentSchema(
  'PeerAuthentication',
  PeerAuthenticationSpec,
  ObjectMeta,
  'peer_authentication',
);
/** The same document as the API server returns it (see ServedObjectMeta). */
export const SERVED_PEER_AUTHENTICATION_DOCUMENT_SCHEMA = documentSchema(
  'PeerAuthentication',
  PeerAuthenticationSpec,
  ServedObjectMeta,
  'peer_authentication',
);
/** A PeerAuthentication as written (YAML or JSON), once it passed PEER_AUTHENTICATION_DOCUMENT_SCHEMA. */
export type PeerAuthenticationDocument = Static<typeof PEER_AUTHENTICATION_DOCUMENT_SCHEMA>;
