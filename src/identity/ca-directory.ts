// The sandbox CA, kept in a directory shared by the sandbox CLI (its one writer) and every agent
// process on the machine (readers): ca.json names the authority that signs and the roots to trust.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  CertificateAuthority,
  createIntermediateAuthority,
  createRootAuthority,
  type AuthorityMaterial,
  type CertificateAuthorityClient,
  type SignRequest,
  type SignResponse,
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

const METADATA = 'ca.json';
const AUTHORITY_ID = /^(root|intermediate)-[1-9][0-9]*$/;
const PHASES: readonly RotationPhase[] = ['steady', 'rotating', 'switched'];

const keyFile = (dir: string, id: string): string => path.join(dir, `${id}.key.pem`);
const certFile = (dir: string, id: string): string => path.join(dir, `${id}.cert.pem`);
const chainFile = (dir: string, id: string): string => path.join(dir, `${id}.chain.pem`);

function directoryError(dir: string, problem: string, cause?: unknown): IdentityError {
  return new IdentityError('FERRY_ERR_IDENTITY_CA_DIRECTORY', `CA directory ${dir}: ${problem}`, { cause });
}

/** Readers see the old or the new file, never half of one: write a temporary name, then rename(2). */
function writeAtomic(file: string, data: string, mode: number): void {
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  fs.writeFileSync(temporary, data, { mode, flag: 'wx' });
  fs.renameSync(temporary, file);
}

function read(dir: string, file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw directoryError(dir, `cannot read ${path.basename(file)}: ${(err as Error).message}`, err);
  }
}

export function readCaMetadata(dir: string): CaMetadata {
  let value: unknown;
  try {
    value = JSON.parse(read(dir, path.join(dir, METADATA)));
  } catch (err) {
    if (err instanceof IdentityError) throw err;
    throw directoryError(dir, `${METADATA} is not valid JSON: ${(err as Error).message}`, err);
  }
  const m = value as Partial<CaMetadata>;
  const bad = (field: string, expected: string): never => {
    throw directoryError(dir, `${METADATA} field "${field}" must be ${expected}`);
  };
  if (typeof m !== 'object' || m === null) bad('(root)', 'an object');
  if (m.version !== 1) bad('version', '1');
  if (typeof m.trustDomain !== 'string') bad('trustDomain', 'a string');
  if (!Number.isSafeInteger(m.generation) || (m.generation as number) < 1) bad('generation', 'a positive integer');
  if (typeof m.issuer !== 'string' || !AUTHORITY_ID.test(m.issuer)) bad('issuer', 'an authority id (root-N, intermediate-N)');
  if (!Array.isArray(m.roots) || m.roots.length === 0 || !m.roots.every((r) => typeof r === 'string' && /^root-\d+$/.test(r))) {
    bad('roots', 'a non-empty array of root ids (root-N)');
  }
  if (!PHASES.includes(m.phase as RotationPhase)) bad('phase', PHASES.join(' | '));
  if (typeof m.intermediate !== 'boolean') bad('intermediate', 'a boolean');
  return m as CaMetadata;
}

/** The signing material ca.json currently points at: what LocalCaClient and test fixtures sign with. */
export interface CaIssuer {
  metadata: CaMetadata;
  issuer: AuthorityMaterial;
  /** Sent after a leaf: the intermediate, when the issuer is one. */
  issuerChainPem: string[];
  /** Trusted root PEMs, in ca.json order. */
  roots: string[];
}

export function readCaIssuer(dir: string): CaIssuer {
  const metadata = readCaMetadata(dir);
  const issuer = { certPem: read(dir, certFile(dir, metadata.issuer)), keyPem: read(dir, keyFile(dir, metadata.issuer)) };
  return {
    metadata,
    issuer,
    issuerChainPem: metadata.issuer.startsWith('intermediate-') ? [issuer.certPem] : [],
    roots: metadata.roots.map((id) => read(dir, certFile(dir, id))),
  };
}

/**
 * Creates and rotates the CA in a directory. Every method re-reads ca.json, so each may run in a
 * different process (`ferry sandbox ca rotate …`); they assume a single writer at a time. Files are
 * written before the ca.json that names them, so a reader never sees a name without its file.
 */
export class CaDirectory {
  private constructor(readonly dir: string) {}

  static async create(
    dir: string,
    options: { trustDomain: string; intermediate?: boolean; rootLifetimeSeconds?: number },
  ): Promise<CaDirectory> {
    checkTrustDomain(options.trustDomain);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // The directory holds CA keys: owner only, even when it existed before.
    fs.chmodSync(dir, 0o700);
    if (fs.existsSync(path.join(dir, METADATA))) throw directoryError(dir, `already holds a CA (${METADATA} exists)`);
    const ca = new CaDirectory(dir);
    const intermediate = options.intermediate === true;
    const issuer = await ca.#createAuthorities(1, options.trustDomain, intermediate, options.rootLifetimeSeconds);
    ca.#write({ version: 1, trustDomain: options.trustDomain, generation: 1, issuer, roots: ['root-1'], phase: 'steady', intermediate });
    return ca;
  }

  static open(dir: string): CaDirectory {
    readCaMetadata(dir);
    return new CaDirectory(dir);
  }

  metadata(): CaMetadata {
    return readCaMetadata(this.dir);
  }

  /** Phase 1: create a new root (and intermediate) and trust it next to the old one, which still signs. */
  async beginRotation(options: { rootLifetimeSeconds?: number } = {}): Promise<CaMetadata> {
    const m = this.#expectPhase('steady', 'beginRotation');
    const generation = m.generation + 1;
    await this.#createAuthorities(generation, m.trustDomain, m.intermediate, options.rootLifetimeSeconds);
    return this.#write({ ...m, generation, roots: [...m.roots, `root-${generation}`], phase: 'rotating' });
  }

  /**
   * Phase 2: the new authority signs. Call it only once every agent has picked up the phase 1
   * bundle (one watch interval), or peers would meet certificates from a root they do not trust yet.
   */
  async switchIssuer(): Promise<CaMetadata> {
    const m = this.#expectPhase('rotating', 'switchIssuer');
    const newRoot = m.roots[m.roots.length - 1];
    const issuer = m.intermediate ? newRoot.replace('root-', 'intermediate-') : newRoot;
    return this.#write({ ...m, generation: m.generation + 1, issuer, phase: 'switched' });
  }

  /**
   * Phase 3: stop trusting the old root. Certificates it issued stop verifying at once, so call it
   * only after every agent has re-issued its certificates from the new authority.
   */
  async finishRotation(): Promise<CaMetadata> {
    const m = this.#expectPhase('switched', 'finishRotation');
    const kept = m.roots[m.roots.length - 1];
    const next = this.#write({ ...m, generation: m.generation + 1, roots: [kept], phase: 'steady' });
    // The retired authorities' keys are not needed any more (their certificates stay: they are public).
    for (const old of m.roots.filter((r) => r !== kept)) {
      for (const id of [old, old.replace('root-', 'intermediate-')]) fs.rmSync(keyFile(this.dir, id), { force: true });
    }
    return next;
  }

  #expectPhase(phase: RotationPhase, operation: string): CaMetadata {
    const m = readCaMetadata(this.dir);
    if (m.phase !== phase) {
      const next = { steady: 'beginRotation', rotating: 'switchIssuer', switched: 'finishRotation' }[m.phase];
      throw new IdentityError(
        'FERRY_ERR_IDENTITY_ROTATION',
        `CA directory ${this.dir}: ${operation} needs phase "${phase}" but the CA is "${m.phase}" (next step: ${next})`,
      );
    }
    return m;
  }

  /** Writes root-N (and intermediate-N) files; returns the id of the one that signs. */
  async #createAuthorities(generation: number, trustDomain: string, intermediate: boolean, rootLifetimeSeconds?: number): Promise<string> {
    const rootId = `root-${generation}`;
    const root = await createRootAuthority({ trustDomain, name: rootId, lifetimeSeconds: rootLifetimeSeconds });
    writeAtomic(keyFile(this.dir, rootId), root.keyPem, 0o600);
    writeAtomic(certFile(this.dir, rootId), root.certPem, 0o644);
    if (!intermediate) return rootId;
    const id = `intermediate-${generation}`;
    const signer = await createIntermediateAuthority(root, { trustDomain, name: id, lifetimeSeconds: rootLifetimeSeconds });
    writeAtomic(keyFile(this.dir, id), signer.keyPem, 0o600);
    writeAtomic(certFile(this.dir, id), signer.certPem, 0o644);
    writeAtomic(chainFile(this.dir, id), signer.certPem + root.certPem, 0o644);
    return id;
  }

  #write(metadata: CaMetadata): CaMetadata {
    writeAtomic(path.join(this.dir, METADATA), `${JSON.stringify(metadata, null, 2)}\n`, 0o644);
    return metadata;
  }
}

/**
 * CertificateAuthorityClient over a CA directory: each call signs with whatever ca.json names now.
 * The loaded CA is cached by ca.json's inode, size and mtime (a rename always changes the inode).
 */
export class LocalCaClient implements CertificateAuthorityClient {
  #cacheKey = '';
  #ca: Promise<CertificateAuthority> | undefined;

  constructor(readonly dir: string) {}

  async sign(request: SignRequest): Promise<SignResponse> {
    return (await this.#current()).sign(request);
  }

  async trustBundle(): Promise<string[]> {
    return (await this.#current()).trustBundle();
  }

  #current(): Promise<CertificateAuthority> {
    const key = statKey(this.dir);
    if (this.#ca === undefined || key !== this.#cacheKey) {
      this.#cacheKey = key;
      const loaded = readCaIssuer(this.dir);
      this.#ca = CertificateAuthority.load({
        trustDomain: loaded.metadata.trustDomain,
        issuer: loaded.issuer,
        issuerChainPem: loaded.issuerChainPem,
        roots: loaded.roots,
      });
      // A failed load is not cached: the next call tries again.
      this.#ca.catch(() => {
        if (this.#cacheKey === key) this.#ca = undefined;
      });
    }
    return this.#ca;
  }
}

function statKey(dir: string): string {
  try {
    const st = fs.statSync(path.join(dir, METADATA));
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch (err) {
    throw directoryError(dir, `cannot stat ${METADATA}: ${(err as Error).message}`, err);
  }
}

/** What watchTrustBundle reports: the CA's state and what changed since the previous report. */
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

/**
 * Poll ca.json every `intervalMs` and report each new generation (the first read included). A timer
 * rather than fs.watch: inotify misses renames on some filesystems and watchFile stats lazily (see
 * src/state watchSnapshot). An unreadable directory is reported to `onError` once per distinct
 * message and the previous state stays in force. The timer is unref'd; call the returned function to stop.
 */
export function watchTrustBundle(
  dir: string,
  intervalMs: number,
  onChange: (change: CaChange) => void,
  onError: (err: Error) => void = () => {},
): () => void {
  let last: CaMetadata | undefined;
  let lastKey = '';
  let lastError = '';
  const check = (): void => {
    let metadata: CaMetadata;
    let roots: string[];
    try {
      const key = statKey(dir);
      if (key === lastKey) return;
      metadata = readCaMetadata(dir);
      roots = metadata.roots.map((id) => read(dir, certFile(dir, id)));
      lastKey = key;
      lastError = '';
    } catch (err) {
      if ((err as Error).message !== lastError) {
        lastError = (err as Error).message;
        onError(err as Error);
      }
      return;
    }
    if (last !== undefined && metadata.generation === last.generation) return;
    const previous = last;
    last = metadata;
    onChange({
      generation: metadata.generation,
      phase: metadata.phase,
      issuer: metadata.issuer,
      roots,
      first: previous === undefined,
      issuerChanged: previous !== undefined && previous.issuer !== metadata.issuer,
      rootsChanged: previous !== undefined && previous.roots.join() !== metadata.roots.join(),
    });
  };
  check();
  const timer = setInterval(check, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
