// SPIFFE IDs of Kubernetes workloads, `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`,
// and Istio's principal form of the same name (`<trust-domain>/ns/<ns>/sa/<sa>`).
import { IdentityError } from './errors';

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

export interface SpiffeId {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

const SCHEME = 'spiffe://';
// SPIFFE ID spec §2.1: trust domain names are lowercase letters, digits, '.', '-' and '_' only.
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
// SPIFFE ID spec §2.2: path segments are letters, digits, '.', '-' and '_' only (no percent-encoding).
const SEGMENT = /^[A-Za-z0-9._-]+$/;
// SPIFFE ID spec §2.1 and §2.3: at most 255 bytes of trust domain, 2048 bytes of URI.
const MAX_TRUST_DOMAIN = 255;
const MAX_URI = 2048;

function fail(subject: string, problem: string): never {
  throw new IdentityError('FERRY_ERR_IDENTITY_SPIFFE_ID', `${subject}: ${problem}`);
}

export function checkTrustDomain(trustDomain: string, subject = `trust domain "${trustDomain}"`): void {
  if (trustDomain === '') fail(subject, 'the trust domain is empty');
  if (trustDomain.length > MAX_TRUST_DOMAIN) fail(subject, `the trust domain is longer than ${MAX_TRUST_DOMAIN} characters`);
  if (trustDomain.includes('@')) fail(subject, 'the trust domain must not contain userinfo ("@")');
  if (trustDomain.includes(':')) fail(subject, 'the trust domain must not contain a port (":")');
  if (!TRUST_DOMAIN.test(trustDomain)) {
    fail(subject, `the trust domain "${trustDomain}" may only contain lowercase letters, digits, ".", "-" and "_"`);
  }
}

function checkSegment(value: string, field: 'namespace' | 'serviceAccount', subject: string): void {
  if (value === '') fail(subject, `${field} is empty`);
  // SPIFFE ID spec §2.2: "." and ".." segments are forbidden (they are relative path operators).
  if (value === '.' || value === '..') fail(subject, `${field} must not be "${value}"`);
  if (!SEGMENT.test(value)) fail(subject, `${field} "${value}" may only contain letters, digits, ".", "-" and "_"`);
}

function checkId(id: SpiffeId, subject: string): void {
  checkTrustDomain(id.trustDomain, subject);
  checkSegment(id.namespace, 'namespace', subject);
  checkSegment(id.serviceAccount, 'serviceAccount', subject);
}

/** `spiffe://<td>/ns/<ns>/sa/<sa>`; throws when a field would not make a valid SPIFFE ID. */
export function spiffeUri(id: SpiffeId): string {
  checkId(id, 'SPIFFE ID');
  return `${SCHEME}${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** Istio's principal form, `<td>/ns/<ns>/sa/<sa>` (what AuthorizationPolicy `principals` match). */
export function principalOf(id: SpiffeId): string {
  checkId(id, 'SPIFFE ID');
  return `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** `<td>/ns/<ns>/sa/<sa>` after the trust domain, split and checked; `subject` names the input in errors. */
function parsePath(trustDomain: string, path: string, subject: string): SpiffeId {
  if (path === '' || path === '/') fail(subject, 'the path is empty: expected /ns/<namespace>/sa/<service-account>');
  const segments = path.split('/').slice(1);
  if (segments.some((s) => s === '')) fail(subject, 'the path has an empty segment ("//" or a trailing "/")');
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'sa') {
    fail(subject, `the path "${path}" is not /ns/<namespace>/sa/<service-account>`);
  }
  const id = { trustDomain, namespace: segments[1], serviceAccount: segments[3] };
  checkId(id, subject);
  return id;
}

/** Parse a Kubernetes workload SPIFFE ID strictly; throws IdentityError naming the problem. */
export function parseSpiffeUri(uri: string): SpiffeId {
  const subject = `SPIFFE ID "${uri}"`;
  if (uri.length > MAX_URI) fail(`SPIFFE ID of ${uri.length} characters`, `longer than ${MAX_URI} characters`);
  // The scheme is compared case-sensitively: the SPIFFE spec requires the lowercase "spiffe".
  if (!uri.startsWith(SCHEME)) fail(subject, 'the scheme is not "spiffe://"');
  const rest = uri.slice(SCHEME.length);
  if (rest.includes('?')) fail(subject, 'a SPIFFE ID must not have a query ("?")');
  if (rest.includes('#')) fail(subject, 'a SPIFFE ID must not have a fragment ("#")');
  if (rest.includes('%')) fail(subject, 'a SPIFFE ID must not contain percent-encoding ("%")');
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  checkTrustDomain(trustDomain, subject);
  return parsePath(trustDomain, slash === -1 ? '' : rest.slice(slash), subject);
}

/** Parse Istio's principal form `<td>/ns/<ns>/sa/<sa>`, as strictly as parseSpiffeUri. */
export function parsePrincipal(principal: string): SpiffeId {
  const subject = `principal "${principal}"`;
  if (principal.includes('://')) fail(subject, 'a principal has no scheme (write "<td>/ns/<ns>/sa/<sa>")');
  const slash = principal.indexOf('/');
  const trustDomain = slash === -1 ? principal : principal.slice(0, slash);
  checkTrustDomain(trustDomain, subject);
  return parsePath(trustDomain, slash === -1 ? '' : principal.slice(slash), subject);
}

export function sameSpiffeId(a: SpiffeId, b: SpiffeId): boolean {
  return a.trustDomain === b.trustDomain && a.namespace === b.namespace && a.serviceAccount === b.serviceAccount;
}
