// Reads the Kubernetes-shaped YAML that `ferry sandbox up -f FILE…` takes and turns it into a checked model.
// Shape is checked by JSON schema (ajv), cross-object rules by code; every problem in every file is reported at once.
import { promises as fs } from 'node:fs';
import Ajv, { type ErrorObject } from 'ajv';
import { LineCounter, isMap, isNode, isScalar, isSeq, parseAllDocuments, type Document } from 'yaml';
import {
  AUTHORIZATION_API_VERSIONS,
  DEFAULT_ROOT_NAMESPACE,
  PolicySet,
  validateAuthorizationPolicy,
  validatePeerAuthentication,
  type AuthorizationPolicy,
  type PeerAuthentication,
  type PolicyValidation,
} from '../policy';
import { describeValue, explainAjvError, formatFieldPath, quoteValue } from '../errors';
import { parseIpNetwork, parseIpv4 } from '../net';
import { ManifestError, type ManifestProblem } from './errors';
import {
  DEFAULT_NAMESPACE,
  DEFAULT_SERVICE_ACCOUNT,
  EXCLUDE_OUTBOUND_CIDRS_ANNOTATION,
  EXCLUDE_OUTBOUND_CIDRS_MAX,
  EXCLUDE_OUTBOUND_PORTS_ANNOTATION,
  EXCLUDE_OUTBOUND_PORTS_MAX,
  MESH_ANNOTATION,
  NAMESPACE_ANNOTATIONS,
  POD_ANNOTATIONS,
  ferryAnnotationProblems,
  parseExcludedCidrs,
  parseExcludedPorts,
  type Checked,
  type ObjectProblem,
} from '../k8s';

// ---------------------------------------------------------------------------------------------------------------
// Limits and well-known values. Generated names (see plan.ts) embed a caller-chosen prefix, so the manifest
// budgets for the longest prefix planSandbox accepts; then any valid manifest plans with any valid prefix.

/** Longest sandbox prefix planSandbox accepts (`ferry` by default; tests use short random ones). */
export const SANDBOX_PREFIX_MAX = 16;
/** Longest network namespace name the sandbox generates. */
export const NETNS_NAME_MAX = 64;
/** Node names: `P-node-NAME` must fit NETNS_NAME_MAX. */
export const NODE_NAME_MAX = NETNS_NAME_MAX - SANDBOX_PREFIX_MAX - '-node-'.length;
/** Namespace + pod name lengths together: `P-pod-NS-POD` must fit NETNS_NAME_MAX. */
export const POD_QUALIFIED_NAME_MAX = NETNS_NAME_MAX - SANDBOX_PREFIX_MAX - '-pod-'.length - '-'.length;
/** A namespace name must leave room for at least a one-character pod name. */
export const NAMESPACE_NAME_MAX = POD_QUALIFIED_NAME_MAX - 1;

/** Nodes of a sandbox whose manifests declare none. */
export const DEFAULT_NODE_NAMES: readonly string[] = ['node-a', 'node-b'];
export {
  DEFAULT_NAMESPACE,
  DEFAULT_SERVICE_ACCOUNT,
  EXCLUDE_OUTBOUND_CIDRS_ANNOTATION,
  EXCLUDE_OUTBOUND_CIDRS_MAX,
  EXCLUDE_OUTBOUND_PORTS_ANNOTATION,
  EXCLUDE_OUTBOUND_PORTS_MAX,
  MESH_ANNOTATION,
};

/** Service VIPs come from here (the kubeadm default, so addresses look familiar). */
export const SERVICE_CIDR = '10.96.0.0/16';

const CORE_API_VERSION = 'v1';
const FERRY_API_VERSION = 'ferry.dev/v1alpha1';

// ---------------------------------------------------------------------------------------------------------------
// The model handed to planSandbox. Plain data only: it is also written to the sandbox state file.

export interface SandboxNode {
  name: string;
}

export interface SandboxNamespace {
  name: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** `ferry.dev/mesh: enabled` on the Namespace. */
  meshEnabled: boolean;
}

export interface SandboxContainerPort {
  name?: string;
  containerPort: number;
}

export interface SandboxContainer {
  name: string;
  command: string[];
  args: string[];
  env: Record<string, string>;
  ports: SandboxContainerPort[];
  workingDir?: string;
}

export interface SandboxPod {
  namespace: string;
  name: string;
  nodeName: string;
  serviceAccount: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** Namespace enrolled and the pod not opted out. */
  meshEnabled: boolean;
  containers: SandboxContainer[];
  excludeOutboundPorts: number[];
  excludeOutboundCidrs: string[];
}

export interface SandboxServicePort {
  name?: string;
  port: number;
  /** A port number, or the name of a containerPort of the selected pods. */
  targetPort: number | string;
}

export interface SandboxService {
  namespace: string;
  name: string;
  clusterIP?: string;
  selector: Record<string, string>;
  ports: SandboxServicePort[];
}

export interface SandboxManifest {
  nodes: SandboxNode[];
  namespaces: SandboxNamespace[];
  pods: SandboxPod[];
  services: SandboxService[];
  /** Normalised by src/policy; the ones in DEFAULT_ROOT_NAMESPACE apply mesh-wide. */
  authorizationPolicies: AuthorizationPolicy[];
  peerAuthentications: PeerAuthentication[];
  warnings: string[];
}

export interface ManifestSource {
  /** Shown in messages exactly as given. */
  file: string;
  text: string;
}

// ---------------------------------------------------------------------------------------------------------------
// Schemas. Each schema node's `description` is the "expected …" half of the message when that node is wrong.

const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
const DNS_LABEL_TEXT = "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";
// Service names become bare host names in /etc/hosts; like Kubernetes (DNS-1035), they must not start with a
// digit, so that a name such as `1` can never be read as an address by the resolver.
const DNS_1035_LABEL = '^[a-z]([-a-z0-9]*[a-z0-9])?$';
// IANA service name (RFC 6335 §5.1), as Kubernetes requires for port names: at most 15 characters, at least one
// letter, no leading, trailing or doubled '-'.
const IANA_SVC_NAME = '^(?!.*--)(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
const IANA_SVC_NAME_TEXT = "an IANA service name (at most 15 lowercase letters, digits and '-', with at least one letter), e.g. http";
// Kubernetes qualified names (label and annotation keys): optional DNS-subdomain prefix and '/', then a name.
const QUALIFIED_NAME =
  '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$';
const QUALIFIED_NAME_TEXT =
  "a key like app or example.com/tier (optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.')";
const LABEL_VALUE = '^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$';
const LABEL_VALUE_TEXT = "a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
const ENV_NAME = '^[-._a-zA-Z][-._a-zA-Z0-9]*$';
const PORT_TEXT = 'an integer from 1 to 65535';

type Schema = Record<string, unknown>;

const dnsLabel = (what: string): Schema => ({
  type: 'string',
  pattern: DNS_LABEL,
  maxLength: 63,
  description: `${what}: a DNS-1123 label (${DNS_LABEL_TEXT})`,
});

const stringMap = (what: string, value: Schema): Schema => ({
  type: 'object',
  description: `${what}: a mapping of keys to strings`,
  propertyNames: { pattern: QUALIFIED_NAME, maxLength: 317, description: QUALIFIED_NAME_TEXT },
  additionalProperties: value,
});

const labels = (): Schema => stringMap('labels', { type: 'string', pattern: LABEL_VALUE, maxLength: 63, description: LABEL_VALUE_TEXT });
const annotations = (): Schema =>
  stringMap('annotations', { type: 'string', description: 'an annotation value (a string; quote numbers)' });

const port = (what: string): Schema => ({ type: 'integer', minimum: 1, maximum: 65535, description: `${what}: ${PORT_TEXT}` });
const protocol = (): Schema => ({ type: 'string', enum: ['TCP'], description: 'TCP' });

function document(kind: string, metadata: Schema, spec?: Schema): Schema {
  const properties: Record<string, Schema> = {
    apiVersion: { type: 'string' },
    kind: { type: 'string' },
    metadata,
  };
  if (spec !== undefined) properties.spec = spec;
  return {
    type: 'object',
    description: `a ${kind}`,
    additionalProperties: false,
    required: spec !== undefined ? ['apiVersion', 'kind', 'metadata', 'spec'] : ['apiVersion', 'kind', 'metadata'],
    properties,
  };
}

function metadata(name: Schema, extra: Record<string, Schema>): Schema {
  return {
    type: 'object',
    description: 'object metadata (a mapping with at least name)',
    additionalProperties: false,
    required: ['name'],
    properties: { name, ...extra },
  };
}

const namespaceSchema = document('Namespace', metadata(dnsLabel('a namespace name'), { labels: labels(), annotations: annotations() }));

const nodeSchema = document('Node', metadata(dnsLabel('a node name'), {}));

const objectMetadata = (name: Schema): Schema =>
  metadata(name, { namespace: dnsLabel('a namespace name'), labels: labels(), annotations: annotations() });

const podSchema = document('Pod', objectMetadata(dnsLabel('a pod name')), {
  type: 'object',
  description: 'a pod spec (a mapping with containers)',
  additionalProperties: false,
  required: ['containers'],
  properties: {
    nodeName: dnsLabel('the name of a sandbox node'),
    serviceAccountName: dnsLabel('a service account name'),
    terminationGracePeriodSeconds: {
      type: 'integer',
      minimum: 0,
      maximum: 3600,
      description: "seconds between SIGTERM and SIGKILL when the pod is deleted (the sandbox's kubelet waits at most 30)",
    },
    containers: {
      type: 'array',
      minItems: 1,
      description: 'a list of at least one container',
      items: {
        type: 'object',
        description: 'a container (a mapping with name and command)',
        additionalProperties: false,
        required: ['name', 'command'],
        properties: {
          name: dnsLabel('a container name'),
          image: { type: 'string', description: 'an image reference (a string)' },
          command: {
            type: 'array',
            minItems: 1,
            items: { type: 'string', description: 'a string' },
            description: 'the program and its leading arguments, a non-empty list of strings, e.g. ["node", "server.js"]',
          },
          args: { type: 'array', items: { type: 'string', description: 'a string' }, description: 'a list of strings' },
          env: {
            type: 'array',
            description: 'a list of {name, value}',
            items: {
              type: 'object',
              description: 'an environment variable {name, value}',
              additionalProperties: false,
              required: ['name'],
              properties: {
                name: {
                  type: 'string',
                  pattern: ENV_NAME,
                  description: "a variable name (letters, digits, '_', '-' or '.', not starting with a digit)",
                },
                value: { type: 'string', description: 'a string (quote numbers and booleans)' },
              },
            },
          },
          ports: {
            type: 'array',
            description: 'a list of {containerPort, name, protocol}',
            items: {
              type: 'object',
              description: 'a container port {containerPort, name, protocol}',
              additionalProperties: false,
              required: ['containerPort'],
              properties: {
                containerPort: port('a port number'),
                name: { type: 'string', pattern: IANA_SVC_NAME, maxLength: 15, description: IANA_SVC_NAME_TEXT },
                protocol: protocol(),
              },
            },
          },
          workingDir: { type: 'string', pattern: '^/', description: 'an absolute directory path' },
        },
      },
    },
  },
});

const serviceSchema = document(
  'Service',
  objectMetadata({
    type: 'string',
    pattern: DNS_1035_LABEL,
    maxLength: 63,
    description:
      "a Service name: a DNS-1035 label (lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, at most 63 characters)",
  }),
  {
    type: 'object',
    description: 'a service spec (a mapping with ports)',
    additionalProperties: false,
    required: ['ports'],
    properties: {
      type: { type: 'string', enum: ['ClusterIP'], description: 'ClusterIP' },
      clusterIP: { type: 'string', description: `an IPv4 address inside ${SERVICE_CIDR}` },
      selector: stringMap('a selector', { type: 'string', pattern: LABEL_VALUE, maxLength: 63, description: LABEL_VALUE_TEXT }),
      ports: {
        type: 'array',
        minItems: 1,
        description: 'a list of at least one port',
        items: {
          type: 'object',
          description: 'a service port {name, port, targetPort, protocol}',
          additionalProperties: false,
          required: ['port'],
          properties: {
            name: { type: 'string', pattern: IANA_SVC_NAME, maxLength: 15, description: IANA_SVC_NAME_TEXT },
            port: port('a port number'),
            targetPort: {
              type: ['integer', 'string'],
              minimum: 1,
              maximum: 65535,
              pattern: IANA_SVC_NAME,
              maxLength: 15,
              description: `${PORT_TEXT}, or the name of a containerPort (${IANA_SVC_NAME_TEXT})`,
            },
            protocol: protocol(),
          },
        },
      },
    },
  },
);

// Shapes that documents have once their schema passed.
interface RawMetadata {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RawNamespace {
  metadata: RawMetadata;
}
interface RawContainer {
  name: string;
  image?: string;
  command: string[];
  args?: string[];
  env?: { name: string; value?: string }[];
  ports?: { containerPort: number; name?: string; protocol?: 'TCP' }[];
  workingDir?: string;
}
interface RawPod {
  metadata: RawMetadata;
  spec: { nodeName?: string; serviceAccountName?: string; terminationGracePeriodSeconds?: number; containers: RawContainer[] };
}
interface RawService {
  metadata: RawMetadata;
  spec: {
    type?: 'ClusterIP';
    clusterIP?: string;
    selector?: Record<string, string>;
    ports: { name?: string; port: number; targetPort?: number | string; protocol?: 'TCP' }[];
  };
}

// `verbose` puts the failing schema node on each error, which is where the "expected …" text lives.
const ajv = new Ajv({ allErrors: true, verbose: true, allowUnionTypes: true, strict: true });

interface KindInfo {
  apiVersions: readonly string[];
  namespaced: boolean;
  validate: (value: unknown) => boolean;
  errors: () => ErrorObject[];
}

function kindInfo(apiVersion: string, namespaced: boolean, schema: Schema): KindInfo {
  const validate = ajv.compile(schema);
  return { apiVersions: [apiVersion], namespaced, validate: (value) => validate(value) as boolean, errors: () => validate.errors ?? [] };
}

/** Istio's security kinds: src/policy checks every field (see checkPolicy), so there is no schema here. */
const policyKind: KindInfo = { apiVersions: AUTHORIZATION_API_VERSIONS, namespaced: true, validate: () => true, errors: () => [] };

const KINDS: Record<string, KindInfo> = {
  Namespace: kindInfo(CORE_API_VERSION, false, namespaceSchema),
  Pod: kindInfo(CORE_API_VERSION, true, podSchema),
  Service: kindInfo(CORE_API_VERSION, true, serviceSchema),
  Node: kindInfo(FERRY_API_VERSION, false, nodeSchema),
  AuthorizationPolicy: policyKind,
  PeerAuthentication: policyKind,
};
const KINDS_TEXT =
  'Namespace, Pod or Service (apiVersion v1), Node (apiVersion ferry.dev/v1alpha1), or AuthorizationPolicy or ' +
  'PeerAuthentication (apiVersion security.istio.io/v1)';

// ---------------------------------------------------------------------------------------------------------------
// Addresses (shared with plan.ts).

/**
 * `a.b.c.d/len` → base address, size and prefix length, for the module's own constants: read by the one network
 * parser (src/net), then required to be an IPv4 CIDR written exactly; throws otherwise.
 */
export function parseIpv4Cidr(cidr: string): { base: number; size: number; prefixLength: number } {
  const network = parseIpNetwork(cidr);
  if ('problem' in network || network.family !== 4 || network.mapped || network.hostBits || !network.prefixWritten) {
    throw new TypeError(`not an IPv4 CIDR: ${cidr}`);
  }
  return { base: network.base, size: 2 ** (32 - network.prefixLength), prefixLength: network.prefixLength };
}

// ---------------------------------------------------------------------------------------------------------------
// Problem reporting.

type Segment = string | number;

/** Where one document sits, and the label its problems carry. */
class DocumentContext {
  kind: string | undefined;
  name: string | undefined;

  constructor(
    readonly file: string,
    readonly document: number,
    private readonly yaml: Document.Parsed | undefined,
    private readonly lines: LineCounter | undefined,
    private readonly problems: ManifestProblem[],
  ) {}

  get label(): string {
    return this.kind === undefined ? '' : this.name === undefined ? ` (${this.kind})` : ` (${this.kind} ${this.name})`;
  }

  /** Prefix for warnings, formatted like problems so users find the spot the same way. */
  where(segments: readonly Segment[]): string {
    return `${this.file}: document ${this.document}${this.label}: ${formatFieldPath(segments)}`;
  }

  /** Records a problem; `line` overrides the line found from the path (YAML syntax errors know their own). */
  problem(segments: readonly Segment[], message: string, line?: number): void {
    const problem: ManifestProblem = { file: this.file, document: this.document, path: formatFieldPath(segments), message };
    if (this.kind !== undefined) problem.kind = this.kind;
    if (this.name !== undefined) problem.name = this.name;
    const found = line ?? this.lineOf(segments);
    if (found !== undefined) problem.line = found;
    this.problems.push(problem);
  }

  /**
   * Line of the field at `segments`: of its key in a mapping (where a reader looks for a field), of the item in a
   * list; for a missing field, of the nearest ancestor that exists.
   */
  private lineOf(segments: readonly Segment[]): number | undefined {
    if (this.yaml === undefined || this.lines === undefined) return undefined;
    let node: unknown = this.yaml.contents;
    let offset = isNode(node) ? node.range?.[0] : undefined;
    for (const segment of segments) {
      let next: unknown;
      let at: number | undefined;
      if (isMap(node)) {
        const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(segment));
        next = pair?.value;
        at = isNode(pair?.key) ? pair.key.range?.[0] : undefined;
      } else if (isSeq(node) && typeof segment === 'number') {
        next = node.items[segment];
        at = isNode(next) ? next.range?.[0] : undefined;
      }
      if (at === undefined) break;
      node = next;
      offset = at;
    }
    return offset === undefined ? undefined : this.lines.linePos(offset).line;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Checks a schema cannot express. They run on every document of a known kind, even one whose schema failed, so a
// single run reports everything; so they read fields defensively and leave wrong types to the schema's messages.

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
const asMapping = (value: unknown): Record<string, unknown> => (isMapping(value) ? value : {});
const asList = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const asString = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
const isPort = (value: unknown): value is number => Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65535;
const has = (object: object, key: string): boolean => Object.hasOwn(object, key);

/** What the cross-object pass needs to know about one document. */
interface Declared {
  ctx: DocumentContext;
  /** The document; read as its Raw* shape only once no problem was found anywhere (so its schema passed). */
  raw: Record<string, unknown>;
  /** undefined when metadata.name is missing or not a string (the schema reports that). */
  name: string | undefined;
  /** Namespaced kinds only; `default` when not given. */
  namespace: string;
}

interface DeclaredPod extends Declared {
  nodeNameGiven: boolean;
  nodeName: string | undefined;
  mesh: string | undefined;
  excludeOutboundPorts: number[];
  excludeOutboundCidrs: string[];
}

interface DeclaredService extends Declared {
  /** Only when it is a usable address (a bad one is already reported). */
  clusterIP: string | undefined;
}

interface DeclaredPolicy<T> extends Declared {
  /** The normalised policy; undefined when it has problems. */
  value: T | undefined;
}

/** Reports the shared rules' problems (paths from the document root) at this document. */
function report(ctx: DocumentContext, problems: readonly ObjectProblem[]): void {
  for (const problem of problems) ctx.problem(problem.path, problem.message);
}

function excluded<T>(ctx: DocumentContext, checked: Checked<T>, annotation: string, warnings: string[]): T {
  report(ctx, checked.problems);
  for (const warning of checked.warnings) warnings.push(`${ctx.where(['metadata', 'annotations', annotation])}: ${warning}`);
  return checked.value;
}

function checkNamespace(ctx: DocumentContext, raw: Record<string, unknown>): Declared {
  const metadata = asMapping(raw.metadata);
  const name = asString(metadata.name);
  // Longer than 63 is already reported by the schema as not a DNS label.
  if (name !== undefined && name.length > NAMESPACE_NAME_MAX && name.length <= 63) {
    ctx.problem(
      ['metadata', 'name'],
      `is ${name.length} characters long; expected at most ${NAMESPACE_NAME_MAX}, so that pod network namespace names ` +
        `PREFIX-pod-NAMESPACE-POD fit in ${NETNS_NAME_MAX} characters`,
    );
  }
  report(ctx, ferryAnnotationProblems('Namespace', asMapping(metadata.annotations), NAMESPACE_ANNOTATIONS));
  return { ctx, raw, name, namespace: '' };
}

function checkNode(ctx: DocumentContext, raw: Record<string, unknown>): Declared {
  const name = asString(asMapping(raw.metadata).name);
  if (name !== undefined && name.length > NODE_NAME_MAX && name.length <= 63) {
    ctx.problem(
      ['metadata', 'name'],
      `is ${name.length} characters long; expected at most ${NODE_NAME_MAX}, so that the node's network namespace ` +
        `PREFIX-node-NAME fits in ${NETNS_NAME_MAX} characters`,
    );
  }
  return { ctx, raw, name, namespace: '' };
}

function checkPod(ctx: DocumentContext, raw: Record<string, unknown>, warnings: string[]): DeclaredPod {
  const metadata = asMapping(raw.metadata);
  const spec = asMapping(raw.spec);
  const name = asString(metadata.name);
  const namespace = asString(metadata.namespace) ?? DEFAULT_NAMESPACE;
  if (name !== undefined && name.length <= 63 && namespace.length <= 63 && namespace.length + name.length > POD_QUALIFIED_NAME_MAX) {
    ctx.problem(
      ['metadata', 'name'],
      `namespace and pod name together are ${namespace.length + name.length} characters; expected at most ${POD_QUALIFIED_NAME_MAX} ` +
        `together, so that the pod's network namespace PREFIX-pod-${namespace}-${name} stays within ${NETNS_NAME_MAX} characters ` +
        `for any sandbox prefix of up to ${SANDBOX_PREFIX_MAX} characters`,
    );
  }
  const annotations = asMapping(metadata.annotations);
  report(ctx, ferryAnnotationProblems('Pod', annotations, POD_ANNOTATIONS));

  // Port numbers and names are unique per pod, not per container: the containers share one network namespace,
  // and a named targetPort must resolve to exactly one port.
  const containerNames = new Map<string, string>();
  const portNumbers = new Map<number, string>();
  const portNames = new Map<string, string>();
  asList(spec.containers).forEach((item, c) => {
    const container = asMapping(item);
    const at = ['spec', 'containers', c];
    const containerName = asString(container.name);
    if (containerName !== undefined) {
      const first = containerNames.get(containerName);
      if (first !== undefined)
        ctx.problem([...at, 'name'], `${quoteValue(containerName)} is already used by ${first}; expected unique container names`);
      else containerNames.set(containerName, formatFieldPath(at));
    }
    if (typeof container.image === 'string') {
      warnings.push(`${ctx.where([...at, 'image'])}: ignored: the sandbox runs the command directly on this machine, not from an image`);
    }
    const command = asList(container.command);
    if (command[0] === '') ctx.problem([...at, 'command', 0], 'is empty; expected the program to run');
    const envNames = new Set<string>();
    asList(container.env).forEach((variable, e) => {
      const envName = asString(asMapping(variable).name);
      if (envName === undefined) return;
      if (envNames.has(envName))
        ctx.problem([...at, 'env', e, 'name'], `${quoteValue(envName)} is set twice in this container; expected each variable once`);
      envNames.add(envName);
    });
    asList(container.ports).forEach((entry, i) => {
      const p = asMapping(entry);
      const portAt = [...at, 'ports', i];
      if (isPort(p.containerPort)) {
        const first = portNumbers.get(p.containerPort);
        if (first !== undefined)
          ctx.problem(
            [...portAt, 'containerPort'],
            `${p.containerPort} is already declared at ${first}; expected each containerPort once per pod`,
          );
        else portNumbers.set(p.containerPort, formatFieldPath(portAt));
      }
      const portName = asString(p.name);
      if (portName !== undefined) {
        const first = portNames.get(portName);
        if (first !== undefined)
          ctx.problem([...portAt, 'name'], `${quoteValue(portName)} is already declared at ${first}; expected unique port names per pod`);
        else portNames.set(portName, formatFieldPath(portAt));
      }
    });
  });

  return {
    ctx,
    raw,
    name,
    namespace,
    // Without a spec mapping the schema already reports it; a missing nodeName would only repeat that.
    nodeNameGiven: has(spec, 'nodeName') || !isMapping(raw.spec),
    nodeName: asString(spec.nodeName),
    mesh: asString(annotations[MESH_ANNOTATION]),
    excludeOutboundPorts: excluded(
      ctx,
      parseExcludedPorts(asString(annotations[EXCLUDE_OUTBOUND_PORTS_ANNOTATION])),
      EXCLUDE_OUTBOUND_PORTS_ANNOTATION,
      warnings,
    ),
    excludeOutboundCidrs: excluded(
      ctx,
      parseExcludedCidrs(asString(annotations[EXCLUDE_OUTBOUND_CIDRS_ANNOTATION])),
      EXCLUDE_OUTBOUND_CIDRS_ANNOTATION,
      warnings,
    ),
  };
}

/** Reports why `clusterIP` cannot be used and returns false, or returns true. */
function checkClusterIP(ctx: DocumentContext, clusterIP: string): boolean {
  const path = ['spec', 'clusterIP'];
  const { base, size } = parseIpv4Cidr(SERVICE_CIDR);
  const expected = `expected an IPv4 address inside ${SERVICE_CIDR} other than its first and last, or no clusterIP to have one allocated`;
  const address = parseIpv4(clusterIP);
  if (clusterIP === 'None') ctx.problem(path, `headless Services (clusterIP: None) are not supported yet; ${expected}`);
  else if (address === undefined) ctx.problem(path, `${quoteValue(clusterIP)} is not an IPv4 address; ${expected}`);
  else if (address <= base || address >= base + size - 1) ctx.problem(path, `${clusterIP} is outside the service range; ${expected}`);
  else return true;
  return false;
}

function checkService(ctx: DocumentContext, raw: Record<string, unknown>): DeclaredService {
  const metadata = asMapping(raw.metadata);
  const spec = asMapping(raw.spec);
  report(ctx, ferryAnnotationProblems('Service', asMapping(metadata.annotations), []));
  const clusterIP = asString(spec.clusterIP);
  const usable = clusterIP !== undefined && checkClusterIP(ctx, clusterIP);
  const ports = asList(spec.ports);
  const numbers = new Map<number, number>();
  const names = new Map<string, number>();
  ports.forEach((entry, i) => {
    if (!isMapping(entry)) return;
    if (isPort(entry.port)) {
      const first = numbers.get(entry.port);
      if (first !== undefined)
        ctx.problem(['spec', 'ports', i, 'port'], `${entry.port} is already used by spec.ports[${first}]; expected unique ports`);
      else numbers.set(entry.port, i);
    }
    const portName = asString(entry.name);
    if (entry.name === undefined && ports.length > 1) {
      // Kubernetes requires names once there are several ports: they are how routes and telemetry tell them apart.
      ctx.problem(['spec', 'ports', i, 'name'], `is required when a Service has more than one port; expected ${IANA_SVC_NAME_TEXT}`);
    } else if (portName !== undefined) {
      const first = names.get(portName);
      if (first !== undefined)
        ctx.problem(
          ['spec', 'ports', i, 'name'],
          `${quoteValue(portName)} is already used by spec.ports[${first}]; expected unique port names`,
        );
      else names.set(portName, i);
    }
  });
  return {
    ctx,
    raw,
    name: asString(metadata.name),
    namespace: asString(metadata.namespace) ?? DEFAULT_NAMESPACE,
    clusterIP: usable ? clusterIP : undefined,
  };
}

/**
 * AuthorizationPolicy and PeerAuthentication: src/policy checks the whole document (paths from the document root,
 * as here) and normalises it; its warnings, which name the policy and field, get this document's location.
 */
function checkPolicy<T>(
  ctx: DocumentContext,
  raw: Record<string, unknown>,
  validate: (doc: unknown) => PolicyValidation<T>,
  warnings: string[],
): DeclaredPolicy<T> {
  const result = validate(raw);
  for (const problem of result.problems) ctx.problem(problem.path, problem.message);
  const label = `${ctx.kind ?? ''} ${ctx.name ?? ''}: `;
  for (const warning of result.warnings) {
    const rest = warning.startsWith(label) ? warning.slice(label.length) : warning;
    warnings.push(`${ctx.file}: document ${ctx.document}${ctx.label}: ${rest}`);
  }
  const metadata = asMapping(raw.metadata);
  return { ctx, raw, name: asString(metadata.name), namespace: asString(metadata.namespace) ?? DEFAULT_NAMESPACE, value: result.value };
}

// ---------------------------------------------------------------------------------------------------------------
// Building the model: only ever called once no problem was found, so every document passed its schema.

function buildNamespace(declared: Declared): SandboxNamespace {
  const raw = declared.raw as unknown as RawNamespace;
  const annotations = { ...(raw.metadata.annotations ?? {}) };
  return {
    name: raw.metadata.name,
    labels: { ...(raw.metadata.labels ?? {}) },
    annotations,
    meshEnabled: annotations[MESH_ANNOTATION] === 'enabled',
  };
}

function buildPod(declared: DeclaredPod, nodeName: string, meshEnabled: boolean): SandboxPod {
  const raw = declared.raw as unknown as RawPod;
  return {
    namespace: declared.namespace,
    name: raw.metadata.name,
    nodeName,
    serviceAccount: raw.spec.serviceAccountName ?? DEFAULT_SERVICE_ACCOUNT,
    labels: { ...(raw.metadata.labels ?? {}) },
    annotations: { ...(raw.metadata.annotations ?? {}) },
    meshEnabled,
    containers: raw.spec.containers.map((container): SandboxContainer => {
      const env: Record<string, string> = {};
      for (const variable of container.env ?? []) env[variable.name] = variable.value ?? '';
      const result: SandboxContainer = {
        name: container.name,
        command: [...container.command],
        args: [...(container.args ?? [])],
        env,
        ports: (container.ports ?? []).map((p) =>
          p.name !== undefined ? { name: p.name, containerPort: p.containerPort } : { containerPort: p.containerPort },
        ),
      };
      if (container.workingDir !== undefined) result.workingDir = container.workingDir;
      return result;
    }),
    excludeOutboundPorts: declared.excludeOutboundPorts,
    excludeOutboundCidrs: declared.excludeOutboundCidrs,
  };
}

function buildService(declared: DeclaredService): SandboxService {
  const raw = declared.raw as unknown as RawService;
  const service: SandboxService = {
    namespace: declared.namespace,
    name: raw.metadata.name,
    selector: { ...(raw.spec.selector ?? {}) },
    ports: raw.spec.ports.map((p): SandboxServicePort => {
      // Kubernetes defaults targetPort to port.
      return { ...(p.name !== undefined ? { name: p.name } : {}), port: p.port, targetPort: p.targetPort ?? p.port };
    }),
  };
  if (raw.spec.clusterIP !== undefined) service.clusterIP = raw.spec.clusterIP;
  return service;
}

// ---------------------------------------------------------------------------------------------------------------
// Entry points.

/**
 * Parses and validates manifests already in memory. Throws one ManifestError listing every problem in every
 * source; returns the model (with warnings) only when there is none. Sources are read in order, and that order is
 * the declaration order the plan follows.
 */
export function parseManifests(sources: readonly ManifestSource[], running?: RunningSandbox): SandboxManifest {
  const { manifest, problems } = collect(sources, true, running);
  if (manifest === undefined) throw new ManifestError(problems);
  return manifest;
}

/** Parses every source; returns every problem found, and the model only when there are none. */
/**
 * What a running sandbox already has, for files applied to it (`ferry sandbox apply`): their objects
 * may refer to its namespaces, and selectors are checked against its pods.
 */
export interface RunningSandbox {
  namespaces: Array<{ name: string; meshEnabled: boolean }>;
  pods: Array<{ namespace: string; labels: Record<string, string> }>;
}

function collect(
  sources: readonly ManifestSource[],
  reportEmpty: boolean,
  running?: RunningSandbox,
): { manifest?: SandboxManifest; problems: ManifestProblem[] } {
  const problems: ManifestProblem[] = [];
  const warnings: string[] = [];
  const namespaces: Declared[] = [];
  const nodes: Declared[] = [];
  const pods: DeclaredPod[] = [];
  const services: DeclaredService[] = [];
  const authorizationPolicies: DeclaredPolicy<AuthorizationPolicy>[] = [];
  const peerAuthentications: DeclaredPolicy<PeerAuthentication>[] = [];
  let documentCount = 0;

  for (const source of sources) {
    const lines = new LineCounter();
    // uniqueKeys: a repeated key is an error, not a silent override of the first. merge: `<<: *anchor` works as
    // it does for kubectl (go-yaml), although YAML 1.2 dropped merge keys.
    const docs = parseAllDocuments(source.text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, merge: true });
    docs.forEach((doc, index) => {
      const ctx = new DocumentContext(source.file, index + 1, doc, lines, problems);
      if (doc.errors.length > 0) {
        documentCount++;
        for (const error of doc.errors) {
          const { line, col } = lines.linePos(error.pos[0]);
          ctx.problem([], `malformed YAML at line ${line}, column ${col}: ${error.message}; expected valid YAML`, line);
        }
        return;
      }
      for (const warning of doc.warnings) warnings.push(`${source.file}: document ${index + 1}: ${warning.message}`);
      let value: unknown;
      try {
        value = doc.toJS({ maxAliasCount: 100 });
      } catch (error) {
        // toJS refuses alias bombs ("billion laughs") and the like; report it like any other bad document.
        documentCount++;
        ctx.problem([], `cannot be read: ${error instanceof Error ? error.message : String(error)}`);
        return;
      }
      // Empty documents (a trailing `---`, a comment-only section) are skipped, as kubectl does.
      if (value === null || value === undefined) return;
      documentCount++;
      if (!isMapping(value)) ctx.problem([], `is ${describeValue(value)}; expected a mapping with apiVersion, kind and metadata`);
      else accept(ctx, value);
    });
  }

  function accept(ctx: DocumentContext, value: Record<string, unknown>): void {
    const { kind, apiVersion } = value;
    const meta = asMapping(value.metadata);
    const info = typeof kind === 'string' && has(KINDS, kind) ? KINDS[kind] : undefined;
    // Label the document first, so that even its kind and apiVersion problems say which object it is.
    if (typeof kind === 'string') {
      ctx.kind = kind;
      const name = asString(meta.name);
      const namespace = asString(meta.namespace);
      if (name !== undefined) {
        const namespaced = info?.namespaced ?? namespace !== undefined;
        ctx.name = namespaced ? `${namespace ?? DEFAULT_NAMESPACE}/${name}` : name;
      }
    }
    let fatal = false;
    if (kind === undefined) {
      ctx.problem(['kind'], `is required; expected ${KINDS_TEXT}`);
      fatal = true;
    } else if (typeof kind !== 'string') {
      ctx.problem(['kind'], `is ${describeValue(kind)}; expected ${KINDS_TEXT}`);
      fatal = true;
    } else if (info === undefined) {
      ctx.problem(['kind'], `unknown kind ${quoteValue(kind)}; expected ${KINDS_TEXT}`);
      fatal = true;
    }
    const versionText = info?.apiVersions.join(' or ') ?? 'the apiVersion of a supported kind';
    if (apiVersion === undefined) {
      ctx.problem(['apiVersion'], `is required; expected ${versionText}`);
      fatal = true;
    } else if (typeof apiVersion !== 'string') {
      ctx.problem(['apiVersion'], `is ${describeValue(apiVersion)}; expected ${versionText}`);
      fatal = true;
    } else if (info !== undefined && !info.apiVersions.includes(apiVersion)) {
      ctx.problem(['apiVersion'], `${quoteValue(apiVersion)} is not the apiVersion of ${ctx.kind}; expected ${versionText}`);
      fatal = true;
    }
    // Without a known kind and its apiVersion, field problems would be guesses.
    if (fatal || info === undefined) return;

    if (!info.validate(value)) {
      for (const error of info.errors()) {
        // UDP is planned (DNS capture) but not carried yet; say so rather than calling it invalid.
        const explained = explainAjvError(error, value, { notSupportedYet: ['UDP'] });
        if (explained !== undefined) ctx.problem(explained.path, explained.message);
      }
    }
    switch (kind) {
      case 'Namespace':
        namespaces.push(checkNamespace(ctx, value));
        break;
      case 'Node':
        nodes.push(checkNode(ctx, value));
        break;
      case 'Pod':
        pods.push(checkPod(ctx, value, warnings));
        break;
      case 'Service':
        services.push(checkService(ctx, value));
        break;
      case 'AuthorizationPolicy':
        authorizationPolicies.push(checkPolicy(ctx, value, validateAuthorizationPolicy, warnings));
        break;
      case 'PeerAuthentication':
        peerAuthentications.push(checkPolicy(ctx, value, validatePeerAuthentication, warnings));
        break;
    }
  }

  if (documentCount === 0 && reportEmpty) {
    const files = sources.length === 0 ? '(no files)' : sources.map((s) => s.file).join(', ');
    problems.push({ file: files, document: 0, path: '', message: `no documents found; expected at least one ${KINDS_TEXT}` });
  }

  // --- Cross-object checks, in declaration order: the first declaration wins and later ones are reported.

  function rejectDuplicates<T extends Declared>(items: T[]): T[] {
    const seen = new Map<string, DocumentContext>();
    return items.filter((item) => {
      if (item.name === undefined) return true;
      const key = `${item.namespace}/${item.name}`;
      const first = seen.get(key);
      if (first === undefined) {
        seen.set(key, item.ctx);
        return true;
      }
      item.ctx.problem(
        ['metadata', 'name'],
        `duplicate ${item.ctx.kind} ${item.ctx.name}; expected unique names (first declared in ${first.file}: document ${first.document})`,
      );
      return false;
    });
  }

  const uniqueNodes = rejectDuplicates(nodes);
  const uniqueNamespaces = rejectDuplicates(namespaces);
  const uniquePods = rejectDuplicates(pods);
  const uniqueServices = rejectDuplicates(services);

  const nodeNames = nodes.length > 0 ? uniqueNodes.flatMap((n) => (n.name !== undefined ? [n.name] : [])) : [...DEFAULT_NODE_NAMES];
  const meshByNamespace = new Map<string, boolean>([[DEFAULT_NAMESPACE, false]]);
  for (const namespace of running?.namespaces ?? []) meshByNamespace.set(namespace.name, namespace.meshEnabled);
  for (const namespace of uniqueNamespaces) {
    if (namespace.name !== undefined) {
      meshByNamespace.set(
        namespace.name,
        asString(asMapping(asMapping(namespace.raw.metadata).annotations)[MESH_ANNOTATION]) === 'enabled',
      );
    }
  }
  let defaultReferenced = false;
  // A name that is not even a valid name has been reported by the schema; "not declared" would only repeat it.
  const validName = (name: string): boolean => name.length <= 63 && new RegExp(DNS_LABEL).test(name);
  const checkReference = (ctx: DocumentContext, namespace: string): void => {
    if (namespace === DEFAULT_NAMESPACE) defaultReferenced = true;
    if (!meshByNamespace.has(namespace) && validName(namespace)) {
      ctx.problem(
        ['metadata', 'namespace'],
        `namespace ${quoteValue(namespace)} is not declared; expected a Namespace document named ${quoteValue(namespace)}, or ${DEFAULT_NAMESPACE}`,
      );
    }
  };

  const podNodes: string[] = [];
  const podMesh: boolean[] = [];
  for (const pod of uniquePods) {
    checkReference(pod.ctx, pod.namespace);
    const choices = `one of: ${nodeNames.join(', ')}`;
    let nodeName = pod.nodeName ?? '';
    if (!pod.nodeNameGiven) {
      if (nodeNames.length === 1) nodeName = nodeNames[0] ?? '';
      else pod.ctx.problem(['spec', 'nodeName'], `is required when the sandbox has more than one node; expected ${choices}`);
    } else if (pod.nodeName !== undefined && !nodeNames.includes(pod.nodeName) && validName(pod.nodeName)) {
      pod.ctx.problem(['spec', 'nodeName'], `${quoteValue(pod.nodeName)} names no node; expected ${choices}`);
    }
    const namespaceMesh = meshByNamespace.get(pod.namespace) === true;
    podNodes.push(nodeName);
    podMesh.push(namespaceMesh && pod.mesh !== 'disabled');
    if (pod.mesh === 'enabled' && !namespaceMesh) {
      warnings.push(
        `${pod.ctx.where(['metadata', 'annotations', MESH_ANNOTATION])}: enabled has no effect because namespace ${pod.namespace} ` +
          `is not enrolled; annotate the Namespace with ${MESH_ANNOTATION}: enabled`,
      );
    }
  }

  const clusterIPs = new Map<string, DocumentContext>();
  for (const service of uniqueServices) {
    checkReference(service.ctx, service.namespace);
    if (service.clusterIP === undefined) continue;
    const first = clusterIPs.get(service.clusterIP);
    if (first !== undefined) {
      service.ctx.problem(
        ['spec', 'clusterIP'],
        `${service.clusterIP} is already taken by Service ${first.name}; expected a free address inside ${SERVICE_CIDR}`,
      );
    } else {
      clusterIPs.set(service.clusterIP, service.ctx);
    }
  }

  const uniqueAuthorizationPolicies = rejectDuplicates(authorizationPolicies);
  const uniquePeerAuthentications = rejectDuplicates(peerAuthentications);
  for (const policy of [...uniqueAuthorizationPolicies, ...uniquePeerAuthentications]) {
    // The root namespace holds mesh-wide policies and needs no Namespace document (Istio's istio-system is
    // never declared by users either); any other namespace must be declared like a Pod's.
    if (policy.namespace === DEFAULT_ROOT_NAMESPACE) continue;
    checkReference(policy.ctx, policy.namespace);
    if (meshByNamespace.get(policy.namespace) === false) {
      warnings.push(
        `${policy.ctx.where(['metadata', 'namespace'])}: has no effect because namespace ${policy.namespace} is not enrolled; ` +
          `annotate the Namespace with ${MESH_ANNOTATION}: enabled`,
      );
    }
  }
  const podLabels = [
    ...(running?.pods ?? []),
    ...uniquePods.map((pod) => ({ namespace: pod.namespace, labels: asMapping(asMapping(pod.raw.metadata).labels) })),
  ];
  for (const policy of [...uniqueAuthorizationPolicies, ...uniquePeerAuthentications]) {
    const selector = policy.value?.selector;
    const root = policy.namespace === DEFAULT_ROOT_NAMESPACE;
    // src/policy already warned that a root-namespace PeerAuthentication with a selector is ignored.
    if (selector === undefined || (root && policy.ctx.kind === 'PeerAuthentication')) continue;
    // A root-namespace AuthorizationPolicy selects in every namespace (Istio); everything else in its own.
    const everywhere = root;
    const matched = podLabels.some(
      (pod) =>
        (everywhere || pod.namespace === policy.namespace) &&
        Object.entries(selector).every(([key, value]) => has(pod.labels, key) && pod.labels[key] === value),
    );
    if (!matched) {
      warnings.push(
        `${policy.ctx.where(['spec', 'selector', 'matchLabels'])}: matches no pod ${everywhere ? 'in any namespace' : `in namespace ${policy.namespace}`}, so the policy applies to nothing`,
      );
    }
  }

  if (problems.length > 0)
    return {
      problems: inFileOrder(
        problems,
        sources.map((s) => s.file),
      ),
    };

  const authorizationPolicyList = uniqueAuthorizationPolicies.flatMap((p) => (p.value !== undefined ? [p.value] : []));
  const peerAuthenticationList = uniquePeerAuthentications.flatMap((p) => (p.value !== undefined ? [p.value] : []));
  // Conflicts between policies (two namespace-wide PeerAuthentications, …) only show across objects.
  warnings.push(...new PolicySet(authorizationPolicyList, peerAuthenticationList).conflicts);

  const namespaceList = uniqueNamespaces.map(buildNamespace);
  if (defaultReferenced && !namespaceList.some((n) => n.name === DEFAULT_NAMESPACE)) {
    namespaceList.push({ name: DEFAULT_NAMESPACE, labels: {}, annotations: {}, meshEnabled: false });
  }
  return {
    manifest: {
      nodes: nodeNames.map((name) => ({ name })),
      namespaces: namespaceList,
      pods: uniquePods.map((pod, i) => buildPod(pod, podNodes[i] ?? '', podMesh[i] ?? false)),
      services: uniqueServices.map(buildService),
      authorizationPolicies: authorizationPolicyList,
      peerAuthentications: peerAuthenticationList,
      warnings,
    },
    problems,
  };
}

/**
 * Problems in reading order: by file (in the order given), document, then line, so the list follows the text
 * whichever check found each problem. Array.prototype.sort is stable (ES2019): problems on one line keep the order
 * they were found in.
 */
function inFileOrder(problems: ManifestProblem[], files: readonly string[]): ManifestProblem[] {
  const rank = (file: string): number => {
    const index = files.indexOf(file);
    return index < 0 ? files.length : index;
  };
  return [...problems].sort((a, b) => rank(a.file) - rank(b.file) || a.document - b.document || (a.line ?? 0) - (b.line ?? 0));
}

/**
 * Reads `files` (in order) and parses them with parseManifests. A file that cannot be read is one more problem
 * in the same ManifestError, so a typo in one path does not hide mistakes in the others.
 */
export async function loadManifests(files: readonly string[], running?: RunningSandbox): Promise<SandboxManifest> {
  const results = await Promise.allSettled(files.map((file) => fs.readFile(file, 'utf8')));
  const sources: ManifestSource[] = [];
  const unreadable: ManifestProblem[] = [];
  let cause: unknown;
  results.forEach((result, i) => {
    const file = files[i] ?? '';
    if (result.status === 'fulfilled') {
      sources.push({ file, text: result.value });
    } else {
      cause ??= result.reason;
      const reason = result.reason as NodeJS.ErrnoException;
      unreadable.push({
        file,
        document: 0,
        path: '',
        message: `cannot read file (${reason.code ?? reason.message}); expected a readable YAML file`,
      });
    }
  });
  // With a file unreadable, "no documents" would only describe the readable ones: leave it out.
  const { manifest, problems } = collect(sources, unreadable.length === 0, running);
  if (manifest === undefined || unreadable.length > 0) throw new ManifestError(inFileOrder([...unreadable, ...problems], files), { cause });
  return manifest;
}
