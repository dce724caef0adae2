// The sandbox CA, kept in a directory shared by the sandbox CLI (its one writer) and every agent
// process on the machine (readers): ca.json names the authority that signs and the roots to trust.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { CertificateAuthority, CertificateAuthorityClient, SignRequest, SignResponse } from './certificate-authority';
import {
  CA_METADATA,
  caCertName,
  caIssuerOf,
  initialCaState,
  loadCaIssuer,
  parseCaMetadata,
  planRotationStep,
  formatCaMetadata,
  type CaIssuer,
  type CaMetadata,
  type CaTransition,
  type RotationPhase,
  type RotationStep,
} from './ca-state';
import { IdentityError } from './errors';
import { checkTrustDomain } from './spiffe';

export type { CaIssuer, CaMetadata, RotationPhase } from './ca-state';

const METADATA = CA_METADATA;

function directoryError(dir: string, problem: string, cause?: unknown): IdentityError {
  return new IdentityError('FERRY_ERR_IDENTITY_CA_DIRECTORY', `CA directory ${dir}: ${problem}`, { cause });
}

/** Readers see the old or the new file, never half of one: write a temporary name, then rename(2). */
function writeAtomic(file: string, data: string, mode: number): void {
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  fs.writeFileSync(temporary, data, { mode, flag: 'wx' });
  fs.renameSync(temporary, file);
}

function read(dir: string, name: string): string {
  try {
    return fs.readFileSync(path.join(dir, name), 'utf8');
  } catch (err) {
    throw directoryError(dir, `cannot read ${name}: ${(err as Error).message}`, err);
  }
}

export function readCaMetadata(dir: string): CaMetadata {
  return parseCaMetadata(read(dir, METADATA), (problem, cause) => directoryError(dir, problem, cause));
}

/** The signing material ca.json currently points at: what LocalCaClient and test fixtures sign with. */
export function readCaIssuer(dir: string): CaIssuer {
  return caIssuerOf(readCaMetadata(dir), (name) => read(dir, name));
}

/**
 * Creates and rotates the CA in a directory (the state machine is ca-state.ts). Every method re-reads
 * ca.json, so each may run in a different process (`ferry sandbox ca rotate …`); they assume a single
 * writer at a time. Files are written before the ca.json that names them, so a reader never sees a
 * name without its file.
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
    ca.#apply(await initialCaState(options));
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
  beginRotation(options: { rootLifetimeSeconds?: number } = {}): Promise<CaMetadata> {
    return this.#step('beginRotation', options.rootLifetimeSeconds);
  }

  /**
   * Phase 2: the new authority signs. Call it only once every agent has picked up the phase 1
   * bundle (one watch interval), or peers would meet certificates from a root they do not trust yet.
   */
  switchIssuer(): Promise<CaMetadata> {
    return this.#step('switchIssuer');
  }

  /**
   * Phase 3: stop trusting the old root. Certificates it issued stop verifying at once, so call it
   * only after every agent has re-issued its certificates from the new authority.
   */
  finishRotation(): Promise<CaMetadata> {
    return this.#step('finishRotation');
  }

  async #step(step: RotationStep, rootLifetimeSeconds?: number): Promise<CaMetadata> {
    const transition = await planRotationStep(readCaMetadata(this.dir), step, {
      subject: `CA directory ${this.dir}`,
      rootLifetimeSeconds,
    });
    return this.#apply(transition);
  }

  #apply(transition: CaTransition): CaMetadata {
    for (const file of transition.files) writeAtomic(path.join(this.dir, file.name), file.data, file.secret ? 0o600 : 0o644);
    writeAtomic(path.join(this.dir, METADATA), formatCaMetadata(transition.metadata), 0o644);
    // The retired authorities' keys are not needed any more.
    for (const name of transition.retired) fs.rmSync(path.join(this.dir, name), { force: true });
    return transition.metadata;
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
      this.#ca = loadCaIssuer(readCaIssuer(this.dir));
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
      roots = metadata.roots.map((id) => read(dir, caCertName(id)));
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
