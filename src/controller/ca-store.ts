// The controller's CA kept in Secret ferry-system/ferry-ca (created once, however many controllers start at
// once), its public trust bundle published to ConfigMap ferry-ca-root-cert, and root rotation through the API.
import {
  CoreV1Api,
  ListWatch,
  Watch,
  type KubeConfig,
  type KubernetesListObject,
  type V1ConfigMap,
  type V1Secret,
} from '@kubernetes/client-node';
import {
  CA_METADATA,
  applyCaTransition,
  caIssuerOf,
  formatCaMetadata,
  initialCaState,
  loadCaIssuer,
  parseCaMetadata,
  planRotationStep,
  type CaFiles,
  type CaMetadata,
  type CertificateAuthority,
  type RotationStep,
} from '../identity';
import type { Logger } from '../telemetry';
import { CaServiceError } from './ca-errors';

export const CA_NAMESPACE = 'ferry-system';
export const CA_SECRET_NAME = 'ferry-ca';
export const CA_BUNDLE_CONFIGMAP_NAME = 'ferry-ca-root-cert';
/** The ConfigMap key holding the trusted roots, concatenated PEM (Istio's istio-ca-root-cert uses the same key). */
export const ROOT_CERT_KEY = 'root-cert.pem';
export const CA_GENERATION_ANNOTATION = 'ferry.dev/ca-generation';
const LABELS = { 'app.kubernetes.io/name': 'ferry', 'app.kubernetes.io/component': 'ca' };
/** Optimistic-concurrency retries before a write gives up (each re-reads the object). */
const WRITE_ATTEMPTS = 5;

export interface CaObjectNames {
  namespace?: string;
  secretName?: string;
  configMapName?: string;
}

function names(options: CaObjectNames): Required<CaObjectNames> {
  return {
    namespace: options.namespace ?? CA_NAMESPACE,
    secretName: options.secretName ?? CA_SECRET_NAME,
    configMapName: options.configMapName ?? CA_BUNDLE_CONFIGMAP_NAME,
  };
}

/** What the CA service signs with and announces at one generation. */
export interface CaSnapshot {
  metadata: CaMetadata;
  /** Trusted root PEMs, oldest first. */
  roots: string[];
  ca: CertificateAuthority;
}

/** Where the CA service takes its CA from: the current one, and each new generation as it comes. */
export interface CaSource {
  current(): CaSnapshot | undefined;
  onChange(listener: (snapshot: CaSnapshot) => void): () => void;
}

/**
 * The CA loaded from stored files (a Secret's data), one generation at a time. Loads are applied in
 * the order they were asked for; a load of the generation already held is a no-op (a watch sees the
 * same object again after every reconnect), so listeners hear of each generation once. Material that
 * does not load (a malformed or hand-edited store) is refused and the previous CA stays in force.
 */
export class CaHolder implements CaSource {
  readonly #subject: string;
  readonly #trustDomain: string | undefined;
  readonly #listeners = new Set<(snapshot: CaSnapshot) => void>();
  #current: CaSnapshot | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  /** `subject` names the store in errors; when `trustDomain` is given, a CA of another trust domain is refused. */
  constructor(subject: string, trustDomain?: string) {
    this.#subject = subject;
    this.#trustDomain = trustDomain;
  }

  current(): CaSnapshot | undefined {
    return this.#current;
  }

  onChange(listener: (snapshot: CaSnapshot) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Load `files`; resolves to the snapshot when it is a new generation, undefined when it is the one held. */
  load(files: CaFiles): Promise<CaSnapshot | undefined> {
    const run = this.#queue.then(() => this.#load(files));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #load(files: CaFiles): Promise<CaSnapshot | undefined> {
    const fail = (problem: string, cause?: unknown): CaServiceError =>
      new CaServiceError('FERRY_ERR_CA_STORE', `${this.#subject}: ${problem}`, { cause });
    const text = files[CA_METADATA];
    if (text === undefined) throw fail(`data key "${CA_METADATA}" is missing`);
    const metadata = parseCaMetadata(text, fail);
    if (this.#current !== undefined && this.#current.metadata.generation === metadata.generation) return undefined;
    if (this.#trustDomain !== undefined && metadata.trustDomain !== this.#trustDomain) {
      throw fail(`holds a CA for trust domain "${metadata.trustDomain}", but this controller serves "${this.#trustDomain}"`);
    }
    const issuer = caIssuerOf(metadata, (name) => {
      const value = files[name];
      if (value === undefined) throw fail(`data key "${name}" is missing (${CA_METADATA} names it)`);
      return value;
    });
    let ca: CertificateAuthority;
    try {
      ca = await loadCaIssuer(issuer);
    } catch (err) {
      throw fail(`the CA does not load: ${(err as Error).message}`, err);
    }
    const snapshot: CaSnapshot = { metadata, roots: issuer.roots, ca };
    this.#current = snapshot;
    for (const listener of this.#listeners) listener(snapshot);
    return snapshot;
  }
}

const statusOf = (err: unknown): number | undefined => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
};

function storeError(what: string, err: unknown): CaServiceError {
  const status = statusOf(err);
  let body = (err as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      // not JSON: no reason to quote
    }
  }
  const reason = (body as { message?: unknown } | null | undefined)?.message;
  const detail = status !== undefined ? `HTTP ${status}${typeof reason === 'string' ? `: ${reason}` : ''}` : (err as Error).message;
  return new CaServiceError('FERRY_ERR_CA_STORE', `${what}: ${detail}`, { cause: err });
}

function decodeSecret(secret: V1Secret): Record<string, string> {
  const files: Record<string, string> = {};
  for (const [key, value] of Object.entries(secret.data ?? {})) files[key] = Buffer.from(value, 'base64').toString('utf8');
  return files;
}

function encodeSecret(files: CaFiles): Record<string, string> {
  const data: Record<string, string> = {};
  for (const [key, value] of Object.entries(files)) data[key] = Buffer.from(value, 'utf8').toString('base64');
  return data;
}

export interface EnsureCaOptions extends CaObjectNames {
  trustDomain: string;
  /** Whether a new CA signs through an intermediate under its root. Default true. */
  intermediate?: boolean;
  rootLifetimeSeconds?: number;
}

/**
 * The CA Secret, created when absent. Two controllers starting together both find it absent and both
 * generate a CA, but only one create succeeds: the other gets AlreadyExists (409) and reads the
 * winner's back, so the cluster ends with one CA. `created` says whether this call made it.
 */
export async function ensureCaSecret(
  kube: KubeConfig,
  options: EnsureCaOptions,
): Promise<{ files: Record<string, string>; created: boolean }> {
  const { namespace, secretName } = names(options);
  const where = `Secret ${namespace}/${secretName}`;
  const core = kube.makeApiClient(CoreV1Api);
  for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt += 1) {
    try {
      return { files: decodeSecret(await core.readNamespacedSecret({ name: secretName, namespace })), created: false };
    } catch (err) {
      if (statusOf(err) !== 404) throw storeError(`reading ${where}`, err);
    }
    const initial = await initialCaState({
      trustDomain: options.trustDomain,
      intermediate: options.intermediate ?? true,
      rootLifetimeSeconds: options.rootLifetimeSeconds,
    });
    const files = applyCaTransition({}, initial);
    try {
      await core.createNamespacedSecret({
        namespace,
        body: {
          apiVersion: 'v1',
          kind: 'Secret',
          type: 'Opaque',
          metadata: { name: secretName, namespace, labels: LABELS },
          data: encodeSecret(files),
        },
      });
      return { files, created: true };
    } catch (err) {
      // AlreadyExists: another controller won the race; read its CA on the next turn.
      if (statusOf(err) !== 409) throw storeError(`creating ${where}`, err);
    }
  }
  throw new CaServiceError('FERRY_ERR_CA_STORE', `${where}: created and deleted under us ${WRITE_ATTEMPTS} times; giving up`);
}

/** The trust bundle as published for readers without the key (agents, the sandbox, `ferry inspect`). */
export interface PublishedTrustBundle {
  metadata: CaMetadata;
  roots: string[];
}

function splitCertificates(bundle: string): string[] {
  return (bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((pem) => `${pem}\n`);
}

function bundleOf(configMap: V1ConfigMap, where: string): PublishedTrustBundle {
  const data = configMap.data ?? {};
  const fail = (problem: string, cause?: unknown): CaServiceError =>
    new CaServiceError('FERRY_ERR_CA_STORE', `${where}: ${problem}`, { cause });
  if (data[CA_METADATA] === undefined) throw fail(`data key "${CA_METADATA}" is missing`);
  const metadata = parseCaMetadata(data[CA_METADATA], fail);
  const roots = splitCertificates(data[ROOT_CERT_KEY] ?? '');
  if (roots.length !== metadata.roots.length) {
    throw fail(`data key "${ROOT_CERT_KEY}" holds ${roots.length} certificate(s), ${CA_METADATA} names ${metadata.roots.length} root(s)`);
  }
  return { metadata, roots };
}

/**
 * Write the bundle of `snapshot` to the ConfigMap unless it already holds that generation or a later
 * one (several controllers and the CLI may publish; a generation never goes back). Conflicting writes
 * re-read and try again.
 */
export async function publishTrustBundle(
  kube: KubeConfig,
  snapshot: { metadata: CaMetadata; roots: string[] },
  options: CaObjectNames = {},
): Promise<'created' | 'updated' | 'current'> {
  const { namespace, configMapName } = names(options);
  const where = `ConfigMap ${namespace}/${configMapName}`;
  const core = kube.makeApiClient(CoreV1Api);
  const body = (resourceVersion?: string): V1ConfigMap => ({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: configMapName,
      namespace,
      labels: LABELS,
      annotations: { [CA_GENERATION_ANNOTATION]: String(snapshot.metadata.generation) },
      resourceVersion,
    },
    data: { [CA_METADATA]: formatCaMetadata(snapshot.metadata), [ROOT_CERT_KEY]: snapshot.roots.join('') },
  });
  for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt += 1) {
    let existing: V1ConfigMap | undefined;
    try {
      existing = await core.readNamespacedConfigMap({ name: configMapName, namespace });
    } catch (err) {
      if (statusOf(err) !== 404) throw storeError(`reading ${where}`, err);
    }
    try {
      if (existing === undefined) {
        await core.createNamespacedConfigMap({ namespace, body: body() });
        return 'created';
      }
      const held = Number(existing.metadata?.annotations?.[CA_GENERATION_ANNOTATION]);
      if (Number.isSafeInteger(held) && held >= snapshot.metadata.generation) return 'current';
      await core.replaceNamespacedConfigMap({ name: configMapName, namespace, body: body(existing.metadata?.resourceVersion) });
      return 'updated';
    } catch (err) {
      if (statusOf(err) !== 409) throw storeError(`writing ${where}`, err);
    }
  }
  throw new CaServiceError('FERRY_ERR_CA_STORE', `${where}: ${WRITE_ATTEMPTS} conflicting writes in a row; giving up`);
}

/** The published trust bundle (no key needed: get on the ConfigMap). */
export async function readTrustBundle(kube: KubeConfig, options: CaObjectNames = {}): Promise<PublishedTrustBundle> {
  const { namespace, configMapName } = names(options);
  const where = `ConfigMap ${namespace}/${configMapName}`;
  try {
    return bundleOf(await kube.makeApiClient(CoreV1Api).readNamespacedConfigMap({ name: configMapName, namespace }), where);
  } catch (err) {
    if (err instanceof CaServiceError) throw err;
    throw storeError(`reading ${where}`, err);
  }
}

/** `ferry ca rotate` phases: prepare (trust a new root), switch (it signs), finish (drop the old root). */
export type CaRotationPhase = 'prepare' | 'switch' | 'finish';
const STEP: Readonly<Record<CaRotationPhase, RotationStep>> = {
  prepare: 'beginRotation',
  switch: 'switchIssuer',
  finish: 'finishRotation',
};

export interface RotateCaOptions extends CaObjectNames {
  /** The new root's lifetime (prepare only). */
  rootLifetimeSeconds?: number;
}

/**
 * Advance the CA Secret by one rotation phase (refused out of order, naming the phase to run next), then
 * publish the new bundle; running controllers follow the Secret and stream the change to agents. The
 * write carries the resourceVersion it read, so two rotations at once cannot both apply: the loser
 * re-reads and, the phase having moved, is refused. Between phases the caller waits for the agents:
 * after prepare until every agent holds the new bundle, after switch until every agent has re-issued.
 */
export async function rotateCa(kube: KubeConfig, phase: CaRotationPhase, options: RotateCaOptions = {}): Promise<CaMetadata> {
  const step = STEP[phase];
  if (step === undefined) {
    throw new CaServiceError('FERRY_ERR_CA_STORE', `rotateCa: phase "${String(phase)}" is not one of ${Object.keys(STEP).join(', ')}`);
  }
  const { namespace, secretName } = names(options);
  const where = `Secret ${namespace}/${secretName}`;
  const core = kube.makeApiClient(CoreV1Api);
  for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt += 1) {
    let secret: V1Secret;
    try {
      secret = await core.readNamespacedSecret({ name: secretName, namespace });
    } catch (err) {
      if (statusOf(err) === 404) {
        throw new CaServiceError('FERRY_ERR_CA_STORE', `${where} does not exist: start ferry controller once to create the CA`, {
          cause: err,
        });
      }
      throw storeError(`reading ${where}`, err);
    }
    const files = decodeSecret(secret);
    const fail = (problem: string, cause?: unknown): CaServiceError =>
      new CaServiceError('FERRY_ERR_CA_STORE', `${where}: ${problem}`, { cause });
    if (files[CA_METADATA] === undefined) throw fail(`data key "${CA_METADATA}" is missing`);
    const metadata = parseCaMetadata(files[CA_METADATA], fail);
    const transition = await planRotationStep(metadata, step, { subject: where, rootLifetimeSeconds: options.rootLifetimeSeconds });
    const next = applyCaTransition(files, transition, { prune: true });
    try {
      await core.replaceNamespacedSecret({
        name: secretName,
        namespace,
        body: { ...secret, metadata: { ...secret.metadata, resourceVersion: secret.metadata?.resourceVersion }, data: encodeSecret(next) },
      });
    } catch (err) {
      if (statusOf(err) === 409) continue;
      throw storeError(`writing ${where}`, err);
    }
    const issuer = caIssuerOf(transition.metadata, (name) => next[name]);
    await publishTrustBundle(kube, { metadata: transition.metadata, roots: issuer.roots }, options);
    return transition.metadata;
  }
  throw new CaServiceError('FERRY_ERR_CA_STORE', `${where}: ${WRITE_ATTEMPTS} conflicting writes in a row; giving up`);
}

export interface KubeCaStoreOptions extends EnsureCaOptions {
  kube: KubeConfig;
  log: Logger;
}

/**
 * The controller's CA: the Secret (created on first start), loaded, published, and watched. Each new
 * generation of the Secret (a rotation phase, written by `rotateCa`) is loaded, announced to the
 * listeners (the CA service streams it to agents) and published to the ConfigMap. A Secret that
 * stops loading, or goes, leaves the CA in force as it was and is reported in the log.
 */
export class KubeCaStore implements CaSource {
  readonly created: boolean;
  readonly #holder: CaHolder;
  readonly #kube: KubeConfig;
  readonly #names: Required<CaObjectNames>;
  readonly #log: Logger;
  readonly #informer: ListWatch<V1Secret>;
  #timer: NodeJS.Timeout | undefined;
  #retryMs = 500;
  #lastProblem = '';
  #closed = false;

  private constructor(options: KubeCaStoreOptions, holder: CaHolder, created: boolean) {
    this.#kube = options.kube;
    this.#names = names(options);
    this.#log = options.log;
    this.#holder = holder;
    this.created = created;
    const { namespace, secretName } = this.#names;
    const core = options.kube.makeApiClient(CoreV1Api);
    const fieldSelector = `metadata.name=${secretName}`;
    const list = (): Promise<KubernetesListObject<V1Secret>> =>
      core.listNamespacedSecret({ namespace, fieldSelector }) as Promise<KubernetesListObject<V1Secret>>;
    this.#informer = new ListWatch<V1Secret>(
      `/api/v1/namespaces/${namespace}/secrets`,
      new Watch(options.kube),
      list,
      false,
      undefined,
      fieldSelector,
    );
    this.#informer.on('add', (secret) => this.#changed(secret));
    this.#informer.on('update', (secret) => this.#changed(secret));
    this.#informer.on('delete', () =>
      this.#log.error({ secret: `${namespace}/${secretName}` }, 'the CA Secret was deleted; signing goes on with the CA in memory'),
    );
    this.#informer.on('error', (err) => this.#watchFailed(err));
  }

  static async open(options: KubeCaStoreOptions): Promise<KubeCaStore> {
    const n = names(options);
    const { files, created } = await ensureCaSecret(options.kube, options);
    const holder = new CaHolder(`Secret ${n.namespace}/${n.secretName}`, options.trustDomain);
    const snapshot = await holder.load(files);
    const store = new KubeCaStore(options, holder, created);
    if (snapshot !== undefined) await publishTrustBundle(options.kube, snapshot, n);
    options.log.info(
      { generation: snapshot?.metadata.generation, phase: snapshot?.metadata.phase, issuer: snapshot?.metadata.issuer, created },
      created ? 'created the CA Secret' : 'loaded the CA Secret',
    );
    await store.#informer.start();
    return store;
  }

  current(): CaSnapshot | undefined {
    return this.#holder.current();
  }

  onChange(listener: (snapshot: CaSnapshot) => void): () => void {
    return this.#holder.onChange(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#informer.stop();
  }

  #changed(secret: V1Secret): void {
    this.#holder.load(decodeSecret(secret)).then(
      (snapshot) => {
        if (snapshot === undefined) return;
        this.#lastProblem = '';
        this.#log.info(
          { generation: snapshot.metadata.generation, phase: snapshot.metadata.phase, issuer: snapshot.metadata.issuer },
          'CA changed',
        );
        publishTrustBundle(this.#kube, snapshot, this.#names).catch((err: unknown) =>
          this.#log.error({ err }, 'could not publish the trust bundle ConfigMap'),
        );
      },
      (err: Error) => {
        // Reported once per distinct problem: a watch replays the same bad object after each reconnect.
        if (err.message === this.#lastProblem) return;
        this.#lastProblem = err.message;
        this.#log.error({ err }, 'the CA Secret does not load; the CA in force stays');
      },
    );
  }

  #watchFailed(err: unknown): void {
    if (this.#closed) return;
    this.#log.warn({ err, retryInMs: this.#retryMs }, 'CA Secret watch failed; starting it again');
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      if (!this.#closed) void this.#informer.start();
    }, this.#retryMs);
    this.#retryMs = Math.min(this.#retryMs * 2, 30_000);
  }
}
