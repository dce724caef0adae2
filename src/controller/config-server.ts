// The controller's side of the config stream (proto/ferry/config/v1): ResourceStore holds the model with each
// resource version encoded once, and ConfigServer streams its changes to every agent as acknowledged deltas.
import { createHash } from 'node:crypto';
import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, type Registry } from 'prom-client';
import { FerryError } from '../errors';
import {
  WIRE_KINDS,
  configProtocol,
  modelKind,
  resourceMessage,
  type AgentMessage__Output,
  type ResourceError__Output,
  type ResourceVersion__Output,
} from '../proto';
import { RESOURCE_KINDS, resourceName, validateResource, type ResourceKind, type ResourceProblem, type ResourceTypes } from '../state';
import type { Logger } from '../telemetry';
import type { AgentIdentity } from './agent-authenticator';

/** What the stream needs to know of an agent: its node (whose workloads are its own) and who it is, for logs. */
export type StreamIdentity = Pick<AgentIdentity, 'node' | 'subject'>;

/**
 * Establishes an agent's identity from its call metadata (`authorization: Bearer <token>`); rejects when it
 * cannot. TokenReviewAuthenticator is the production one.
 */
export interface StreamAuthenticator {
  authenticate(metadata: grpc.Metadata, peer: string): Promise<StreamIdentity>;
}

export const CONFIG_SERVER_ERROR_CODES = {
  FERRY_ERR_CONTROLLER_RESOURCE_INVALID:
    'a resource given to the controller store is malformed or named differently from its own fields; the message names each field',
  FERRY_ERR_CONTROLLER_RESOURCE_TOO_LARGE: 'a resource is larger, encoded, than the config stream carries (maxResourceBytes)',
  FERRY_ERR_CONTROLLER_LISTEN: 'the config server could not bind its address',
} as const;

type ConfigServerErrorCode = keyof typeof CONFIG_SERVER_ERROR_CODES;

export class ConfigServerError extends FerryError<ConfigServerErrorCode> {}

// ---------------------------------------------------------------------------------------------------------------
// The store.

/** One resource (or the tombstone of one) as every stream sends it. */
interface Entry {
  readonly kind: ResourceKind;
  readonly name: string;
  /** Content hash of the resource; '' for a tombstone. */
  version: string;
  /** The store's change counter when this version (or removal) happened; entries are sent in this order. */
  seq: number;
  /**
   * The entry as one field of a ControllerMessage, encoded once and shared by every push to every agent: a
   * `resources` element for a live entry, a `removed` element for a tombstone. Protobuf lets a message be the
   * concatenation of its fields, so a push is a header followed by these, copied, never re-encoded.
   */
  framed: Buffer;
}

export interface ResourceStoreOptions {
  /** Root namespace the agents compile policies with (validation only). */
  rootNamespace?: string;
  /** Largest encoded resource accepted; it must fit the agents' receive limit with room to spare (4 MiB). */
  maxResourceBytes?: number;
  /**
   * How resources are checked before they are stored: the agents' own validation (validateResource) unless a
   * controller that knows more than its agents (a newer schema during an upgrade) says otherwise.
   */
  validate?: (kind: ResourceKind, value: unknown) => ResourceProblem[];
}

const DEFAULT_MAX_RESOURCE_BYTES = 4 * 1024 * 1024;

/** The seq of an entry a newer version or removal replaced: its log slot is stale from then on. */
const SUPERSEDED = -1;

function entryKey(kind: ResourceKind, name: string): string {
  return `${kind}\u0000${name}`;
}

/** `bytes` in a buffer of its own: a slice of protobufjs's pooled slab would keep the whole slab alive. */
function ownBuffer(bytes: Uint8Array): Buffer {
  const own = Buffer.allocUnsafeSlow(bytes.length);
  own.set(bytes);
  return own;
}

/**
 * The controller's model as the config stream serves it. Feed it from the Kubernetes translation: upsert() what
 * an informer reports added or changed, remove() what it reports deleted, replaceAll() a kind after a (re)list.
 * Every call validates the resource (the agents would refuse it otherwise) and is a no-op when the content is
 * unchanged, so informer resyncs cost nothing downstream. Versions are content hashes, so a restarted controller
 * gives unchanged resources the versions the agents already hold.
 *
 * Changes are kept in one log ordered by change counter (`seq`): a stream that has everything up to seq S needs
 * exactly the log's entries after S. Each resource has one live slot; a change moves it to the end (the old slot
 * goes stale); a removal leaves a tombstone until every stream has moved past it (compact).
 */
export class ResourceStore {
  private counter = 0;
  private readonly entries = new Map<string, Entry>();
  private logSeqs: number[] = [];
  private logEntries: Entry[] = [];
  private stale = 0;
  private tombstones = 0;
  private readonly listeners = new Set<() => void>();
  private readonly validate: (kind: ResourceKind, value: unknown) => ResourceProblem[];
  private readonly maxResourceBytes: number;
  private readonly counts = new Map<ResourceKind, number>(RESOURCE_KINDS.map((k) => [k, 0]));
  private liveBytes = 0;

  constructor(options: ResourceStoreOptions = {}) {
    this.validate = options.validate ?? ((kind, value) => validateResource(kind, value, { rootNamespace: options.rootNamespace }));
    this.maxResourceBytes = options.maxResourceBytes ?? DEFAULT_MAX_RESOURCE_BYTES;
  }

  /** The change counter: grows by one per change that mattered. */
  get seq(): number {
    return this.counter;
  }

  /** Live resources of `kind` (all kinds when omitted). */
  size(kind?: ResourceKind): number {
    if (kind) return this.counts.get(kind) ?? 0;
    let total = 0;
    for (const n of this.counts.values()) total += n;
    return total;
  }

  /** Bytes of encoded live resources: what the store costs, whatever the number of agents. */
  get encodedBytes(): number {
    return this.liveBytes;
  }

  /** The version held for a resource, undefined when there is none. */
  version(kind: ResourceKind, name: string): string | undefined {
    const entry = this.entries.get(entryKey(kind, name));
    return entry && entry.version !== '' ? entry.version : undefined;
  }

  /** Called after every change that mattered (synchronously; the server batches). */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Add or replace one resource; `name` must be the one its fields give (uid for workloads, namespace/name).
   * Returns true when it changed. Throws ConfigServerError (…RESOURCE_INVALID naming each field, or
   * …RESOURCE_TOO_LARGE) and leaves the store as it was.
   */
  upsert<K extends ResourceKind>(kind: K, name: string, value: ResourceTypes[K]): boolean {
    const entry = this.prepare(kind, name, value);
    const changed = this.put(entry);
    if (changed) this.notify();
    return changed;
  }

  /** Remove one resource; true when it was there. */
  remove(kind: ResourceKind, name: string): boolean {
    const changed = this.drop(kind, name);
    if (changed) this.notify();
    return changed;
  }

  /**
   * Make `items` the whole of `kind`: upsert each, remove the rest. All are validated before anything changes,
   * and listeners hear of it once. Returns how many resources changed.
   */
  replaceAll<K extends ResourceKind>(kind: K, items: readonly ResourceTypes[K][]): number {
    const prepared = items.map((value) => this.prepare(kind, resourceName(kind, value), value));
    const keep = new Set(prepared.map((e) => e.name));
    let changed = 0;
    for (const entry of prepared) if (this.put(entry)) changed++;
    for (const existing of [...this.entries.values()]) {
      if (existing.kind === kind && existing.version !== '' && !keep.has(existing.name) && this.drop(kind, existing.name)) changed++;
    }
    if (changed > 0) this.notify();
    return changed;
  }

  /**
   * Visit the entries changed after `seq`, oldest first, until `visit` returns false. O(log n) to find the
   * start, then one step per entry visited.
   */
  changesSince(seq: number, visit: (entry: Readonly<Entry>) => boolean): void {
    let lo = 0;
    let hi = this.logSeqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.logSeqs[mid] <= seq) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.logSeqs.length; i++) {
      const entry = this.logEntries[i];
      if (entry.seq !== this.logSeqs[i]) continue; // a stale slot: the entry moved on
      if (!visit(entry)) return;
    }
  }

  /** Whether a live resource is held under this kind and name. */
  has(kind: ResourceKind, name: string): boolean {
    return this.version(kind, name) !== undefined;
  }

  /** The removal of `kind`/`name` as a `removed` field, for names that never had a tombstone here. */
  framedRemoval(kind: ResourceKind, name: string): Buffer {
    return configProtocol().encodeControllerMessage({ removed: [{ kind: WIRE_KINDS[kind], name }] });
  }

  /**
   * Forget tombstones at or below `floor` (every stream has moved past them) and rebuild the log when most of
   * it is stale, so the log stays proportional to the resources, not to the history.
   */
  compact(floor: number): void {
    if (this.stale + this.tombstones < 1024 || this.stale + this.tombstones < this.logSeqs.length / 2) return;
    const seqs: number[] = [];
    const entries: Entry[] = [];
    let tombstones = 0;
    for (let i = 0; i < this.logSeqs.length; i++) {
      const entry = this.logEntries[i];
      if (entry.seq !== this.logSeqs[i]) continue;
      if (entry.version === '' && entry.seq <= floor) {
        this.entries.delete(entryKey(entry.kind, entry.name));
        continue;
      }
      if (entry.version === '') tombstones++;
      seqs.push(entry.seq);
      entries.push(entry);
    }
    this.logSeqs = seqs;
    this.logEntries = entries;
    this.stale = 0;
    this.tombstones = tombstones;
  }

  private prepare<K extends ResourceKind>(kind: K, name: string, value: ResourceTypes[K]): Entry {
    const problems = this.validate(kind, value);
    const own = problems.length === 0 ? resourceName(kind, value) : name;
    if (own !== name) problems.push({ field: kind === 'workload' ? 'uid' : 'name', message: `names ${JSON.stringify(own)}` });
    if (problems.length > 0) {
      throw new ConfigServerError(
        'FERRY_ERR_CONTROLLER_RESOURCE_INVALID',
        `${WIRE_KINDS[kind]} ${name}: ${problems.map((p) => (p.field ? `${p.field}: ${p.message}` : p.message)).join('; ')}`,
      );
    }
    const { encodeControllerMessage } = configProtocol();
    // The version is the hash of the encoding without it; then the resource is encoded once more, with it.
    const unversioned = encodeControllerMessage({ resources: [resourceMessage(kind, name, value)] });
    const version = createHash('sha256').update(unversioned).digest('base64url').slice(0, 16);
    const framed = ownBuffer(encodeControllerMessage({ resources: [resourceMessage(kind, name, value, version)] }));
    if (framed.length > this.maxResourceBytes) {
      throw new ConfigServerError(
        'FERRY_ERR_CONTROLLER_RESOURCE_TOO_LARGE',
        `${WIRE_KINDS[kind]} ${name}: ${framed.length} bytes encoded; the config stream carries at most ${this.maxResourceBytes}`,
      );
    }
    return { kind, name, version, seq: 0, framed };
  }

  private put(entry: Entry): boolean {
    const key = entryKey(entry.kind, entry.name);
    const old = this.entries.get(key);
    if (old && old.version === entry.version) return false;
    if (old) {
      old.seq = SUPERSEDED;
      this.stale++;
      if (old.version === '') this.tombstones--;
      else this.liveBytes -= old.framed.length;
    }
    if (!old || old.version === '') this.counts.set(entry.kind, (this.counts.get(entry.kind) ?? 0) + 1);
    entry.seq = ++this.counter;
    this.entries.set(key, entry);
    this.logSeqs.push(entry.seq);
    this.logEntries.push(entry);
    this.liveBytes += entry.framed.length;
    return true;
  }

  private drop(kind: ResourceKind, name: string): boolean {
    const key = entryKey(kind, name);
    const old = this.entries.get(key);
    if (!old || old.version === '') return false;
    old.seq = SUPERSEDED;
    this.stale++;
    this.liveBytes -= old.framed.length;
    this.counts.set(kind, (this.counts.get(kind) ?? 1) - 1);
    const tombstone: Entry = { kind, name, version: '', seq: ++this.counter, framed: ownBuffer(this.framedRemoval(kind, name)) };
    this.tombstones++;
    this.entries.set(key, tombstone);
    this.logSeqs.push(tombstone.seq);
    this.logEntries.push(tombstone);
    return true;
  }

  private notify(): void {
    for (const listener of this.listeners) listener();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The server.

export interface ConfigServerLimits {
  /** Largest message an agent may send (its Hello lists every resource it holds: ~70 bytes each). */
  maxReceiveMessageBytes: number;
  /** A push stops growing past this many bytes (one resource larger than it goes alone). */
  maxPushBytes: number;
  /** Streams served at once; more are refused with RESOURCE_EXHAUSTED. */
  maxStreams: number;
  /** Streams of one node; a newer one ends the oldest (ABORTED), so a reconnecting agent is never locked out. */
  maxStreamsPerNode: number;
  /** Authentications in progress at once; more streams are refused with RESOURCE_EXHAUSTED. */
  maxPendingAuthentications: number;
  authenticationTimeoutMs: number;
  /** A push unacknowledged this long ends its stream (DEADLINE_EXCEEDED). */
  ackTimeoutMs: number;
  /** A Hello or Ack this stream has no use for (unknown nonce, second Hello), tolerated this many times. */
  maxUnexpectedMessages: number;
  /** A burst of changes becomes one push: wait this long after the last change… */
  batchDelayMs: number;
  /** …but never longer than this after the first. */
  maxBatchDelayMs: number;
  /** HTTP/2 streams one connection may hold open (SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentStreamsPerConnection: number;
  /** HTTP/2 PING interval and timeout: a dead agent's stream is noticed and freed. */
  keepaliveMs: number;
  keepaliveTimeoutMs: number;
  /** After a stream was ended, how long its HTTP/2 stream may take to close before it is reset. */
  closeGraceMs: number;
}

export const DEFAULT_CONFIG_SERVER_LIMITS: Readonly<ConfigServerLimits> = Object.freeze({
  maxReceiveMessageBytes: 4 * 1024 * 1024,
  maxPushBytes: 256 * 1024,
  maxStreams: 5000,
  maxStreamsPerNode: 2,
  maxPendingAuthentications: 256,
  authenticationTimeoutMs: 10_000,
  ackTimeoutMs: 60_000,
  maxUnexpectedMessages: 16,
  batchDelayMs: 20,
  maxBatchDelayMs: 250,
  maxConcurrentStreamsPerConnection: 16,
  keepaliveMs: 30_000,
  keepaliveTimeoutMs: 10_000,
  closeGraceMs: 2000,
});

export interface ConfigServerOptions {
  store: ResourceStore;
  authenticator: StreamAuthenticator;
  log: Logger;
  /** The controller's registry: ferry_controller_config_* metrics are registered in it. */
  registry?: Registry;
  limits?: Partial<ConfigServerLimits>;
}

export interface ConfigServerStats {
  /** Authenticated streams being served. */
  streams: number;
  /** Distinct nodes among them. */
  nodes: number;
  pendingAuthentications: number;
  pushes: number;
  acks: number;
  nacks: number;
  /** Resources agents refused (summed over NACKs). */
  rejectedResources: number;
  bytesSent: number;
  /** Pushes written and not yet acknowledged, and their bytes: what the streams hold beyond the store. */
  inflightPushes: number;
  inflightBytes: number;
  /** Streams ended or refused by the server, by reason. */
  closed: Record<CloseReason, number>;
  /** The last resources agents refused (at most 20, newest last), for inspection. */
  recentRejections: Array<{ node: string; kind: string; name: string; version: string; field: string; message: string }>;
  /** Ended streams whose status could not get out (the agent stopped reading), reset at the HTTP/2 level. */
  resets: number;
  store: { resources: number; encodedBytes: number; seq: number };
}

type CloseReason =
  | 'unauthenticated'
  | 'too_many_streams'
  | 'too_many_authentications'
  | 'replaced'
  | 'bad_message'
  | 'unexpected_messages'
  | 'ack_timeout'
  | 'agent_closed'
  | 'shutdown';

const CLOSE_REASONS: readonly CloseReason[] = [
  'unauthenticated',
  'too_many_streams',
  'too_many_authentications',
  'replaced',
  'bad_message',
  'unexpected_messages',
  'ack_timeout',
  'agent_closed',
  'shutdown',
];

type AgentCall = grpc.ServerDuplexStream<AgentMessage__Output, Buffer>;

/** A push written to one stream and not yet acknowledged. */
interface Inflight {
  nonce: string;
  /** Everything up to this seq is in it (or was skipped as already held). */
  through: number;
  bytes: number;
  synced: boolean;
  timer: NodeJS.Timeout;
}

/** One agent's stream: what it has acknowledged, and while it syncs, what it said it held. */
class AgentStream {
  /** The agent holds everything up to this seq (acknowledged). */
  acked = 0;
  /** store.seq when the Hello came: the initial sync is done once a push through it is acknowledged. */
  startSeq = 0;
  /** From the Hello, until the initial sync is acknowledged: resources the agent holds, key → version. */
  claims: Map<string, string> | undefined;
  /** Claimed resources the store does not hold: removed in the first push. */
  removals: Array<{ kind: ResourceKind; name: string }> = [];
  inflight: Inflight | undefined;
  hello = false;
  synced = false;
  sentFirst = false;
  unexpected = 0;
  nonces = 0;
  closed = false;

  constructor(
    readonly id: number,
    readonly call: AgentCall,
    readonly identity: StreamIdentity,
    readonly peer: string,
  ) {}
}

function status(code: grpc.status, details: string): Partial<grpc.StatusObject> {
  return { code, details, metadata: new grpc.Metadata() };
}

/**
 * Serves ConfigService.Stream: authenticates each agent, then streams it the store. Per stream it keeps only what
 * the agent acknowledged (a seq) and at most one unacknowledged push (at most maxPushBytes, shared encodings
 * copied once into it), so memory grows with the resources, not with resources × agents.
 *
 * Shutdown: close() ends every stream with UNAVAILABLE and stops the server listen() started; a server passed to
 * register() is the caller's to stop.
 */
export class ConfigServer {
  private readonly store: ResourceStore;
  private readonly authenticator: StreamAuthenticator;
  private readonly log: Logger;
  readonly limits: Readonly<ConfigServerLimits>;
  private readonly streams = new Map<number, AgentStream>();
  private readonly byNode = new Map<string, AgentStream[]>();
  private nextId = 1;
  private pendingAuthentications = 0;
  private batchTimer: NodeJS.Timeout | undefined;
  private batchStarted = 0;
  private readonly unsubscribe: () => void;
  private ownServer: grpc.Server | undefined;
  private closing = false;
  private readonly recentRejections: ConfigServerStats['recentRejections'] = [];
  private readonly counters = {
    pushes: 0,
    acks: 0,
    nacks: 0,
    rejectedResources: 0,
    bytesSent: 0,
    resets: 0,
    closed: Object.fromEntries(CLOSE_REASONS.map((r) => [r, 0])) as Record<CloseReason, number>,
  };

  constructor(options: ConfigServerOptions) {
    this.store = options.store;
    this.authenticator = options.authenticator;
    this.log = options.log.child({ component: 'config-server' });
    this.limits = Object.freeze({ ...DEFAULT_CONFIG_SERVER_LIMITS, ...options.limits });
    this.unsubscribe = this.store.onChange(() => this.changed());
    if (options.registry) this.registerMetrics(options.registry);
  }

  /** grpc.Server options for these limits (message size, concurrent streams, keepalive). */
  serverOptions(): grpc.ServerOptions {
    const l = this.limits;
    return {
      'grpc.max_receive_message_length': l.maxReceiveMessageBytes,
      'grpc.max_concurrent_streams': l.maxConcurrentStreamsPerConnection,
      'grpc.keepalive_time_ms': l.keepaliveMs,
      'grpc.keepalive_timeout_ms': l.keepaliveTimeoutMs,
      // Agents are not expected to ping; a stream's data and the server's pings keep the connection alive.
      'grpc.keepalive_permit_without_calls': 0,
    };
  }

  /** Add ConfigService to a server the caller owns (the controller serves the CA on the same port). */
  register(server: grpc.Server): void {
    const { service } = configProtocol();
    // Pushes are assembled from pre-encoded parts (ResourceStore): the handler writes bytes, sent as they are.
    const raw: grpc.ServiceDefinition = {
      Stream: { ...service.Stream, responseSerialize: (bytes: Buffer) => bytes },
    };
    server.addService(raw, { Stream: (call: AgentCall) => this.accept(call) });
  }

  /**
   * Serve on `host:port` (port 0: any free one) with TLS from the caller's key and certificate chain; resolves
   * with the bound port. Agents authenticate with their token, not with client certificates.
   */
  async listen(options: { address: string; keyPem: string | Buffer; certPem: string | Buffer }): Promise<{ port: number }> {
    const server = new grpc.Server(this.serverOptions());
    this.register(server);
    const credentials = grpc.ServerCredentials.createSsl(
      null,
      [{ private_key: Buffer.from(options.keyPem), cert_chain: Buffer.from(options.certPem) }],
      false,
    );
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(options.address, credentials, (err, bound) => {
        if (err) {
          reject(
            new ConfigServerError('FERRY_ERR_CONTROLLER_LISTEN', `config server: cannot listen on ${options.address}: ${err.message}`, {
              cause: err,
            }),
          );
        } else {
          resolve(bound);
        }
      });
    });
    this.ownServer = server;
    return { port };
  }

  stats(): ConfigServerStats {
    let inflightPushes = 0;
    let inflightBytes = 0;
    for (const s of this.streams.values()) {
      if (s.inflight) {
        inflightPushes++;
        inflightBytes += s.inflight.bytes;
      }
    }
    return {
      streams: this.streams.size,
      nodes: this.byNode.size,
      pendingAuthentications: this.pendingAuthentications,
      pushes: this.counters.pushes,
      acks: this.counters.acks,
      nacks: this.counters.nacks,
      rejectedResources: this.counters.rejectedResources,
      bytesSent: this.counters.bytesSent,
      inflightPushes,
      inflightBytes,
      closed: { ...this.counters.closed },
      resets: this.counters.resets,
      recentRejections: [...this.recentRejections],
      store: { resources: this.store.size(), encodedBytes: this.store.encodedBytes, seq: this.store.seq },
    };
  }

  /** End every stream (UNAVAILABLE: agents reconnect, keeping their state) and stop listen()'s server. */
  async close(): Promise<void> {
    this.closing = true;
    this.unsubscribe();
    if (this.batchTimer) clearTimeout(this.batchTimer);
    for (const stream of [...this.streams.values()]) this.end(stream, 'shutdown', grpc.status.UNAVAILABLE, 'controller shutting down');
    const server = this.ownServer;
    this.ownServer = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, this.limits.closeGraceMs);
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }

  // --- one stream ----------------------------------------------------------------------------------------------

  private accept(call: AgentCall): void {
    const peer = call.getPeer();
    if (this.closing) {
      this.refuse(call, 'shutdown', grpc.status.UNAVAILABLE, 'controller shutting down');
      return;
    }
    if (this.streams.size >= this.limits.maxStreams) {
      this.refuse(
        call,
        'too_many_streams',
        grpc.status.RESOURCE_EXHAUSTED,
        `the controller serves at most ${this.limits.maxStreams} streams`,
      );
      return;
    }
    if (this.pendingAuthentications >= this.limits.maxPendingAuthentications) {
      this.refuse(call, 'too_many_authentications', grpc.status.RESOURCE_EXHAUSTED, 'too many streams authenticating; retry later');
      return;
    }
    // Nothing is read before the agent is authenticated: until then its messages wait in HTTP/2 flow control.
    this.pendingAuthentications++;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`authentication took longer than ${this.limits.authenticationTimeoutMs} ms`)),
        this.limits.authenticationTimeoutMs,
      );
    });
    Promise.race([this.authenticator.authenticate(call.metadata, peer), timeout])
      .finally(() => {
        clearTimeout(timer);
        this.pendingAuthentications--;
      })
      .then(
        (identity) => {
          if (call.cancelled || this.closing) return;
          this.admit(call, identity, peer);
        },
        (err: Error) => {
          this.log.warn({ peer, reason: err.message }, 'agent refused: authentication failed');
          // The reason stays in the log: a caller probing tokens learns nothing from the status.
          this.refuse(call, 'unauthenticated', grpc.status.UNAUTHENTICATED, 'authentication failed');
        },
      );
  }

  private admit(call: AgentCall, identity: StreamIdentity, peer: string): void {
    const stream = new AgentStream(this.nextId++, call, identity, peer);
    for (
      let siblings = this.byNode.get(identity.node) ?? [];
      siblings.length >= this.limits.maxStreamsPerNode;
      siblings = this.byNode.get(identity.node) ?? []
    ) {
      // end() forgets the stream, which shortens the node's list.
      this.end(siblings[0], 'replaced', grpc.status.ABORTED, `replaced by a newer stream of node ${identity.node}`);
    }
    this.streams.set(stream.id, stream);
    this.byNode.set(identity.node, [...(this.byNode.get(identity.node) ?? []), stream]);
    this.log.info({ stream: stream.id, node: identity.node, subject: identity.subject, peer }, 'agent connected');
    call.on('data', (message: AgentMessage__Output) => this.received(stream, message));
    call.on('error', (err: Error) => {
      // A message that does not decode, an oversize one, or the agent going away.
      this.log.debug({ stream: stream.id, err }, 'agent stream error');
      this.forget(stream);
    });
    call.on('cancelled', () => this.forget(stream));
    call.on('end', () => {
      // The agent half-closed: it will send no Ack, so nothing more is pushed.
      this.end(stream, 'agent_closed', grpc.status.OK, 'stream closed by the agent');
    });
  }

  private received(stream: AgentStream, message: AgentMessage__Output): void {
    if (stream.closed) return;
    if (message.message === 'hello' && message.hello) {
      if (stream.hello) {
        this.unexpectedMessage(stream, 'a second Hello');
        return;
      }
      stream.hello = true;
      this.startSync(stream, message.hello.initialResourceVersions);
      return;
    }
    if (message.message === 'ack' && message.ack) {
      if (!stream.hello) {
        this.end(stream, 'bad_message', grpc.status.INVALID_ARGUMENT, 'the first message must be a Hello');
        return;
      }
      this.acknowledged(stream, message.ack.nonce, message.ack.rejected);
      return;
    }
    this.end(stream, 'bad_message', grpc.status.INVALID_ARGUMENT, 'message is neither a Hello nor an Ack');
  }

  private startSync(stream: AgentStream, held: ResourceVersion__Output[]): void {
    const claims = new Map<string, string>();
    for (const [i, claim] of held.entries()) {
      const kind = modelKind(claim.kind);
      if (kind === undefined || claim.name === '') {
        this.end(stream, 'bad_message', grpc.status.INVALID_ARGUMENT, `hello.initialResourceVersions[${i}]: unknown kind or empty name`);
        return;
      }
      claims.set(entryKey(kind, claim.name), claim.version);
      if (!this.store.has(kind, claim.name)) stream.removals.push({ kind, name: claim.name });
    }
    stream.claims = claims;
    stream.startSeq = this.store.seq;
    this.push(stream);
  }

  /** Write the next push if none is outstanding and there is anything to say. */
  private push(stream: AgentStream): void {
    if (stream.closed || stream.inflight || !stream.hello) return;
    const parts: Buffer[] = [];
    let bytes = 0;
    const max = this.limits.maxPushBytes;
    for (const removal of stream.removals) {
      const framed = this.store.framedRemoval(removal.kind, removal.name);
      parts.push(framed);
      bytes += framed.length;
    }
    stream.removals = [];
    let through = stream.acked;
    let complete = true;
    const claims = stream.claims;
    this.store.changesSince(stream.acked, (entry) => {
      const held = claims?.get(entryKey(entry.kind, entry.name));
      const skip =
        entry.seq <= stream.startSeq &&
        // A tombstone from before the Hello: the agent either never had it or it is among the removals above.
        (entry.version === '' || held === entry.version);
      if (!skip) {
        if (parts.length > 0 && bytes + entry.framed.length > max) {
          complete = false;
          return false;
        }
        parts.push(entry.framed);
        bytes += entry.framed.length;
      }
      through = entry.seq;
      return true;
    });
    if (complete) through = Math.max(through, this.store.seq);
    const synced = through >= stream.startSeq;
    if (parts.length === 0 && stream.sentFirst && (stream.synced || !synced)) {
      // Nothing the agent lacks: it is where the store is.
      stream.acked = through;
      return;
    }
    const nonce = String(++stream.nonces);
    const header = configProtocol().encodeControllerMessage({
      nonce,
      systemVersion: String(through),
      synced,
      ...(stream.sentFirst ? {} : { node: stream.identity.node }),
    });
    const frame = Buffer.concat([header, ...parts]);
    stream.sentFirst = true;
    stream.inflight = {
      nonce,
      through,
      bytes: frame.length,
      synced,
      timer: setTimeout(
        () =>
          this.end(
            stream,
            'ack_timeout',
            grpc.status.DEADLINE_EXCEEDED,
            `push ${nonce} not acknowledged within ${this.limits.ackTimeoutMs} ms`,
          ),
        this.limits.ackTimeoutMs,
      ),
    };
    stream.inflight.timer.unref();
    this.counters.pushes++;
    this.counters.bytesSent += frame.length;
    stream.call.write(frame);
  }

  private acknowledged(stream: AgentStream, nonce: string, rejected: ResourceError__Output[]): void {
    const inflight = stream.inflight;
    if (!inflight || inflight.nonce !== nonce) {
      this.unexpectedMessage(stream, `an Ack for nonce ${JSON.stringify(nonce.slice(0, 32))}, not the push outstanding`);
      return;
    }
    clearTimeout(inflight.timer);
    stream.inflight = undefined;
    stream.acked = inflight.through;
    if (inflight.synced && !stream.synced) {
      stream.synced = true;
      stream.claims = undefined;
      this.log.info({ stream: stream.id, node: stream.identity.node, seq: inflight.through }, 'agent synced');
    }
    if (rejected.length > 0) {
      this.counters.nacks++;
      this.counters.rejectedResources += rejected.length;
      for (const r of rejected.slice(0, 20)) {
        this.recentRejections.push({
          node: stream.identity.node,
          kind: String(r.kind),
          name: r.name.slice(0, 300),
          version: r.version.slice(0, 64),
          field: r.field.slice(0, 300),
          message: r.message.slice(0, 500),
        });
      }
      this.recentRejections.splice(0, Math.max(0, this.recentRejections.length - 20));
      // The agent keeps its previous version of each; the next change of the resource is sent as usual.
      this.log.warn(
        {
          stream: stream.id,
          node: stream.identity.node,
          nonce,
          rejected: rejected.length,
          first: rejected
            .slice(0, 5)
            .map((r) => ({ kind: r.kind, name: r.name, version: r.version, field: r.field, message: r.message.slice(0, 500) })),
        },
        'agent refused resources',
      );
    } else {
      this.counters.acks++;
    }
    this.push(stream);
    this.maybeCompact();
  }

  private unexpectedMessage(stream: AgentStream, what: string): void {
    stream.unexpected++;
    if (stream.unexpected > this.limits.maxUnexpectedMessages) {
      this.end(
        stream,
        'unexpected_messages',
        grpc.status.INVALID_ARGUMENT,
        `more than ${this.limits.maxUnexpectedMessages} unexpected messages (last: ${what})`,
      );
    }
  }

  // --- batching --------------------------------------------------------------------------------------------------

  /** A store change: push after batchDelayMs of quiet, or maxBatchDelayMs after the first change of the burst. */
  private changed(): void {
    const now = Date.now();
    if (this.batchTimer) {
      if (now - this.batchStarted >= this.limits.maxBatchDelayMs) return;
      clearTimeout(this.batchTimer);
    } else {
      this.batchStarted = now;
    }
    const wait = Math.min(this.limits.batchDelayMs, Math.max(0, this.batchStarted + this.limits.maxBatchDelayMs - now));
    this.batchTimer = setTimeout(() => this.flush(), wait);
    this.batchTimer.unref();
  }

  private flush(): void {
    this.batchTimer = undefined;
    // Streams with a push outstanding get the coalesced changes when they acknowledge it.
    for (const stream of this.streams.values()) this.push(stream);
    this.maybeCompact();
  }

  private maybeCompact(): void {
    let floor = this.store.seq;
    // A stream still to send its Hello is left out: its sync will compare its claims with the live store, so
    // no tombstone is owed to it (and one that never says Hello cannot make tombstones pile up).
    for (const s of this.streams.values()) if (s.hello) floor = Math.min(floor, Math.max(s.acked, s.startSeq));
    this.store.compact(floor);
  }

  // --- ending streams -------------------------------------------------------------------------------------------

  private refuse(call: AgentCall, reason: CloseReason, code: grpc.status, details: string): void {
    this.counters.closed[reason]++;
    call.emit('error', status(code, details));
  }

  /** End a stream with a status; if its HTTP/2 stream does not close within closeGraceMs, reset it. */
  private end(stream: AgentStream, reason: CloseReason, code: grpc.status, details: string): void {
    if (stream.closed) return;
    this.forget(stream);
    this.counters.closed[reason]++;
    if (code !== grpc.status.OK) this.log.info({ stream: stream.id, node: stream.identity.node, reason, details }, 'agent stream ended');
    const { call } = stream;
    if (code === grpc.status.OK) call.end();
    else call.emit('error', status(code, details));
    // The status waits behind any push still queued for an agent that does not read; a reset frees it.
    const timer = setTimeout(() => {
      if (resetHttp2Stream(call)) this.counters.resets++;
    }, this.limits.closeGraceMs);
    timer.unref();
    call.once('close', () => clearTimeout(timer));
    call.once('finish', () => clearTimeout(timer));
  }

  /** Drop the stream's state (idempotent). */
  private forget(stream: AgentStream): void {
    if (stream.closed) return;
    stream.closed = true;
    if (stream.inflight) clearTimeout(stream.inflight.timer);
    stream.inflight = undefined;
    stream.claims = undefined;
    this.streams.delete(stream.id);
    const siblings = (this.byNode.get(stream.identity.node) ?? []).filter((s) => s !== stream);
    if (siblings.length > 0) this.byNode.set(stream.identity.node, siblings);
    else this.byNode.delete(stream.identity.node);
  }

  private registerMetrics(registry: Registry): void {
    const server = this;
    const gauge = (name: string, help: string, read: (s: ConfigServerStats) => number): void => {
      registry.registerMetric(
        new Gauge({
          name,
          help,
          registers: [],
          collect() {
            this.set(read(server.stats()));
          },
        }),
      );
    };
    const counter = (name: string, help: string, read: (s: ConfigServerStats) => number): void => {
      registry.registerMetric(
        new Counter({
          name,
          help,
          registers: [],
          collect() {
            this.reset();
            this.inc(read(server.stats()));
          },
        }),
      );
    };
    gauge('ferry_controller_config_streams', 'Agent config streams being served', (s) => s.streams);
    gauge('ferry_controller_config_resources', 'Resources in the config store', (s) => s.store.resources);
    gauge('ferry_controller_config_store_bytes', 'Encoded bytes of the resources in the config store', (s) => s.store.encodedBytes);
    gauge('ferry_controller_config_inflight_bytes', 'Bytes of pushes written and not yet acknowledged', (s) => s.inflightBytes);
    counter('ferry_controller_config_pushes_total', 'Pushes written to agents', (s) => s.pushes);
    counter('ferry_controller_config_acks_total', 'Pushes agents acknowledged whole', (s) => s.acks);
    counter('ferry_controller_config_nacks_total', 'Pushes agents acknowledged refusing some resources', (s) => s.nacks);
    counter('ferry_controller_config_push_bytes_total', 'Bytes of pushes written to agents', (s) => s.bytesSent);
    registry.registerMetric(
      new Counter({
        name: 'ferry_controller_config_streams_closed_total',
        help: 'Agent streams the controller refused or ended, by reason',
        labelNames: ['reason'],
        registers: [],
        collect() {
          this.reset();
          const { closed } = server.stats();
          for (const reason of CLOSE_REASONS) this.inc({ reason }, closed[reason]);
        },
      }),
    );
  }
}

/**
 * RST_STREAM(CANCEL) under a grpc-js server call whose status cannot get out (the agent stopped reading, so the
 * trailers wait behind queued data): grpc-js has no public way, so this finds its HTTP/2 stream by shape.
 */
function resetHttp2Stream(call: AgentCall): boolean {
  let node: unknown = call;
  for (let depth = 0; depth < 6 && node !== null && typeof node === 'object'; depth++) {
    const candidate = (node as { stream?: unknown }).stream;
    if (isHttp2Stream(candidate)) {
      if (candidate.closed || candidate.destroyed) return false;
      candidate.close(http2.constants.NGHTTP2_CANCEL);
      return true;
    }
    node = (node as { call?: unknown; nextCall?: unknown }).nextCall ?? (node as { call?: unknown }).call;
  }
  return false;
}

function isHttp2Stream(value: unknown): value is http2.Http2Stream {
  return (
    value !== null &&
    typeof value === 'object' &&
    'rstCode' in value &&
    'session' in value &&
    typeof (value as { close?: unknown }).close === 'function'
  );
}
