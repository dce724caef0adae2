// The CA's state and its root-rotation state machine, independent of where they are kept: the sandbox's
// CA directory writes them as files, the controller as the data of a Secret (same names in both).
import {
  CertificateAuthority,
  createIntermediateAuthority,
  createRootAuthority,
  type AuthorityMaterial,
  type CertificateAuthorityOptions,
} from './certificate-authority';
import { IdentityError } from './errors';
import { checkTrustDomain } from './spiffe';

/**
 * steady: one root, its authority signs. rotating: a new root is trusted too, the old one still
 * signs. switched: the new one signs, both are trusted. finishRotation drops the old root (steady).
 */
export type RotationPhase = 'steady' | 'rotating' | 'switched';

export interface CaMetadata {
  version: 1;
  trustDomain: string;
  /** Incremented by every change, so watchers compare one number. */
  generation: number;
  /** Id of the authority that signs leaves (`root-N` or `intermediate-N`). */
  issuer: string;
  /** Ids of the trusted roots, oldest first. */
  roots: string[];
  phase: RotationPhase;
  /** Whether each root gets an intermediate that does the signing. */
  intermediate: boolean;
}

/** The three steps of a root rotation, in order; each is allowed in exactly one phase. */
export type RotationStep = 'beginRotation' | 'switchIssuer' | 'finishRotation';

/** One piece of CA state under its storage name (a file name, or a Secret data key). */
export interface CaFile {
  name: string;
  data: string;
  /** A private key: owner-only on disk, never published. */
  secret: boolean;
}

/**
 * What a step changes. Storage writes `files` first, then `metadata` (the document that names them),
 * so a reader never sees a name without its material; `retired` may be removed after the metadata.
 */
export interface CaTransition {
  metadata: CaMetadata;
  files: CaFile[];
  /** Names of private keys the new state no longer needs (retired authorities' certificates stay: they are public). */
  retired: string[];
}

/** The name under which ca.json's metadata is stored. */
export const CA_METADATA = 'ca.json';
export const PHASES: readonly RotationPhase[] = ['steady', 'rotating', 'switched'];
const AUTHORITY_ID = /^(root|intermediate)-[1-9][0-9]*$/;
const ROOT_ID = /^root-[1-9][0-9]*$/;

/** The step each phase allows. */
export const NEXT_STEP: Readonly<Record<RotationPhase, RotationStep>> = {
  steady: 'beginRotation',
  rotating: 'switchIssuer',
  switched: 'finishRotation',
};
const PHASE_OF_STEP: Readonly<Record<RotationStep, RotationPhase>> = {
  beginRotation: 'steady',
  switchIssuer: 'rotating',
  finishRotation: 'switched',
};

export const caCertName = (id: string): string => `${id}.cert.pem`;
export const caKeyName = (id: string): string => `${id}.key.pem`;
export const caChainName = (id: string): string => `${id}.chain.pem`;

/**
 * Check a parsed ca.json. `fail` turns a problem into the caller's error (it names the store:
 * the directory, or the Secret), so every store reports a bad field the same way.
 */
export function checkCaMetadata(value: unknown, fail: (problem: string) => Error): CaMetadata {
  const bad = (field: string, expected: string): never => {
    throw fail(`${CA_METADATA} field "${field}" must be ${expected}`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) bad('(root)', 'an object');
  const m = value as Partial<CaMetadata>;
  if (m.version !== 1) bad('version', '1');
  if (typeof m.trustDomain !== 'string') bad('trustDomain', 'a string');
  if (!Number.isSafeInteger(m.generation) || (m.generation as number) < 1) bad('generation', 'a positive integer');
  if (typeof m.issuer !== 'string' || !AUTHORITY_ID.test(m.issuer)) bad('issuer', 'an authority id (root-N, intermediate-N)');
  if (!Array.isArray(m.roots) || m.roots.length === 0 || !m.roots.every((r) => typeof r === 'string' && ROOT_ID.test(r))) {
    bad('roots', 'a non-empty array of root ids (root-N)');
  }
  if (!PHASES.includes(m.phase as RotationPhase)) bad('phase', PHASES.join(' | '));
  if (typeof m.intermediate !== 'boolean') bad('intermediate', 'a boolean');
  return m as CaMetadata;
}

/** Parse ca.json text and check it; `fail` as in checkCaMetadata. */
export function parseCaMetadata(text: string, fail: (problem: string, cause?: unknown) => Error): CaMetadata {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw fail(`${CA_METADATA} is not valid JSON: ${(err as Error).message}`, err);
  }
  return checkCaMetadata(value, fail);
}

export function formatCaMetadata(metadata: CaMetadata): string {
  return `${JSON.stringify(metadata, null, 2)}\n`;
}

/** The signing material the metadata points at: what a CA signs with and announces. */
export interface CaIssuer {
  metadata: CaMetadata;
  issuer: AuthorityMaterial;
  /** Sent after a leaf: the intermediate, when the issuer is one. */
  issuerChainPem: string[];
  /** Trusted root PEMs, in metadata order. */
  roots: string[];
}

/** Resolve the issuer and roots through `read` (a file, a Secret key), which throws naming what is missing. */
export function caIssuerOf(metadata: CaMetadata, read: (name: string) => string): CaIssuer {
  const issuer = { certPem: read(caCertName(metadata.issuer)), keyPem: read(caKeyName(metadata.issuer)) };
  return {
    metadata,
    issuer,
    issuerChainPem: metadata.issuer.startsWith('intermediate-') ? [issuer.certPem] : [],
    roots: metadata.roots.map((id) => read(caCertName(id))),
  };
}

/** A signer over a resolved issuer (the checks of CertificateAuthority.load apply). */
export function loadCaIssuer(loaded: CaIssuer, now?: CertificateAuthorityOptions['now']): Promise<CertificateAuthority> {
  return CertificateAuthority.load({
    trustDomain: loaded.metadata.trustDomain,
    issuer: loaded.issuer,
    issuerChainPem: loaded.issuerChainPem,
    roots: loaded.roots,
    now,
  });
}

/** Refuse a step out of order, naming the current phase and the step it allows; `subject` names the store. */
export function expectPhase(metadata: CaMetadata, step: RotationStep, subject: string): void {
  const phase = PHASE_OF_STEP[step];
  if (metadata.phase !== phase) {
    throw new IdentityError(
      'FERRY_ERR_IDENTITY_ROTATION',
      `${subject}: ${step} needs phase "${phase}" but the CA is "${metadata.phase}" (next step: ${NEXT_STEP[metadata.phase]})`,
    );
  }
}

/** root-N (and intermediate-N under it): their files, and the id of the one that signs. */
async function createAuthorities(
  generation: number,
  trustDomain: string,
  intermediate: boolean,
  rootLifetimeSeconds: number | undefined,
): Promise<{ signer: string; files: CaFile[] }> {
  const rootId = `root-${generation}`;
  const root = await createRootAuthority({ trustDomain, name: rootId, lifetimeSeconds: rootLifetimeSeconds });
  const files: CaFile[] = [
    { name: caKeyName(rootId), data: root.keyPem, secret: true },
    { name: caCertName(rootId), data: root.certPem, secret: false },
  ];
  if (!intermediate) return { signer: rootId, files };
  const id = `intermediate-${generation}`;
  const signer = await createIntermediateAuthority(root, { trustDomain, name: id, lifetimeSeconds: rootLifetimeSeconds });
  files.push(
    { name: caKeyName(id), data: signer.keyPem, secret: true },
    { name: caCertName(id), data: signer.certPem, secret: false },
    { name: caChainName(id), data: signer.certPem + root.certPem, secret: false },
  );
  return { signer: id, files };
}

export interface CaCreateOptions {
  trustDomain: string;
  intermediate?: boolean;
  rootLifetimeSeconds?: number;
}

/** A new CA at generation 1: root-1 (and intermediate-1), steady. */
export async function initialCaState(options: CaCreateOptions): Promise<CaTransition> {
  checkTrustDomain(options.trustDomain);
  const intermediate = options.intermediate === true;
  const { signer, files } = await createAuthorities(1, options.trustDomain, intermediate, options.rootLifetimeSeconds);
  return {
    metadata: {
      version: 1,
      trustDomain: options.trustDomain,
      generation: 1,
      issuer: signer,
      roots: ['root-1'],
      phase: 'steady',
      intermediate,
    },
    files,
    retired: [],
  };
}

/**
 * The next state after `step` (refused out of order). Each step bumps the generation:
 *   beginRotation: a new root (and intermediate) is trusted beside the old, which still signs. The
 *     switch may come only once every agent holds this bundle (one watch interval, or its report),
 *     or peers would meet certificates from a root they do not trust yet.
 *   switchIssuer: the new authority signs; agents re-issue every certificate.
 *   finishRotation: the old root leaves the bundle, so certificates it issued stop verifying at
 *     once: only after every agent has re-issued from the new authority.
 */
export async function planRotationStep(
  metadata: CaMetadata,
  step: RotationStep,
  options: { subject: string; rootLifetimeSeconds?: number },
): Promise<CaTransition> {
  expectPhase(metadata, step, options.subject);
  const generation = metadata.generation + 1;
  switch (step) {
    case 'beginRotation': {
      const { files } = await createAuthorities(generation, metadata.trustDomain, metadata.intermediate, options.rootLifetimeSeconds);
      return {
        metadata: { ...metadata, generation, roots: [...metadata.roots, `root-${generation}`], phase: 'rotating' },
        files,
        retired: [],
      };
    }
    case 'switchIssuer': {
      const newRoot = metadata.roots[metadata.roots.length - 1];
      const issuer = metadata.intermediate ? newRoot.replace('root-', 'intermediate-') : newRoot;
      return { metadata: { ...metadata, generation, issuer, phase: 'switched' }, files: [], retired: [] };
    }
    case 'finishRotation': {
      const kept = metadata.roots[metadata.roots.length - 1];
      const retired = metadata.roots
        .filter((r) => r !== kept)
        .flatMap((old) => [caKeyName(old), caKeyName(old.replace('root-', 'intermediate-'))]);
      return { metadata: { ...metadata, generation, roots: [kept], phase: 'steady' }, files: [], retired };
    }
  }
}

/** What a trust-bundle watch reports: the CA's state and what changed since the previous report. */
export interface CaChange {
  generation: number;
  phase: RotationPhase;
  issuer: string;
  /** Trusted root PEMs. */
  roots: string[];
  /** True for the first report of a watcher (nothing to compare with). */
  first: boolean;
  issuerChanged: boolean;
  rootsChanged: boolean;
}

/** Every name of a stored CA: ca.json and each file, as text. What a key-value store (a Secret) holds. */
export type CaFiles = Readonly<Record<string, string>>;

/** The authority ids the metadata still needs: each trusted root and the intermediate under it. */
function referencedAuthorities(metadata: CaMetadata): Set<string> {
  const ids = new Set<string>([metadata.issuer]);
  for (const root of metadata.roots) {
    ids.add(root);
    if (metadata.intermediate) ids.add(root.replace('root-', 'intermediate-'));
  }
  return ids;
}

/**
 * `files` after `transition`, in one step (a key-value store writes all at once, so the order rule of
 * CaTransition holds by itself). With `prune`, material of authorities the new metadata no longer
 * references goes too, certificates included, so a store of bounded size (a Secret: 1 MiB) does not
 * grow with every rotation.
 */
export function applyCaTransition(files: CaFiles, transition: CaTransition, options: { prune?: boolean } = {}): Record<string, string> {
  const next: Record<string, string> = { ...files };
  for (const file of transition.files) next[file.name] = file.data;
  for (const name of transition.retired) delete next[name];
  next[CA_METADATA] = formatCaMetadata(transition.metadata);
  if (options.prune === true) {
    const keep = referencedAuthorities(transition.metadata);
    for (const name of Object.keys(next)) {
      if (name !== CA_METADATA && !keep.has(name.split('.')[0])) delete next[name];
    }
  }
  return next;
}
