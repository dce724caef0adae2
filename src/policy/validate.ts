// Checks AuthorizationPolicy and PeerAuthentication documents (security.istio.io/v1 or v1beta1, as a file or the
// API server gives them) and normalises them. Shape by the JSON schemas of document-schema.ts (ajv), Istio's own
// validation rules by code; every problem is reported with its path from the document root, and unsupported
// fields are errors, never silently dropped.
import Ajv, { type ErrorObject } from 'ajv';
import { describeValue, explainAjvError, formatFieldPath, quoteValue } from '../errors';
import { ipNetworkWarning, parseIpNetwork } from '../net';
import type { PolicyProblem } from './errors';
import { parsePort, stringPatternProblem } from './match';
import { addAnnotationKeywords } from './schema-kit';
import {
  AUTHORIZATION_POLICY_DOCUMENT_SCHEMA,
  OPERATION_FIELDS,
  PEER_AUTHENTICATION_DOCUMENT_SCHEMA,
  PORT_TEXT,
  SERVED_AUTHORIZATION_POLICY_DOCUMENT_SCHEMA,
  SERVED_PEER_AUTHENTICATION_DOCUMENT_SCHEMA,
  SOURCE_FIELDS,
  article,
} from './document-schema';
import {
  DEFAULT_ROOT_NAMESPACE,
  DRY_RUN_ANNOTATIONS,
  type AuthorizationAction,
  type AuthorizationPolicy,
  type AuthorizationRule,
  type MtlsMode,
  type PeerAuthentication,
  type PolicyCondition,
  type PolicyOperation,
  type PolicySource,
} from './model';

export interface PolicyValidation<T> {
  /** Only when there is no problem. */
  value?: T;
  problems: PolicyProblem[];
  /** Accepted, but enforced differently from what was written (e.g. L7 fields); each names the policy and field. */
  warnings: string[];
}

export interface ValidateOptions {
  /** Where mesh-wide policies live; DEFAULT_ROOT_NAMESPACE unless the caller runs with another one. */
  rootNamespace?: string;
  /**
   * 'manifest' (the default): a file; metadata may hold ObjectMeta's fields and no others, so a typo is reported.
   * 'api-server': an object the API server returned (JSON); it validated metadata itself, so Ferry reads name,
   * namespace, labels and annotations and ignores every other metadata field, known or not.
   */
  origin?: DocumentOrigin;
}

type Segment = string | number;

/** Where a document comes from; it decides only how strict `metadata` is. */
export type DocumentOrigin = 'manifest' | 'api-server';

// `verbose` puts the failing schema node on each error, which is where the "expected …" text lives.
const ajv = addAnnotationKeywords(new Ajv({ allErrors: true, verbose: true, allowUnionTypes: true, strict: true }));
type ShapeCheck = ((value: unknown) => boolean) & { errors?: ErrorObject[] | null };
const SHAPES: Record<'AuthorizationPolicy' | 'PeerAuthentication', Record<DocumentOrigin, ShapeCheck>> = {
  AuthorizationPolicy: {
    manifest: ajv.compile(AUTHORIZATION_POLICY_DOCUMENT_SCHEMA),
    'api-server': ajv.compile(SERVED_AUTHORIZATION_POLICY_DOCUMENT_SCHEMA),
  },
  PeerAuthentication: {
    manifest: ajv.compile(PEER_AUTHENTICATION_DOCUMENT_SCHEMA),
    'api-server': ajv.compile(SERVED_PEER_AUTHENTICATION_DOCUMENT_SCHEMA),
  },
};

/** Fields only an HTTP proxy can check (Istio ambient: "ztunnel does not support HTTP attributes"). */
const L7_SOURCE_FIELDS = new Set<string>(['requestPrincipals', 'notRequestPrincipals', 'remoteIpBlocks', 'notRemoteIpBlocks']);
const L7_OPERATION_FIELDS = new Set<string>(['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths']);

// ---------------------------------------------------------------------------------------------------------------
// Code checks. They run even when the schema failed, so one pass reports everything; so they read fields
// defensively and leave wrong types to the schema's messages.

const isMapping = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const asMapping = (value: unknown): Record<string, unknown> => (isMapping(value) ? value : {});
const asList = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const asString = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
const has = (object: object, key: string): boolean => Object.hasOwn(object, key);

class Checker {
  readonly problems: PolicyProblem[] = [];
  readonly warnings: string[] = [];
  constructor(readonly label: string) {}

  problem(path: Segment[], message: string): void {
    this.problems.push({ path, message });
  }

  warn(path: Segment[], message: string): void {
    this.warnings.push(`${this.label}: ${formatFieldPath(path)}: ${message}`);
  }
}

interface Common {
  namespace: string;
  name: string;
  annotations: Record<string, unknown>;
  selector?: Record<string, string>;
  spec: Record<string, unknown>;
}

function readCommon(kind: keyof typeof SHAPES, doc: unknown, origin: DocumentOrigin): { c: Checker; common: Common } {
  const shape = SHAPES[kind][origin];
  const raw = asMapping(doc);
  const metadata = asMapping(raw.metadata);
  const namespace = asString(metadata.namespace) ?? 'default';
  const name = asString(metadata.name) ?? '';
  const c = new Checker(`${kind} ${namespace}/${name === '' ? '(unnamed)' : name}`);
  if (!isMapping(doc)) {
    c.problem([], `is ${describeValue(doc)}; expected ${article(kind)} mapping with apiVersion, kind, metadata and spec`);
  } else if (!shape(doc)) {
    for (const error of shape.errors ?? []) {
      const explained = explainAjvError(error, doc);
      if (explained !== undefined) c.problem(explained.path, explained.message);
    }
  }
  const matchLabels = asMapping(asMapping(asMapping(raw.spec).selector).matchLabels);
  // Istio treats an empty selector like none: the policy covers its whole namespace (or the mesh).
  const selector = Object.keys(matchLabels).length > 0 ? (matchLabels as Record<string, string>) : undefined;
  return { c, common: { namespace, name, annotations: asMapping(metadata.annotations), selector, spec: asMapping(raw.spec) } };
}

/** `ferry.dev/*` annotations are Ferry's: an unknown one is a typo, not a user's own annotation. */
function checkFerryAnnotations(c: Checker, annotations: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(annotations)) {
    if (!key.startsWith('ferry.dev/') || allowed.includes(key)) continue;
    const expected = allowed.length === 0 ? 'no ferry.dev/ annotations here' : `one of: ${allowed.join(', ')}`;
    c.problem(['metadata', 'annotations', key], `unknown Ferry annotation; expected ${expected}`);
  }
}

function readDryRun(c: Checker, annotations: Record<string, unknown>): boolean {
  let dryRun: boolean | undefined;
  for (const key of DRY_RUN_ANNOTATIONS) {
    const value = annotations[key];
    if (value === undefined || typeof value !== 'string') continue;
    if (value !== 'true' && value !== 'false') {
      c.problem(['metadata', 'annotations', key], `${quoteValue(value)} is not valid; expected "true" or "false"`);
    } else if (dryRun !== undefined && dryRun !== (value === 'true')) {
      c.problem(['metadata', 'annotations', key], `says ${value} but ${DRY_RUN_ANNOTATIONS[0]} says ${String(dryRun)}; expected one value`);
    } else {
      dryRun = value === 'true';
    }
  }
  return dryRun ?? false;
}

/** Checks each string of a list field; reports empty strings (Istio: "empty value not allowed"). */
function eachString(c: Checker, list: unknown, path: Segment[], check?: (value: string, at: Segment[]) => void): string[] {
  const out: string[] = [];
  asList(list).forEach((item, i) => {
    if (typeof item !== 'string') return;
    if (item === '') c.problem([...path, i], 'is empty; expected a value');
    else check?.(item, [...path, i]);
    out.push(item);
  });
  return out;
}

function checkPattern(c: Checker, what: string) {
  return (value: string, at: Segment[]): void => {
    const problem = stringPatternProblem(value);
    if (problem !== undefined) c.problem(at, `${quoteValue(value)} ${problem}; expected ${what}`);
  };
}

function checkPrincipal(c: Checker) {
  const pattern = checkPattern(c, 'a principal such as cluster.local/ns/default/sa/web, "*", or a prefix*/ *suffix');
  return (value: string, at: Segment[]): void => {
    // Istio principals omit the scheme; with it, the value could never match (ztunnel strips spiffe:// first).
    if (value.startsWith('spiffe://')) {
      c.problem(
        at,
        `${quoteValue(value)} includes the spiffe:// scheme; expected the principal without it, e.g. ${quoteValue(value.slice('spiffe://'.length))}`,
      );
    } else {
      pattern(value, at);
    }
  };
}

function checkIpBlock(c: Checker) {
  return (value: string, at: Segment[]): void => {
    // The policy keeps the text as written (as Istio does); PolicySet parses it the same way when it compiles.
    const network = parseIpNetwork(value);
    if ('problem' in network) {
      c.problem(at, `${quoteValue(value)} ${network.problem}; expected an IP address or CIDR, e.g. 10.0.0.0/8 or fd00::/8`);
      return;
    }
    const warning = ipNetworkWarning(network);
    if (warning !== undefined) c.warn(at, `${quoteValue(value)} ${warning}`);
  };
}

function checkPorts(c: Checker, list: unknown, path: Segment[]): number[] {
  const out: number[] = [];
  asList(list).forEach((item, i) => {
    if (typeof item !== 'string' && typeof item !== 'number') return; // the schema reports the type
    const port = parsePort(item);
    if (port === undefined) c.problem([...path, i], `${quoteValue(item)} is not a port; expected ${PORT_TEXT}`);
    else out.push(port);
  });
  return out;
}

const SERVICE_ACCOUNT = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?\/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** `namespace/name`, or a bare name completed with the policy's namespace (Istio's ambient translation does the same). */
function checkServiceAccounts(c: Checker, list: unknown, path: Segment[], namespace: string): string[] {
  return eachString(c, list, path, (value, at) => {
    if (!SERVICE_ACCOUNT.test(value)) c.problem(at, `${quoteValue(value)} is not valid; expected NAMESPACE/SERVICE-ACCOUNT, e.g. shop/web`);
  }).map((value) => (value.includes('/') ? value : `${namespace}/${value}`));
}

function checkSource(c: Checker, raw: Record<string, unknown>, at: Segment[], namespace: string): PolicySource {
  const source: PolicySource = {};
  const set = (field: keyof PolicySource, values: string[]): void => {
    if (has(raw, field) && values.length > 0) source[field] = values;
  };
  for (const field of ['principals', 'notPrincipals'] as const) set(field, eachString(c, raw[field], [...at, field], checkPrincipal(c)));
  for (const field of ['namespaces', 'notNamespaces'] as const) {
    set(field, eachString(c, raw[field], [...at, field], checkPattern(c, 'a namespace name, "*", or a prefix*/ *suffix')));
  }
  for (const field of ['serviceAccounts', 'notServiceAccounts'] as const)
    set(field, checkServiceAccounts(c, raw[field], [...at, field], namespace));
  for (const field of ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'] as const) {
    set(field, eachString(c, raw[field], [...at, field], checkIpBlock(c)));
  }
  for (const field of ['requestPrincipals', 'notRequestPrincipals'] as const) {
    set(field, eachString(c, raw[field], [...at, field], checkPattern(c, 'ISSUER/SUBJECT, "*", or a prefix*/ *suffix')));
  }
  if (SOURCE_FIELDS.every((f) => asList(raw[f]).length === 0)) {
    c.problem(at, `is empty; expected at least one of: ${SOURCE_FIELDS.join(', ')}`);
  }
  // Istio: "cannot set serviceAccounts with namespaces or principals".
  const identity = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces'].some((f) => asList(raw[f]).length > 0);
  if (identity && (asList(raw.serviceAccounts).length > 0 || asList(raw.notServiceAccounts).length > 0)) {
    c.problem(
      [...at, asList(raw.serviceAccounts).length > 0 ? 'serviceAccounts' : 'notServiceAccounts'],
      'cannot be combined with principals or namespaces in one source (as in Istio); expected a separate from entry',
    );
  }
  return source;
}

function checkOperation(c: Checker, raw: Record<string, unknown>, at: Segment[]): PolicyOperation {
  const operation: PolicyOperation = {};
  for (const field of ['ports', 'notPorts'] as const) {
    const ports = checkPorts(c, raw[field], [...at, field]);
    if (ports.length > 0) operation[field] = ports;
  }
  for (const field of ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'] as const) {
    const values = eachString(c, raw[field], [...at, field]);
    if (values.length > 0) operation[field] = values;
  }
  if (OPERATION_FIELDS.every((f) => asList(raw[f]).length === 0)) {
    c.problem(at, `is empty; expected at least one of: ${OPERATION_FIELDS.join(', ')}`);
  }
  return operation;
}

/** `when` keys enforced on a TCP connection (Istio ambient's l4WhenAttributes). */
export const L4_CONDITION_KEYS = ['source.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port'] as const;
const L7_CONDITION_KEYS = ['remote.ip', 'request.auth.principal', 'request.auth.audiences', 'request.auth.presenter', 'connection.sni'];
const L7_CONDITION_MAP_KEYS = ['request.headers', 'request.auth.claims', 'experimental.envoy.filters.'];
/** Keys Istio itself rejects, with its reason. */
const REJECTED_CONDITION_KEYS: Record<string, string> = {
  'destination.namespace': 'is replaced by metadata.namespace in Istio security.istio.io/v1',
  'destination.name': 'is only supported in Istio v1alpha1',
  'destination.user': 'is only supported in Istio v1alpha1',
};

/** 'l4', 'l7', or why the key is rejected. */
export function conditionKeyKind(key: string): 'l4' | 'l7' | { problem: string } {
  if ((L4_CONDITION_KEYS as readonly string[]).includes(key)) return 'l4';
  if (L7_CONDITION_KEYS.includes(key)) return 'l7';
  const mapPrefix = L7_CONDITION_MAP_KEYS.find((prefix) => key.startsWith(prefix));
  if (mapPrefix !== undefined) {
    // Istio's validateMapKey: NAME[KEY] with a non-empty KEY.
    const open = key.indexOf('[');
    return key.endsWith(']') && open > 0 && open < key.length - 2
      ? 'l7'
      : { problem: `has no [NAME] part; expected e.g. ${mapPrefix.replace(/\.$/, '')}[NAME]` };
  }
  if (key.startsWith('destination.labels')) return { problem: 'is replaced by spec.selector in Istio security.istio.io/v1' };
  const rejected = REJECTED_CONDITION_KEYS[key];
  if (rejected !== undefined) return { problem: rejected };
  return {
    problem: `is not a known attribute; expected one of: ${[...L4_CONDITION_KEYS, ...L7_CONDITION_KEYS].join(', ')}, request.headers[NAME], request.auth.claims[NAME]`,
  };
}

function checkCondition(c: Checker, raw: Record<string, unknown>, at: Segment[]): PolicyCondition | undefined {
  const key = asString(raw.key);
  if (key === undefined) return undefined; // the schema reports it
  if (key === '') {
    c.problem([...at, 'key'], 'is empty; expected an attribute such as source.ip');
    return undefined;
  }
  const kind = conditionKeyKind(key);
  if (typeof kind === 'object') {
    c.problem([...at, 'key'], `${quoteValue(key)} ${kind.problem}`);
    return undefined;
  }
  const valueCheck = (value: string, where: Segment[]): void => {
    if (key === 'source.ip' || key === 'destination.ip' || key === 'remote.ip') checkIpBlock(c)(value, where);
    else if (key === 'destination.port' && parsePort(value) === undefined)
      c.problem(where, `${quoteValue(value)} is not a port; expected a port from 1 to 65535`);
    else if (key === 'source.principal') checkPrincipal(c)(value, where);
    else if (key === 'source.namespace') checkPattern(c, 'a namespace name, "*", or a prefix*/ *suffix')(value, where);
  };
  const values = eachString(c, raw.values, [...at, 'values'], valueCheck);
  const notValues = eachString(c, raw.notValues, [...at, 'notValues'], valueCheck);
  if (asList(raw.values).length === 0 && asList(raw.notValues).length === 0) {
    c.problem(at, `has neither values nor notValues for key ${key}; expected at least one of them`);
  }
  return { key, ...(values.length > 0 ? { values } : {}), ...(notValues.length > 0 ? { notValues } : {}) };
}

function checkRule(c: Checker, raw: Record<string, unknown>, at: Segment[], namespace: string): AuthorizationRule {
  const rule: AuthorizationRule = {};
  for (const part of ['from', 'to'] as const) {
    // Istio: "`from` must not be empty" — an empty list would silently mean "anyone".
    if (Array.isArray(raw[part]) && asList(raw[part]).length === 0) {
      c.problem(
        [...at, part],
        `is an empty list; expected at least one entry, or no ${part} at all to match any ${part === 'from' ? 'source' : 'operation'}`,
      );
    }
  }
  if (Array.isArray(raw.from)) {
    rule.from = asList(raw.from).map((item, i) =>
      checkSource(c, asMapping(asMapping(item).source), [...at, 'from', i, 'source'], namespace),
    );
  }
  if (Array.isArray(raw.to)) {
    rule.to = asList(raw.to).map((item, i) => checkOperation(c, asMapping(asMapping(item).operation), [...at, 'to', i, 'operation']));
  }
  if (Array.isArray(raw.when)) {
    rule.when = asList(raw.when).flatMap((item, i) => {
      const condition = checkCondition(c, asMapping(item), [...at, 'when', i]);
      return condition === undefined ? [] : [condition];
    });
  }
  if (rule.from?.length === 0) delete rule.from;
  if (rule.to?.length === 0) delete rule.to;
  if (rule.when?.length === 0) delete rule.when;
  return rule;
}

/**
 * The warnings for fields Ferry does not enforce yet: L7 (HTTP) attributes. Istio ambient's ztunnel does the same
 * at L4 (authorization.go, handleRule): an ALLOW rule with HTTP attributes is dropped (matches nothing); a DENY rule
 * is enforced without its HTTP attributes (denies more). AUDIT follows DENY (audits more). Works on the normalised
 * form, so the agent (PolicySet) reports exactly what validation reported.
 */
export function unenforcedFieldWarnings(policy: AuthorizationPolicy): string[] {
  const label = `AuthorizationPolicy ${policy.namespace}/${policy.name}`;
  const effect =
    policy.action === 'ALLOW'
      ? 'this ALLOW rule matches nothing (more restrictive than written)'
      : `this ${policy.action} rule is enforced on its L4 conditions alone (it ${policy.action === 'DENY' ? 'denies' : 'audits'} more than written)`;
  const message = `HTTP attributes are not enforced yet (Ferry authorizes TCP connections); ${effect}`;
  const warnings: string[] = [];
  policy.rules.forEach((rule, r) => {
    const at: Segment[] = ['spec', 'rules', r];
    rule.from?.forEach((source, i) => {
      for (const field of Object.keys(source)) {
        if (L7_SOURCE_FIELDS.has(field)) warnings.push(`${label}: ${formatFieldPath([...at, 'from', i, 'source', field])}: ${message}`);
      }
    });
    rule.to?.forEach((operation, i) => {
      for (const field of Object.keys(operation)) {
        if (L7_OPERATION_FIELDS.has(field)) warnings.push(`${label}: ${formatFieldPath([...at, 'to', i, 'operation', field])}: ${message}`);
      }
    });
    rule.when?.forEach((condition, i) => {
      if (conditionKeyKind(condition.key) === 'l7') {
        warnings.push(`${label}: ${formatFieldPath([...at, 'when', i, 'key'])}: ${condition.key}: ${message}`);
      }
    });
  });
  return warnings;
}

/** True when a rule contains an L7 field (see unenforcedFieldWarnings). */
export function isL7SourceField(field: string): boolean {
  return L7_SOURCE_FIELDS.has(field);
}
export function isL7OperationField(field: string): boolean {
  return L7_OPERATION_FIELDS.has(field);
}

// ---------------------------------------------------------------------------------------------------------------
// Entry points.

/** Checks one AuthorizationPolicy document ({apiVersion, kind, metadata, spec}) and normalises it. */
export function validateAuthorizationPolicy(doc: unknown, options: ValidateOptions = {}): PolicyValidation<AuthorizationPolicy> {
  const { c, common } = readCommon('AuthorizationPolicy', doc, options.origin ?? 'manifest');
  const { spec, namespace, name } = common;
  checkFerryAnnotations(c, common.annotations, ['ferry.dev/dry-run']);
  const dryRun = readDryRun(c, common.annotations);

  for (const field of ['targetRef', 'targetRefs'] as const) {
    if (has(spec, field)) {
      c.problem(
        ['spec', field],
        'is not supported: Ferry attaches policies to workloads (targetRef attaches them to a Gateway, Service or waypoint); expected spec.selector',
      );
    }
  }
  const action = (asString(spec.action) ?? 'ALLOW') as AuthorizationAction | 'CUSTOM';
  if (action === 'CUSTOM') {
    c.problem(['spec', 'action'], 'CUSTOM is not supported (Ferry has no external authorization providers); expected ALLOW, DENY or AUDIT');
  } else if (has(spec, 'provider')) {
    c.problem(['spec', 'provider'], `is only used with action CUSTOM, which is not supported; expected no provider with action ${action}`);
  }
  const rules = asList(spec.rules).map((rule, i) => checkRule(c, asMapping(rule), ['spec', 'rules', i], namespace));
  if (action === 'DENY' && rules.length === 0) {
    // Istio rejects this outright; accepting it with a warning keeps "allow-nothing"-style files usable.
    c.warn(['spec', 'rules'], 'a DENY policy without rules never matches, so it has no effect; add `rules: [{}]` to deny every connection');
  }
  if (c.problems.length > 0) return { problems: c.problems, warnings: c.warnings };
  const value: AuthorizationPolicy = { namespace, name, action: action as AuthorizationAction, dryRun, rules };
  if (common.selector !== undefined) value.selector = { ...common.selector };
  return { value, problems: [], warnings: [...c.warnings, ...unenforcedFieldWarnings(value)] };
}

/** Checks one PeerAuthentication document and normalises it. */
export function validatePeerAuthentication(doc: unknown, options: ValidateOptions = {}): PolicyValidation<PeerAuthentication> {
  const rootNamespace = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  const { c, common } = readCommon('PeerAuthentication', doc, options.origin ?? 'manifest');
  const { spec, namespace, name, selector } = common;
  checkFerryAnnotations(c, common.annotations, []);
  if (has(common.annotations, DRY_RUN_ANNOTATIONS[0])) {
    c.problem(
      ['metadata', 'annotations', DRY_RUN_ANNOTATIONS[0]],
      'dry-run applies to AuthorizationPolicy only (as in Istio); expected no dry-run annotation on a PeerAuthentication',
    );
  }
  const mode = (asString(asMapping(spec.mtls).mode) ?? 'UNSET') as MtlsMode;
  const portLevelMtls: { port: number; mode: MtlsMode }[] = [];
  if (has(spec, 'portLevelMtls')) {
    const ports = asMapping(spec.portLevelMtls);
    // Istio: "mesh/namespace peer authentication cannot have port level mTLS".
    if (selector === undefined) {
      c.problem(
        ['spec', 'portLevelMtls'],
        'is only allowed together with spec.selector.matchLabels (as in Istio, a namespace-wide or mesh-wide PeerAuthentication cannot set port-level mTLS); expected a selector, or no portLevelMtls',
      );
    }
    if (isMapping(spec.portLevelMtls) && Object.keys(ports).length === 0) {
      c.problem(['spec', 'portLevelMtls'], 'is empty; expected at least one PORT: {mode: …} entry');
    }
    for (const [key, setting] of Object.entries(ports)) {
      const port = /^[0-9]+$/.test(key) ? parsePort(key) : undefined;
      if (/^[0-9]+$/.test(key) && port === undefined)
        c.problem(['spec', 'portLevelMtls', key], `${key} is out of range; expected a port from 1 to 65535`);
      if (port !== undefined) portLevelMtls.push({ port, mode: (asString(asMapping(setting).mode) ?? 'UNSET') as MtlsMode });
    }
  }
  if (namespace === rootNamespace && selector !== undefined) {
    // ComposePeerAuthentication ignores workload-level policies in the root namespace.
    c.warn(
      ['spec', 'selector'],
      `has no effect: as in Istio, a PeerAuthentication with a selector in the root namespace ${rootNamespace} is ignored`,
    );
  }
  if (c.problems.length > 0) return { problems: c.problems, warnings: c.warnings };
  const value: PeerAuthentication = { namespace, name, mode, portLevelMtls: portLevelMtls.sort((a, b) => a.port - b.port) };
  if (selector !== undefined) value.selector = { ...selector };
  return { value, problems: [], warnings: c.warnings };
}

/** Field paths in policy messages, as the rest of Ferry writes them: `spec.rules[0].from[1].source.ipBlocks[2]`. */
export const formatPolicyPath = formatFieldPath;
