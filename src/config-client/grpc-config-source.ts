// The agent's side of the config stream: a ConfigSource that dials the controller over TLS with the node's
// service-account token, validates every resource it is sent, applies the valid ones, ACKs or NACKs each push,
// and reconnects with backoff — keeping the configuration it has while the controller is away.
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import {
  WIRE_KINDS,
  configProtocol,
  decodeResource,
  modelKind,
  type ConfigServiceClient,
  type ControllerMessage__Output,
  type ResourceError,
  type AgentMessage,
} from '../proto';
import {
  DELTA_FIELDS,
  isEmptyDelta,
  resourceName,
  validateResource,
  type ConfigSink,
  type ConfigSource,
  type ResourceKind,
  type ResourceTypes,
  type StateDelta,
} from '../state';
import type { Logger } from '../telemetry';
import { ConfigClientError } from './errors';

export interface GrpcConfigSourceOptions {
  /** The controller, `host:port`. */
  address: string;
  /** PEM bundle the controller's certificate must chain to; read again on every connect (rotation). */
  caFile: string;
  /** The projected service-account token; read again on every connect, since the kubelet rotates it. */
  tokenFile: string;
  /** The node this agent runs on: a controller that names another one is refused, nothing applied. */
  node: string;
  /** Name the controller's certificate must carry, when it is not the host of `address`. */
  serverName?: string;
  /** Root namespace the agent compiles policies with (validation must agree with the state). */
  rootNamespace?: string;
  log: Logger;
  /** Reconnect delay: first, and cap; each attempt doubles it, with jitter (a random 50–100 % of it). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Largest push accepted (the controller's resources are at most 4 MiB each). */
  maxReceiveMessageBytes?: number;
  /** HTTP/2 PINGs towards the controller, so a dead one is noticed while it is quiet. */
  keepaliveMs?: number;
}

export interface GrpcConfigSourceStats {
  connected: boolean;
  /** Streams opened (including the first). */
  connects: number;
  pushes: number;
  acks: number;
  nacks: number;
  /** Resources held (as their versions, for the resync). */
  resources: number;
  /** The node the controller named. */
  node?: string;
  lastError?: string;
}

function heldKey(kind: ResourceKind, name: string): string {
  return `${kind}\u0000${name}`;
}

const POLICY_KINDS: readonly ResourceKind[] = ['authorizationPolicy', 'peerAuthentication'];

/** The delta's lists for `kind`, created empty when absent. */
function deltaField(delta: StateDelta, kind: ResourceKind): { upsert: unknown[]; remove: string[] } {
  const key = DELTA_FIELDS[kind];
  const field = (delta[key] ?? {}) as { upsert?: unknown[]; remove?: string[] };
  field.upsert = field.upsert ?? [];
  field.remove = field.remove ?? [];
  (delta as Record<string, unknown>)[key] = field;
  return field as { upsert: unknown[]; remove: string[] };
}

/**
 * Resources refused by the agent never reach the sink, so the state keeps the previous version of each (or stays
 * without it); the controller hears which, and why, in the NACK. Stop: cancels the stream and any retry; no
 * apply() after stop() resolves.
 */
export class GrpcConfigSource implements ConfigSource {
  readonly description: string;
  private sink: ConfigSink | undefined;
  /** What the agent holds, kind + name → version: the Hello of the next stream lists it. */
  private readonly held = new Map<string, string>();
  private client: ConfigServiceClient | undefined;
  private call: grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output> | undefined;
  private retry: NodeJS.Timeout | undefined;
  private attempt = 0;
  private stopped = false;
  private isSynced = false;
  private readonly log: Logger;
  private readonly counts = { connects: 0, pushes: 0, acks: 0, nacks: 0 };
  private connected = false;
  private controllerNode: string | undefined;
  private lastError: string | undefined;

  constructor(private readonly options: GrpcConfigSourceOptions) {
    this.description = `controller ${options.address}`;
    this.log = options.log.child({ component: 'config-client', controller: options.address });
  }

  get synced(): boolean {
    return this.isSynced;
  }

  stats(): GrpcConfigSourceStats {
    return {
      connected: this.connected,
      ...this.counts,
      resources: this.held.size,
      ...(this.controllerNode !== undefined ? { node: this.controllerNode } : {}),
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
    };
  }

  start(sink: ConfigSink): void {
    this.sink = sink;
    this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    this.hangUp();
    this.sink = undefined;
  }

  private connect(): void {
    this.retry = undefined;
    if (this.stopped) return;
    let token: string;
    let ca: Buffer;
    try {
      token = fs.readFileSync(this.options.tokenFile, 'utf8').trim();
      ca = fs.readFileSync(this.options.caFile);
      if (token === '') throw new Error(`${this.options.tokenFile} is empty`);
    } catch (err) {
      this.failed(
        new ConfigClientError('FERRY_ERR_CONFIG_CLIENT_CREDENTIALS', `cannot read the token or CA file: ${(err as Error).message}`, {
          cause: err,
        }),
      );
      return;
    }
    const { Client } = configProtocol();
    const channelOptions: grpc.ChannelOptions = {
      'grpc.max_receive_message_length': this.options.maxReceiveMessageBytes ?? 16 * 1024 * 1024,
      'grpc.keepalive_time_ms': this.options.keepaliveMs ?? 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      // Reconnection is this source's (with its backoff and a fresh token), not the channel's.
      'grpc.enable_retries': 0,
      'grpc.use_local_subchannel_pool': 1,
      ...(this.options.serverName
        ? { 'grpc.ssl_target_name_override': this.options.serverName, 'grpc.default_authority': this.options.serverName }
        : {}),
    };
    const client = new Client(this.options.address, grpc.credentials.createSsl(ca), channelOptions);
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    const call = client.Stream(metadata);
    this.client = client;
    this.call = call;
    this.counts.connects++;
    let first = true;
    call.on('data', (message: ControllerMessage__Output) => {
      if (this.call !== call || this.stopped) return;
      if (first) {
        first = false;
        if (!this.acceptNode(message.node)) return;
        this.connected = true;
      }
      this.received(call, message);
    });
    call.on('status', (s: grpc.StatusObject) => {
      if (this.call !== call) return;
      this.failed(new ConfigClientError('FERRY_ERR_CONFIG_CLIENT_STREAM', `stream ended: ${grpc.status[s.code] ?? s.code} ${s.details}`));
    });
    // 'error' carries the same status; listening keeps it from being thrown.
    call.on('error', () => {});
    call.write({
      hello: {
        initialResourceVersions: [...this.held].map(([key, version]) => {
          const [kind, name] = key.split('\u0000') as [ResourceKind, string];
          return { kind: WIRE_KINDS[kind], name, version };
        }),
      },
    });
  }

  /** The first push names the node; one that is not ours ends the stream before anything is applied. */
  private acceptNode(node: string): boolean {
    this.controllerNode = node;
    if (node === this.options.node) return true;
    this.failed(
      new ConfigClientError(
        'FERRY_ERR_CONFIG_CLIENT_NODE_MISMATCH',
        `the controller says this agent serves node ${JSON.stringify(node)}, but it runs on ${JSON.stringify(this.options.node)}; nothing applied`,
      ),
    );
    return false;
  }

  /** Validate, apply what is valid, answer. */
  private received(call: grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>, message: ControllerMessage__Output): void {
    this.counts.pushes++;
    const rejected: ResourceError[] = [];
    const delta: StateDelta = {};
    const versions: Array<{ key: string; version: string | undefined }> = [];
    const reject = (kind: ResourceKind | undefined, name: string, version: string, field: string, why: string): void => {
      rejected.push({ kind: kind ? WIRE_KINDS[kind] : 'RESOURCE_KIND_UNSPECIFIED', name, version, field, message: why });
    };
    for (const name of message.removed) {
      const kind = modelKind(name.kind);
      if (kind === undefined) {
        reject(undefined, name.name, '', 'kind', `${JSON.stringify(name.kind)} is not a resource kind this agent knows`);
        continue;
      }
      deltaField(delta, kind).remove.push(name.name);
      versions.push({ key: heldKey(kind, name.name), version: undefined });
    }
    for (const resource of message.resources) {
      const decoded = decodeResource(resource);
      if (!decoded.ok) {
        reject(decoded.kind, decoded.name, decoded.version, decoded.field, decoded.message);
        continue;
      }
      const { kind, name, version, value } = decoded;
      const problems = validateResource(kind, value, { rootNamespace: this.options.rootNamespace });
      if (problems.length === 0) {
        const own = resourceName(kind, value as ResourceTypes[typeof kind]);
        if (own !== name)
          problems.push({ field: kind === 'workload' ? 'uid' : 'name', message: `names ${JSON.stringify(own)}, not the resource's name` });
      }
      if (problems.length > 0) {
        for (const p of problems) reject(kind, name, version, p.field, p.message);
        continue;
      }
      deltaField(delta, kind).upsert.push(value);
      versions.push({ key: heldKey(kind, name), version });
    }
    const becameSynced = message.synced && !this.isSynced;
    if (!isEmptyDelta(delta) || becameSynced) {
      const applied = this.deliver(delta, message, rejected);
      for (const { key, version } of versions) {
        if (!applied.has(key.split('\u0000')[0] as ResourceKind)) continue;
        if (version === undefined) this.held.delete(key);
        else this.held.set(key, version);
      }
    }
    if (rejected.length > 0) {
      this.counts.nacks++;
      this.log.warn(
        { nonce: message.nonce, rejected: rejected.length, first: rejected.slice(0, 5) },
        'refused resources from the controller; keeping their previous versions',
      );
    } else {
      this.counts.acks++;
    }
    this.attempt = 0;
    this.lastError = undefined;
    call.write({ ack: { nonce: message.nonce, rejected } });
  }

  /**
   * Hand the delta to the sink; when the sink throws (policies that compile alone but not together), apply the
   * rest without the push's policies and refuse those. Returns the kinds that were applied.
   */
  private deliver(delta: StateDelta, message: ControllerMessage__Output, rejected: ResourceError[]): Set<ResourceKind> {
    const all = new Set<ResourceKind>(['workload', 'service', ...POLICY_KINDS]);
    const synced = this.isSynced || message.synced;
    const update = { version: message.systemVersion, synced };
    const sink = this.sink;
    if (!sink) return new Set();
    try {
      sink.apply(delta, update);
      this.isSynced = synced;
      return all;
    } catch (err) {
      const why = `could not be applied with the agent's other policies: ${(err as Error).message}`;
      for (const resource of message.resources) {
        const kind = modelKind(resource.kind);
        if (kind && POLICY_KINDS.includes(kind))
          rejected.push({ kind: resource.kind, name: resource.name, version: resource.version, field: '', message: why });
      }
      const rest: StateDelta = { workloads: delta.workloads, services: delta.services };
      try {
        sink.apply(rest, update);
        this.isSynced = synced;
      } catch (again) {
        this.log.error({ err: again }, 'the state refused a push without its policies; nothing applied');
        return new Set();
      }
      return new Set<ResourceKind>(['workload', 'service']);
    }
  }

  private failed(err: ConfigClientError): void {
    this.hangUp();
    if (this.stopped) return;
    this.lastError = err.message;
    const initial = this.options.backoff?.initialMs ?? 500;
    const max = this.options.backoff?.maxMs ?? 30_000;
    const delay = Math.min(max, initial * 2 ** Math.min(this.attempt, 20)) * (0.5 + Math.random() / 2);
    this.attempt++;
    this.log.warn(
      { err, retryInMs: Math.round(delay), synced: this.isSynced },
      'controller unreachable; keeping the current configuration',
    );
    this.retry = setTimeout(() => this.connect(), delay);
    this.retry.unref();
  }

  private hangUp(): void {
    this.connected = false;
    const call = this.call;
    const client = this.client;
    this.call = undefined;
    this.client = undefined;
    call?.cancel();
    client?.close();
  }
}
