// Answers the two policy questions of the data path: which mTLS mode a workload's port requires (PeerAuthentication)
// and whether a connection is allowed (AuthorizationPolicy). Policies are compiled to predicates once, in the
// constructor; per-connection evaluation only runs the predicates of the policies that apply to the workload.
import { createHash } from 'node:crypto';
import { parseIp, parseIpNetwork, type IpAddress, type IpNetwork } from '../net';
import { PolicyError, type PolicyProblem } from './errors';
import { ipBlocksMatcher, parsePort, stringMatcher } from './match';
import {
  DEFAULT_ROOT_NAMESPACE,
  type AuthorizationAction,
  type AuthorizationPolicy,
  type AuthorizationRule,
  type MtlsMode,
  type PeerAuthentication,
  type PolicyCondition,
  type PolicyOperation,
  type PolicySource,
} from './model';
import { conditionKeyKind, isL7OperationField, isL7SourceField, unenforcedFieldWarnings } from './validate';

/** What policies need to know about the destination workload. */
export interface PolicyWorkload {
  namespace: string;
  labels: Record<string, string>;
}

/** What the proxy knows about one connection. No principal: the peer is plaintext (not authenticated). */
export interface ConnectionAttributes {
  source: {
    /** SPIFFE identity, with or without the scheme: spiffe://cluster.local/ns/shop/sa/web or cluster.local/ns/shop/sa/web. */
    principal?: string;
    /** The peer's namespace; derived from the principal when not given. */
    namespace?: string;
    ip: string;
  };
  destination: { ip: string; port: number };
}

export interface DryRunResult {
  /** namespace/name */
  policy: string;
  action: AuthorizationAction;
  matched: boolean;
  /** The decision had this policy been enforced too (absent for AUDIT, which never decides). */
  wouldAllow?: boolean;
}

export interface AuthorizationDecision {
  allow: boolean;
  /** The policy that decided (namespace/name): the matching DENY or ALLOW policy. */
  policy?: string;
  reason: string;
  dryRun: DryRunResult[];
  /** AUDIT policies that matched (namespace/name). */
  audited: string[];
}

export type EffectiveMtlsMode = 'STRICT' | 'PERMISSIVE';

export interface MtlsDecision {
  /**
   * What the inbound side enforces: STRICT rejects plaintext; PERMISSIVE admits it as unauthenticated. DISABLE is
   * enforced as PERMISSIVE: Ferry's HBONE listener is the only mTLS path and it keeps accepting mTLS, so the one
   * thing DISABLE could change — admitting plaintext — is what PERMISSIVE already does.
   */
  mode: EffectiveMtlsMode;
  /** The mode as written after inheritance (UNSET resolved). */
  configured: Exclude<MtlsMode, 'UNSET'>;
  /** Where it came from: a port-level setting, the workload's, namespace's or mesh's policy, or the default. */
  level: 'port' | 'workload' | 'namespace' | 'mesh' | 'default';
  /** The policy that set it (namespace/name); absent for the default. */
  policy?: string;
}

/** A stable fingerprint of the policy inputs: equal fingerprints, equal decisions. */
export function policyFingerprint(
  authorizationPolicies: readonly AuthorizationPolicy[],
  peerAuthentications: readonly PeerAuthentication[],
  rootNamespace: string = DEFAULT_ROOT_NAMESPACE,
): string {
  return createHash('sha256')
    .update(JSON.stringify([rootNamespace, authorizationPolicies, peerAuthentications]))
    .digest('hex')
    .slice(0, 32);
}

// ---------------------------------------------------------------------------------------------------------------
// The connection as predicates see it: identity fields prepared once, addresses parsed only when a policy asks.

const IDENTITY = /^([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;

class Peer {
  readonly principal: string | undefined;
  readonly namespace: string | undefined;
  /** `namespace/serviceaccount` from the principal, for serviceAccounts. */
  readonly serviceAccount: string | undefined;
  readonly port: number;
  private source: IpAddress | null | undefined;
  private destination: IpAddress | null | undefined;

  constructor(private readonly attrs: ConnectionAttributes) {
    const raw = attrs.source.principal;
    // Istio principals are written without the scheme (ztunnel strips spiffe:// before matching).
    const principal = raw === undefined || raw === '' ? undefined : raw.startsWith('spiffe://') ? raw.slice('spiffe://'.length) : raw;
    const identity = principal === undefined ? null : IDENTITY.exec(principal);
    this.principal = principal;
    this.namespace = attrs.source.namespace || (identity?.[2] ?? undefined);
    this.serviceAccount = identity ? `${identity[2]}/${identity[3]}` : undefined;
    this.port = attrs.destination.port;
  }

  get sourceIp(): IpAddress | undefined {
    if (this.source === undefined) this.source = parseIp(this.attrs.source.ip) ?? null;
    return this.source ?? undefined;
  }

  get destinationIp(): IpAddress | undefined {
    if (this.destination === undefined) this.destination = parseIp(this.attrs.destination.ip) ?? null;
    return this.destination ?? undefined;
  }
}

type Predicate = (peer: Peer) => boolean;
const always: Predicate = () => true;
const never: Predicate = () => false;

function allOf(predicates: Predicate[]): Predicate {
  if (predicates.length === 0) return always;
  if (predicates.length === 1) return predicates[0] as Predicate;
  return (peer) => {
    for (const p of predicates) if (!p(peer)) return false;
    return true;
  };
}

function anyOf(predicates: Predicate[]): Predicate {
  if (predicates.length === 0) return never;
  if (predicates.length === 1) return predicates[0] as Predicate;
  return (peer) => {
    for (const p of predicates) if (p(peer)) return true;
    return false;
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Compilation. Istio semantics (AuthorizationPolicy reference; ztunnel rbac.rs): rules are ORed; within a rule
// from, to and when are ANDed; entries of a from or to list are ORed; fields of one source or operation are
// ANDed; values of a field are ORed; a not* field matches when none of its values does. An absent principal or
// namespace (plaintext peer) matches no value — not even "*" — so `principals` never matches plaintext and
// `notPrincipals`/`notNamespaces` always do, exactly as ztunnel's matches_internal does with its empty identity.

class Compiler {
  readonly problems: PolicyProblem[] = [];
  private where = '';

  constructor(private readonly policy: AuthorizationPolicy) {}

  private fail(message: string): Predicate {
    this.problems.push({
      path: [],
      message: `AuthorizationPolicy ${this.policy.namespace}/${this.policy.name}: ${this.where}: ${message}`,
    });
    return never;
  }

  private strings(get: (peer: Peer) => string | undefined, values: string[]): Predicate {
    const match = stringMatcher(values);
    return (peer) => match(get(peer));
  }

  private ips(get: (peer: Peer) => IpAddress | undefined, values: string[]): Predicate {
    const blocks: IpNetwork[] = [];
    for (const value of values) {
      const parsed = parseIpNetwork(value);
      if ('problem' in parsed) return this.fail(`${JSON.stringify(value)} ${parsed.problem}`);
      blocks.push(parsed);
    }
    const match = ipBlocksMatcher(blocks);
    return (peer) => match(get(peer));
  }

  private ports(values: readonly (number | string)[]): Predicate {
    const set = new Set<number>();
    for (const value of values) {
      const port = parsePort(value);
      if (port === undefined) return this.fail(`${JSON.stringify(value)} is not a port`);
      set.add(port);
    }
    return (peer) => set.has(peer.port);
  }

  /** A field and its not* form: (any positive value matches) and (no negative value matches). */
  private field(out: Predicate[], positive: Predicate | undefined, negative: Predicate | undefined): void {
    if (positive !== undefined) out.push(positive);
    if (negative !== undefined) out.push((peer) => !negative(peer));
  }

  private source(s: PolicySource): Predicate {
    const checks: Predicate[] = [];
    const str = (get: (peer: Peer) => string | undefined, values: string[] | undefined) => (values ? this.strings(get, values) : undefined);
    const ip = (values: string[] | undefined) => (values ? this.ips((peer) => peer.sourceIp, values) : undefined);
    const sa = (values: string[] | undefined): Predicate | undefined => {
      if (!values) return undefined;
      const set = new Set(values);
      return (peer) => peer.serviceAccount !== undefined && set.has(peer.serviceAccount);
    };
    this.field(
      checks,
      str((p) => p.principal, s.principals),
      str((p) => p.principal, s.notPrincipals),
    );
    this.field(
      checks,
      str((p) => p.namespace, s.namespaces),
      str((p) => p.namespace, s.notNamespaces),
    );
    this.field(checks, sa(s.serviceAccounts), sa(s.notServiceAccounts));
    this.field(checks, ip(s.ipBlocks), ip(s.notIpBlocks));
    // requestPrincipals, remoteIpBlocks and their not* forms are L7: left out (see compileRule).
    return allOf(checks);
  }

  private operation(o: PolicyOperation): Predicate {
    const checks: Predicate[] = [];
    this.field(checks, o.ports ? this.ports(o.ports) : undefined, o.notPorts ? this.ports(o.notPorts) : undefined);
    // hosts, methods, paths and their not* forms are L7: left out (see compileRule).
    return allOf(checks);
  }

  private condition(c: PolicyCondition): Predicate {
    const build = (values: string[] | undefined): Predicate | undefined => {
      if (!values) return undefined;
      switch (c.key) {
        case 'source.ip':
          return this.ips((peer) => peer.sourceIp, values);
        case 'destination.ip':
          return this.ips((peer) => peer.destinationIp, values);
        case 'destination.port':
          return this.ports(values);
        case 'source.principal':
          return this.strings((peer) => peer.principal, values);
        case 'source.namespace':
          return this.strings((peer) => peer.namespace, values);
        default:
          return this.fail(`when key ${JSON.stringify(c.key)} has no L4 matcher`);
      }
    };
    const kind = conditionKeyKind(c.key);
    if (typeof kind === 'object') return this.fail(`when key ${JSON.stringify(c.key)} ${kind.problem}`);
    if (kind === 'l7') return always; // in a DENY or AUDIT rule: treated as matching (see rule())
    const checks: Predicate[] = [];
    this.field(checks, build(c.values), build(c.notValues));
    return allOf(checks);
  }

  /**
   * One rule. L7 attributes are not enforced yet, as in Istio ambient's ztunnel: an ALLOW rule that has any
   * never matches (allowing less than written); in a DENY or AUDIT rule they are treated as matching, so the rule
   * stands on its L4 conditions (denying or auditing more than written). unenforcedFieldWarnings names them.
   */
  rule(rule: AuthorizationRule, index: number): Predicate {
    const l7 =
      (rule.from ?? []).some((s) => Object.keys(s).some(isL7SourceField)) ||
      (rule.to ?? []).some((o) => Object.keys(o).some(isL7OperationField)) ||
      (rule.when ?? []).some((c) => conditionKeyKind(c.key) === 'l7');
    const parts: Predicate[] = [];
    this.where = `spec.rules[${index}]`;
    if (rule.from) parts.push(anyOf(rule.from.map((s) => this.source(s))));
    if (rule.to) parts.push(anyOf(rule.to.map((o) => this.operation(o))));
    for (const c of rule.when ?? []) parts.push(this.condition(c));
    if (l7 && this.policy.action === 'ALLOW') return never;
    return allOf(parts);
  }

  compile(): Predicate {
    // No rules: ALLOW matches nothing (Istio's allow-nothing), DENY never matches; `rules: [{}]` matches all.
    return anyOf(this.policy.rules.map((r, i) => this.rule(r, i)));
  }
}

interface CompiledPolicy {
  id: string;
  action: AuthorizationAction;
  dryRun: boolean;
  selector: [string, string][];
  matches: Predicate;
}

interface Applicable {
  deny: CompiledPolicy[];
  allow: CompiledPolicy[];
  audit: CompiledPolicy[];
  dryRun: CompiledPolicy[];
}

const NONE: Applicable = { deny: [], allow: [], audit: [], dryRun: [] };

function selects(selector: readonly [string, string][], labels: Record<string, string>): boolean {
  for (const [key, value] of selector) {
    if (!Object.hasOwn(labels, key) || labels[key] !== value) return false;
  }
  return true;
}

const byName = <T extends { namespace: string; name: string }>(a: T, b: T): number =>
  a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;

/** Two selectors that some labels could satisfy together: no key asks for two different values. */
function overlap(a: Record<string, string>, b: Record<string, string>): boolean {
  return Object.entries(a).every(([key, value]) => !Object.hasOwn(b, key) || b[key] === value);
}

export class PolicySet {
  readonly authorizationPolicies: readonly AuthorizationPolicy[];
  readonly peerAuthentications: readonly PeerAuthentication[];
  readonly fingerprint: string;
  /** Everything enforced differently from what was written: L7 fields, conflicting or ignored PeerAuthentications. */
  readonly warnings: readonly string[];
  /** The PeerAuthentication part of `warnings` that only shows across objects (same-level conflicts). */
  readonly conflicts: readonly string[];

  /** Root-namespace AuthorizationPolicies (mesh-wide, selectors match in every namespace), then by namespace. */
  private readonly meshAuthz: CompiledPolicy[] = [];
  private readonly namespaceAuthz = new Map<string, CompiledPolicy[]>();
  /**
   * Per labels object: ClusterState replaces workloads rather than editing them, so a workload's labels object
   * identifies its label set for the lifetime of this PolicySet. A WeakMap lets replaced workloads go.
   */
  private readonly applicableCache = new WeakMap<object, { namespace: string; applicable: Applicable }>();

  private readonly meshPeer: PeerAuthentication | undefined;
  private readonly namespacePeer = new Map<string, PeerAuthentication>();
  private readonly workloadPeer = new Map<string, { policy: PeerAuthentication; selector: [string, string][] }[]>();

  /** Throws PolicyError when a policy cannot be compiled (policies straight from validate* always can). */
  constructor(
    authorizationPolicies: readonly AuthorizationPolicy[],
    peerAuthentications: readonly PeerAuthentication[],
    readonly rootNamespace: string = DEFAULT_ROOT_NAMESPACE,
  ) {
    this.authorizationPolicies = authorizationPolicies;
    this.peerAuthentications = peerAuthentications;
    this.fingerprint = policyFingerprint(authorizationPolicies, peerAuthentications, rootNamespace);
    const warnings: string[] = [];
    const problems: PolicyProblem[] = [];

    for (const policy of [...authorizationPolicies].sort(byName)) {
      const compiler = new Compiler(policy);
      const compiled: CompiledPolicy = {
        id: `${policy.namespace}/${policy.name}`,
        action: policy.action,
        dryRun: policy.dryRun,
        selector: Object.entries(policy.selector ?? {}),
        matches: compiler.compile(),
      };
      problems.push(...compiler.problems);
      warnings.push(...unenforcedFieldWarnings(policy));
      if (policy.namespace === rootNamespace) this.meshAuthz.push(compiled);
      else this.namespaceAuthz.set(policy.namespace, [...(this.namespaceAuthz.get(policy.namespace) ?? []), compiled]);
    }
    if (problems.length > 0) {
      throw new PolicyError(`cannot compile authorization policies:\n  ${problems.map((p) => p.message).join('\n  ')}`, problems);
    }

    // PeerAuthentication levels (Istio ComposePeerAuthentication): mesh = root namespace without selector,
    // namespace = elsewhere without selector, workload = with selector outside the root namespace. Istio picks the
    // oldest policy of a level; Ferry has no creation times and picks the first by name, with a warning.
    const conflicts: string[] = [];
    const id = (p: PeerAuthentication): string => `${p.namespace}/${p.name}`;
    let mesh: PeerAuthentication | undefined;
    for (const policy of [...peerAuthentications].sort(byName)) {
      if (policy.selector === undefined && policy.namespace === rootNamespace) {
        if (mesh === undefined) mesh = policy;
        else
          conflicts.push(
            `PeerAuthentication ${id(policy)}: another mesh-wide PeerAuthentication, ${id(mesh)}, is in force (the first by name; Istio would use the oldest); delete one of them`,
          );
      } else if (policy.selector === undefined) {
        const first = this.namespacePeer.get(policy.namespace);
        if (first === undefined) this.namespacePeer.set(policy.namespace, policy);
        else
          conflicts.push(
            `PeerAuthentication ${id(policy)}: another namespace-wide PeerAuthentication, ${id(first)}, is in force in namespace ${policy.namespace} (the first by name; Istio would use the oldest); delete one of them`,
          );
      } else if (policy.namespace === rootNamespace) {
        warnings.push(
          `PeerAuthentication ${id(policy)}: spec.selector: has no effect: as in Istio, a PeerAuthentication with a selector in the root namespace ${rootNamespace} is ignored`,
        );
      } else {
        const list = this.workloadPeer.get(policy.namespace) ?? [];
        const selector = policy.selector;
        const shadowing = list.find((other) => other.policy.selector !== undefined && overlap(other.policy.selector, selector));
        if (shadowing !== undefined) {
          conflicts.push(
            `PeerAuthentication ${id(policy)}: its selector can match the same workloads as ${id(shadowing.policy)}, which wins for them (the first by name; Istio would use the oldest); make the selectors disjoint`,
          );
        }
        list.push({ policy, selector: Object.entries(selector) });
        this.workloadPeer.set(policy.namespace, list);
      }
    }
    this.meshPeer = mesh;
    this.conflicts = conflicts;
    this.warnings = [...warnings, ...conflicts];
  }

  /** The AuthorizationPolicies that apply to `workload`, split by role. */
  private applicable(workload: PolicyWorkload): Applicable {
    if (this.authorizationPolicies.length === 0) return NONE;
    const cached = this.applicableCache.get(workload.labels);
    if (cached !== undefined && cached.namespace === workload.namespace) return cached.applicable;
    const applicable: Applicable = { deny: [], allow: [], audit: [], dryRun: [] };
    const local = workload.namespace === this.rootNamespace ? [] : (this.namespaceAuthz.get(workload.namespace) ?? []);
    for (const policy of [...this.meshAuthz, ...local]) {
      if (!selects(policy.selector, workload.labels)) continue;
      if (policy.dryRun) applicable.dryRun.push(policy);
      else if (policy.action === 'DENY') applicable.deny.push(policy);
      else if (policy.action === 'ALLOW') applicable.allow.push(policy);
      else applicable.audit.push(policy);
    }
    const result =
      applicable.deny.length + applicable.allow.length + applicable.audit.length + applicable.dryRun.length === 0 ? NONE : applicable;
    this.applicableCache.set(workload.labels, { namespace: workload.namespace, applicable: result });
    return result;
  }

  /**
   * Decides one connection to `workload`, in Istio's order: a matching DENY policy denies; with no ALLOW policy
   * the connection is allowed; a matching ALLOW policy allows; otherwise it is denied. AUDIT policies never decide,
   * they are listed in `audited` when they match. Dry-run policies (any action) are evaluated for `dryRun` only.
   * On the hot path: no allocation beyond the result when no policy applies.
   */
  authorize(workload: PolicyWorkload, attrs: ConnectionAttributes): AuthorizationDecision {
    const applicable = this.applicable(workload);
    if (applicable === NONE) return { allow: true, reason: 'no authorization policy applies', dryRun: [], audited: [] };
    const peer = new Peer(attrs);

    let deniedBy: CompiledPolicy | undefined;
    for (const policy of applicable.deny)
      if (policy.matches(peer)) {
        deniedBy = policy;
        break;
      }
    let allowedBy: CompiledPolicy | undefined;
    if (deniedBy === undefined)
      for (const policy of applicable.allow)
        if (policy.matches(peer)) {
          allowedBy = policy;
          break;
        }

    const decision: AuthorizationDecision =
      deniedBy !== undefined
        ? { allow: false, policy: deniedBy.id, reason: `denied by DENY policy ${deniedBy.id}`, dryRun: [], audited: [] }
        : applicable.allow.length === 0
          ? { allow: true, reason: 'no ALLOW policy applies', dryRun: [], audited: [] }
          : allowedBy !== undefined
            ? { allow: true, policy: allowedBy.id, reason: `allowed by ALLOW policy ${allowedBy.id}`, dryRun: [], audited: [] }
            : {
                allow: false,
                reason: `no ALLOW policy matched (${applicable.allow.map((p) => p.id).join(', ')} apply)`,
                dryRun: [],
                audited: [],
              };

    for (const policy of applicable.audit) if (policy.matches(peer)) decision.audited.push(policy.id);
    for (const policy of applicable.dryRun) {
      const matched = policy.matches(peer);
      const result: DryRunResult = { policy: policy.id, action: policy.action, matched };
      // "Had it been enforced too": a DENY that matches denies; an ALLOW joins the ALLOW set, so the connection is
      // allowed when nothing denied it and this or another ALLOW policy matched.
      if (policy.action === 'DENY') result.wouldAllow = matched ? false : decision.allow;
      else if (policy.action === 'ALLOW') result.wouldAllow = deniedBy === undefined && (matched || allowedBy !== undefined);
      decision.dryRun.push(result);
    }
    return decision;
  }

  /**
   * The mTLS mode for inbound connections to `port` of `workload` (Istio ComposePeerAuthentication): the
   * workload's policy (selector, in its namespace) over the namespace's (no selector) over the mesh's (root
   * namespace, no selector) over PERMISSIVE; UNSET inherits from the level above; a port-level setting of the
   * workload's policy wins for that port (UNSET there inherits the workload level).
   */
  peerAuthentication(workload: PolicyWorkload, port: number): MtlsDecision {
    let decision: MtlsDecision = { mode: 'PERMISSIVE', configured: 'PERMISSIVE', level: 'default' };
    const apply = (mode: MtlsMode, level: MtlsDecision['level'], policy: PeerAuthentication): void => {
      if (mode === 'UNSET') return;
      decision = {
        mode: mode === 'STRICT' ? 'STRICT' : 'PERMISSIVE',
        configured: mode,
        level,
        policy: `${policy.namespace}/${policy.name}`,
      };
    };
    if (this.meshPeer !== undefined) apply(this.meshPeer.mode, 'mesh', this.meshPeer);
    const namespacePolicy = this.namespacePeer.get(workload.namespace);
    if (namespacePolicy !== undefined) apply(namespacePolicy.mode, 'namespace', namespacePolicy);
    const workloadPolicy = this.workloadPeer.get(workload.namespace)?.find((p) => selects(p.selector, workload.labels))?.policy;
    if (workloadPolicy !== undefined) {
      apply(workloadPolicy.mode, 'workload', workloadPolicy);
      const portLevel = workloadPolicy.portLevelMtls.find((p) => p.port === port);
      if (portLevel !== undefined) apply(portLevel.mode, 'port', workloadPolicy);
    }
    return decision;
  }

  /** peerAuthentication(...).mode: what the inbound listener enforces. */
  mtlsMode(workload: PolicyWorkload, port: number): EffectiveMtlsMode {
    return this.peerAuthentication(workload, port).mode;
  }
}
