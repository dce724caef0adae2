// Checks one resource of the model before anyone applies it: its shape (the model's JSON schema), the values a
// schema cannot check (addresses, CIDRs, names), and for policies that they compile. Each problem names its field.
import Ajv, { type ValidateFunction } from 'ajv';
import { explainAjvError, formatFieldPath } from '../errors';
import { parseIp, parseIpNetwork } from '../net';
import {
  AUTHORIZATION_POLICY_JSON_SCHEMA,
  DEFAULT_ROOT_NAMESPACE,
  PEER_AUTHENTICATION_JSON_SCHEMA,
  PolicyError,
  PolicySet,
  type AuthorizationPolicy,
  type PeerAuthentication,
} from '../policy';
import type { ResourceKind, ResourceTypes } from './delta';
import type { Service, Workload } from './model';
import { SERVICE_JSON_SCHEMA, WORKLOAD_JSON_SCHEMA } from './model-schema';

/** One thing wrong with a resource: `field` is a path inside it ("ports[0].endpoints[2].ip"), '' for the whole. */
export interface ResourceProblem {
  field: string;
  message: string;
}

// `verbose` puts the failing schema node on each error, which is where the "expected …" text lives.
const ajv = new Ajv({ allErrors: true, verbose: true, allowUnionTypes: true });
const validators: { [K in ResourceKind]: ValidateFunction } = {
  workload: ajv.compile(WORKLOAD_JSON_SCHEMA),
  service: ajv.compile(SERVICE_JSON_SCHEMA),
  authorizationPolicy: ajv.compile(AUTHORIZATION_POLICY_JSON_SCHEMA),
  peerAuthentication: ajv.compile(PEER_AUTHENTICATION_JSON_SCHEMA),
};

/**
 * Every problem of `value` as a resource of `kind`; empty when it may be applied. `rootNamespace` is the one
 * the agent's policies use (mesh-wide policies compile differently there).
 */
export function validateResource<K extends ResourceKind>(
  kind: K,
  value: unknown,
  options: { rootNamespace?: string } = {},
): ResourceProblem[] {
  const validate = validators[kind];
  if (!validate(value)) {
    const problems: ResourceProblem[] = [];
    for (const error of validate.errors ?? []) {
      const explained = explainAjvError(error, value);
      if (explained) problems.push({ field: formatFieldPath(explained.path), message: explained.message });
    }
    return problems.length > 0 ? problems : [{ field: '', message: 'does not have the expected shape' }];
  }
  const typed = value as ResourceTypes[K];
  switch (kind) {
    case 'workload':
      return workloadProblems(typed as Workload);
    case 'service':
      return serviceProblems(typed as Service);
    default:
      return policyProblems(kind, typed as AuthorizationPolicy | PeerAuthentication, options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE);
  }
}

function nonEmpty(problems: ResourceProblem[], field: string, value: string): void {
  if (value === '') problems.push({ field, message: 'is empty' });
}

function address(problems: ResourceProblem[], field: string, value: string): void {
  if (parseIp(value) === undefined) problems.push({ field, message: `${JSON.stringify(value)} is not an IPv4 or IPv6 address` });
}

function workloadProblems(w: Workload): ResourceProblem[] {
  const problems: ResourceProblem[] = [];
  // The uid is the Pod's metadata.uid from the API server (a snapshot file uses "namespace/name"): any
  // non-empty key, so a pod recreated under the same name is a new workload.
  for (const field of ['uid', 'namespace', 'name', 'node', 'serviceAccount'] as const) nonEmpty(problems, field, w[field]);
  for (const [i, ip] of w.ips.entries()) address(problems, `ips[${i}]`, ip);
  w.excludeOutboundCidrs.forEach((cidr, i) => {
    const parsed = parseIpNetwork(cidr);
    if ('problem' in parsed) problems.push({ field: `excludeOutboundCidrs[${i}]`, message: `${JSON.stringify(cidr)} ${parsed.problem}` });
  });
  return problems;
}

function serviceProblems(s: Service): ResourceProblem[] {
  const problems: ResourceProblem[] = [];
  nonEmpty(problems, 'namespace', s.namespace);
  nonEmpty(problems, 'name', s.name);
  for (const [i, vip] of s.vips.entries()) address(problems, `vips[${i}]`, vip);
  for (const [i, port] of s.ports.entries()) {
    for (const [j, endpoint] of port.endpoints.entries()) address(problems, `ports[${i}].endpoints[${j}].ip`, endpoint.ip);
  }
  return problems;
}

function policyProblems(kind: ResourceKind, policy: AuthorizationPolicy | PeerAuthentication, rootNamespace: string): ResourceProblem[] {
  const problems: ResourceProblem[] = [];
  nonEmpty(problems, 'namespace', policy.namespace);
  nonEmpty(problems, 'name', policy.name);
  try {
    // Values the schema cannot check (CIDRs, condition keys): compiling the policy alone is the check.
    if (kind === 'authorizationPolicy') new PolicySet([policy as AuthorizationPolicy], [], rootNamespace);
    else new PolicySet([], [policy as PeerAuthentication], rootNamespace);
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    const listed = err.problems.length > 0 ? err.problems.map((p) => p.message) : [err.message];
    for (const message of listed) {
      // "AuthorizationPolicy ns/name: spec.rules[0]: what" → field spec.rules[0].
      const located = /^\S+ [^:\s]+: ([^:\s]+): ([\s\S]*)$/.exec(message);
      problems.push(located ? { field: located[1], message: located[2] } : { field: '', message });
    }
  }
  return problems;
}
