// Ferry's rules for turning Kubernetes objects into mesh membership: which pods are enrolled (namespace opt-in,
// pod opt-out), what they exclude from capture, and which ferry.dev/ annotations exist. One definition, used by
// the controller on objects from the API server and by the sandbox's YAML loader on files.
import { formatIpNetwork, ipNetworkWarning, parseIpNetwork } from '../net';
import { quoteValue, type FieldPathSegment } from '../errors';

export const MESH_ANNOTATION = 'ferry.dev/mesh';
export const EXCLUDE_OUTBOUND_PORTS_ANNOTATION = 'ferry.dev/exclude-outbound-ports';
export const EXCLUDE_OUTBOUND_CIDRS_ANNOTATION = 'ferry.dev/exclude-outbound-cidrs';
/** Sized to the BPF maps that hold per-pod exclusions. */
export const EXCLUDE_OUTBOUND_PORTS_MAX = 8;
export const EXCLUDE_OUTBOUND_CIDRS_MAX = 4;
export const FERRY_ANNOTATION_PREFIX = 'ferry.dev/';

export const DEFAULT_NAMESPACE = 'default';
export const DEFAULT_SERVICE_ACCOUNT = 'default';

/** The ferry.dev/ annotations each kind may carry. */
export const NAMESPACE_ANNOTATIONS: readonly string[] = [MESH_ANNOTATION];
export const POD_ANNOTATIONS: readonly string[] = [MESH_ANNOTATION, EXCLUDE_OUTBOUND_PORTS_ANNOTATION, EXCLUDE_OUTBOUND_CIDRS_ANNOTATION];

/** One thing wrong with an object, its path from the object's root. */
export interface ObjectProblem {
  path: FieldPathSegment[];
  message: string;
}

export interface Checked<T> {
  value: T;
  problems: ObjectProblem[];
  /** Accepted, but changed from what was written; the caller adds where. */
  warnings: string[];
}

const annotationPath = (key: string): FieldPathSegment[] => ['metadata', 'annotations', key];

/** `ferry.dev/*` annotations not `allowed` on `kind`, and a mesh annotation that is neither enabled nor disabled. */
export function ferryAnnotationProblems(kind: string, annotations: Record<string, unknown>, allowed: readonly string[]): ObjectProblem[] {
  const problems: ObjectProblem[] = [];
  for (const key of Object.keys(annotations)) {
    if (!key.startsWith(FERRY_ANNOTATION_PREFIX) || allowed.includes(key)) continue;
    const expected = allowed.length === 0 ? `no ferry.dev/ annotations on a ${kind}` : `one of: ${allowed.join(', ')}`;
    problems.push({ path: annotationPath(key), message: `unknown Ferry annotation; expected ${expected}` });
  }
  const mesh = annotations[MESH_ANNOTATION];
  if (allowed.includes(MESH_ANNOTATION) && typeof mesh === 'string' && mesh !== 'enabled' && mesh !== 'disabled') {
    problems.push({ path: annotationPath(MESH_ANNOTATION), message: `${quoteValue(mesh)} is not valid; expected enabled or disabled` });
  }
  return problems;
}

/**
 * Enrolled when the namespace says `ferry.dev/mesh: enabled` and the pod does not say `disabled`. A pod cannot
 * opt itself in: a namespace's owner decides, so a pod in an unenrolled namespace stays out whatever it claims.
 */
export function meshEnabledFor(
  namespaceAnnotations: Record<string, unknown> | undefined,
  podAnnotations: Record<string, unknown> | undefined,
): boolean {
  return namespaceAnnotations?.[MESH_ANNOTATION] === 'enabled' && podAnnotations?.[MESH_ANNOTATION] !== 'disabled';
}

const isPort = (value: number): boolean => Number.isInteger(value) && value >= 1 && value <= 65535;

/** `ferry.dev/exclude-outbound-ports`: "5432,6379". */
export function parseExcludedPorts(text: string | undefined): Checked<number[]> {
  const result: Checked<number[]> = { value: [], problems: [], warnings: [] };
  if (text === undefined || text.trim() === '') return result;
  const path = annotationPath(EXCLUDE_OUTBOUND_PORTS_ANNOTATION);
  const expected = `expected a comma-separated list of at most ${EXCLUDE_OUTBOUND_PORTS_MAX} ports, each from 1 to 65535, e.g. "5432,6379"`;
  const items = text.split(',').map((item) => item.trim());
  for (const item of items) {
    if (!/^[0-9]{1,5}$/.test(item) || !isPort(Number(item)))
      result.problems.push({ path, message: `${quoteValue(item)} is not a port; ${expected}` });
    else if (result.value.includes(Number(item))) result.problems.push({ path, message: `port ${item} is listed twice; ${expected}` });
    else result.value.push(Number(item));
  }
  if (items.length > EXCLUDE_OUTBOUND_PORTS_MAX) result.problems.push({ path, message: `lists ${items.length} ports; ${expected}` });
  return result;
}

/**
 * `ferry.dev/exclude-outbound-cidrs`, as the BPF table will hold them: host bits cleared (with a warning, as for
 * policies' ipBlocks), IPv4-mapped IPv6 written as IPv4, so that the connect hooks, which see v4-mapped
 * destinations as IPv4, match what the user meant.
 */
export function parseExcludedCidrs(text: string | undefined): Checked<string[]> {
  const result: Checked<string[]> = { value: [], problems: [], warnings: [] };
  if (text === undefined || text.trim() === '') return result;
  const path = annotationPath(EXCLUDE_OUTBOUND_CIDRS_ANNOTATION);
  const expected = `expected a comma-separated list of at most ${EXCLUDE_OUTBOUND_CIDRS_MAX} IPv4 or IPv6 networks, e.g. "10.0.0.0/8,fd00::/8"`;
  const items = text.split(',').map((item) => item.trim());
  for (const item of items) {
    const network = parseIpNetwork(item);
    if ('problem' in network) {
      result.problems.push({ path, message: `${quoteValue(item)} ${network.problem}; ${expected}` });
      continue;
    }
    if (!network.prefixWritten) {
      result.problems.push({ path, message: `${quoteValue(item)} has no prefix length; ${expected}` });
      continue;
    }
    const warning = ipNetworkWarning(network);
    if (warning !== undefined) result.warnings.push(`${quoteValue(item)} ${warning}`);
    const cidr = formatIpNetwork(network);
    if (!result.value.includes(cidr)) result.value.push(cidr);
    else
      result.problems.push({
        path,
        message: `${quoteValue(item)} ${cidr === item ? 'is listed twice' : `is ${cidr}, which is already listed`}; ${expected}`,
      });
  }
  if (items.length > EXCLUDE_OUTBOUND_CIDRS_MAX) result.problems.push({ path, message: `lists ${items.length} networks; ${expected}` });
  return result;
}
