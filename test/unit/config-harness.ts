// Shared pieces of the config-stream tests: a TLS key pair for the controller, a real authenticator that maps
// static tokens to nodes (the production one reviews Kubernetes tokens; this one needs no API server), a
// ConfigServer on 127.0.0.1, token and CA files, and a sink that records what reached the agent's state.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ConfigServer, ResourceStore, type StreamAuthenticator, type StreamIdentity, type ConfigServerLimits } from '../../src/controller';
import { configProtocol, type AgentMessage, type ControllerMessage__Output } from '../../src/proto';
import { ClusterState, type ConfigSink, type ConfigUpdate, type StateDelta, type Workload, type Service } from '../../src/state';
import { createRootLogger, type Logger } from '../../src/telemetry';
import { forgeCertificate, foreignRootSigner } from '../fixtures/certs';

export const SERVER_NAME = 'controller.ferry.test';

export interface Pki {
  caPem: string;
  keyPem: string;
  certPem: string;
}

let pki: Promise<Pki> | undefined;

/** A root and a controller certificate for SERVER_NAME signed by it (made once per test file). */
export function controllerPki(): Promise<Pki> {
  pki ??= (async () => {
    const root = await foreignRootSigner('CN=config test root');
    const leaf = await forgeCertificate(root, { uris: [], dns: [SERVER_NAME] });
    return { caPem: root.certPem, keyPem: leaf.keyPem, certPem: leaf.chainPem.join('') };
  })();
  return pki;
}

/** Static bearer tokens → identities; anything else is refused. */
export class StaticTokenAuthenticator implements StreamAuthenticator {
  calls = 0;
  constructor(private readonly tokens: Record<string, string>) {}

  async authenticate(metadata: grpc.Metadata): Promise<StreamIdentity> {
    this.calls++;
    const header = metadata.get('authorization')[0];
    const token = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice('Bearer '.length) : undefined;
    const node = token !== undefined ? this.tokens[token] : undefined;
    if (node === undefined) throw new Error('unknown token');
    return { node, subject: `system:serviceaccount:ferry-system:agent-${node}` };
  }
}

export const TOKENS = { 'token-a': 'node-a', 'token-b': 'node-b', 'token-evil': 'node-evil' };

export const quietLog: Logger = createRootLogger('silent');

type After = { after: (fn: () => unknown) => void };

export interface RunningServer {
  server: ConfigServer;
  store: ResourceStore;
  port: number;
  address: string;
  pki: Pki;
}

export async function startConfigServer(
  t: After,
  options: { store?: ResourceStore; limits?: Partial<ConfigServerLimits>; authenticator?: StreamAuthenticator; port?: number } = {},
): Promise<RunningServer> {
  const keys = await controllerPki();
  const store = options.store ?? new ResourceStore();
  const server = new ConfigServer({
    store,
    authenticator: options.authenticator ?? new StaticTokenAuthenticator(TOKENS),
    log: quietLog,
    limits: { batchDelayMs: 5, maxBatchDelayMs: 50, closeGraceMs: 300, ...options.limits },
  });
  const { port } = await server.listen({ address: `127.0.0.1:${options.port ?? 0}`, keyPem: keys.keyPem, certPem: keys.certPem });
  t.after(() => server.close());
  return { server, store, port, address: `127.0.0.1:${port}`, pki: keys };
}

/** A temporary directory holding the CA bundle and one token file per given token; removed after the test. */
export function credentialFiles(t: After, caPem: string, token: string): { dir: string; caFile: string; tokenFile: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-config-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const caFile = path.join(dir, 'ca.pem');
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(caFile, caPem);
  fs.writeFileSync(tokenFile, `${token}\n`);
  return { dir, caFile, tokenFile };
}

/** A sink over a real ClusterState that keeps every delta it was given. */
export class RecordingSink implements ConfigSink {
  readonly state = new ClusterState();
  readonly applied: Array<{ delta: StateDelta; update: ConfigUpdate }> = [];
  /** Throw from apply() (to exercise a source's handling). */
  failNext: Error | undefined;

  apply(delta: StateDelta, update: ConfigUpdate): void {
    if (this.failNext) {
      const err = this.failNext;
      this.failNext = undefined;
      throw err;
    }
    this.state.apply(delta, update.revision);
    this.applied.push({ delta: structuredClone(delta), update });
  }
}

/** Resolves when `condition` holds, polling; rejects after `timeoutMs` naming `what`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function workload(name: string, ip: string, extra: Partial<Workload> = {}): Workload {
  return {
    uid: `shop/${name}`,
    namespace: 'shop',
    name,
    node: 'node-a',
    serviceAccount: 'default',
    ips: [ip],
    labels: { app: name },
    meshEnabled: true,
    netnsPath: '',
    excludeOutboundPorts: [],
    excludeOutboundCidrs: [],
    ...extra,
  };
}

export function service(name: string, vip: string, endpoints: Array<{ ip: string; workloadUid?: string }>): Service {
  return {
    namespace: 'shop',
    name,
    hostname: `${name}.shop.svc.cluster.local`,
    vips: [vip],
    ports: [
      {
        name: 'http',
        port: 80,
        endpoints: endpoints.map((e) => ({ ip: e.ip, port: 8080, ...(e.workloadUid ? { workloadUid: e.workloadUid } : {}) })),
      },
    ],
  };
}

/**
 * An agent written by the test: real gRPC over TLS with the protocol's real encodings, but every message (or
 * raw bytes) sent only when the test says, so it can lag, flood, or never answer.
 */
export class RawAgent {
  readonly messages: ControllerMessage__Output[] = [];
  status: grpc.StatusObject | undefined;
  readonly client: grpc.Client;
  readonly call: grpc.ClientDuplexStream<AgentMessage | Buffer, ControllerMessage__Output>;

  private readonly ownsClient: boolean;

  /** `client`: open this stream on another agent's channel (its connection) instead of a new one. */
  constructor(
    address: string,
    caPem: string,
    token: string | undefined,
    options: { read?: boolean; channel?: grpc.ChannelOptions; client?: grpc.Client } = {},
  ) {
    const protocol = configProtocol();
    this.ownsClient = options.client === undefined;
    this.client =
      options.client ??
      new grpc.Client(address, grpc.credentials.createSsl(Buffer.from(caPem)), {
        'grpc.ssl_target_name_override': SERVER_NAME,
        'grpc.default_authority': SERVER_NAME,
        'grpc.use_local_subchannel_pool': 1,
        ...options.channel,
      });
    const metadata = new grpc.Metadata();
    if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
    this.call = this.client.makeBidiStreamRequest(
      protocol.streamPath,
      (m: AgentMessage | Buffer) => (Buffer.isBuffer(m) ? m : protocol.encodeAgentMessage(m)),
      (b: Buffer) => protocol.decodeControllerMessage(b),
      metadata,
    );
    this.call.on('status', (s) => {
      this.status = s;
    });
    this.call.on('error', () => {});
    if (options.read !== false) this.call.on('data', (m: ControllerMessage__Output) => this.messages.push(m));
  }

  hello(versions: Array<{ kind: string; name: string; version: string }> = []): this {
    this.call.write({ hello: { initialResourceVersions: versions as never } });
    return this;
  }

  ack(nonce: string, rejected: AgentMessage['ack'] extends infer A ? (A extends { rejected?: infer R } ? R : never) : never = []): void {
    this.call.write({ ack: { nonce, rejected } });
  }

  /** Ack the latest push. */
  ackLast(): void {
    const last = this.messages.at(-1);
    if (!last) throw new Error('no push to acknowledge');
    this.ack(last.nonce);
  }

  async nextMessages(count: number, what = `${count} pushes`, timeoutMs = 5000): Promise<ControllerMessage__Output[]> {
    await waitFor(() => this.messages.length >= count || this.status !== undefined, what, timeoutMs);
    assert.ok(this.messages.length >= count, `${what}: the stream ended first: ${JSON.stringify(this.status)}`);
    return this.messages;
  }

  async ended(timeoutMs = 5000): Promise<grpc.StatusObject> {
    await waitFor(() => this.status !== undefined, 'the stream to end', timeoutMs);
    return this.status as grpc.StatusObject;
  }

  close(): void {
    this.call.cancel();
    if (this.ownsClient) this.client.close();
  }
}

/** Names of the resources in a push, as "KIND name@version" (removals as "-KIND name"). */
export function pushed(message: ControllerMessage__Output): string[] {
  return [...message.removed.map((r) => `-${r.kind} ${r.name}`), ...message.resources.map((r) => `${r.kind} ${r.name}`)];
}
