// The control plane at scale: the real `ferry controller` (startController, in a process of its own, with its
// least-privilege service account) watching a real dev cluster of --pods Pods and --services Services, serving
// --agents simulated agents (real gRPC clients of the config stream over TLS, each with a pod-bound token for its
// own Node, spread over worker processes, ACKing every push). Measured: how long one Pod's label change takes from
// the API request to the last agent's ACK of the push that carries it, the bytes the controller writes per change,
// its CPU per phase, and its memory with no objects, with the objects, with a quarter of the agents and with all
// of them. Bounded: fixed counts, a deadline on every wait and a watchdog on the whole run; the dev cluster and
// every child process are stopped on exit, failure and SIGINT/SIGTERM.
//   node dist/bench/control-plane.js [--agents 1000] [--pods 10000] [--services 2000] [--changes 100] [--json FILE]
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { KubeConfig } from '@kubernetes/client-node';
import { CONTROLLER_SERVER_NAME, startController } from '../src/app';
import { AGENT_TOKEN_AUDIENCE } from '../src/controller';
import { type DevCluster, startDevCluster } from '../src/devcluster';
import { type AgentMessage, configProtocol, decodeResource } from '../src/proto';
import { createRootLogger } from '../src/telemetry';
import { KubeRest, mapBounded } from './lib/kube-rest';

// ---------------------------------------------------------------------------------------------------------------
// Options.

interface Options {
  agents: number;
  pods: number;
  services: number;
  changes: number;
  workers: number;
  /** Streams each worker opens at once while agents sync (the controller authenticates at most 256 at once). */
  connectConcurrency: number;
  /** Requests in flight to the API server while the objects are created. */
  apiConcurrency: number;
  gapMs: number;
  timeoutS: number;
  json?: string;
  /** Where the controller process writes a V8 CPU profile (--cpu-prof) when it stops. */
  cpuProf?: string;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      agents: { type: 'string', default: '1000' },
      pods: { type: 'string', default: '10000' },
      services: { type: 'string', default: '2000' },
      changes: { type: 'string', default: '100' },
      workers: { type: 'string', default: '8' },
      'connect-concurrency': { type: 'string', default: '8' },
      'api-concurrency': { type: 'string', default: '48' },
      'gap-ms': { type: 'string', default: '200' },
      timeout: { type: 'string', default: '1800' },
      json: { type: 'string' },
      'cpu-prof': { type: 'string' },
    },
    strict: true,
  });
  const int = (name: string, value: string, min: number, max: number): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} ${value}: expected an integer from ${min} to ${max}`);
    return n;
  };
  const agents = int('agents', values.agents, 1, 5000);
  return {
    agents,
    pods: int('pods', values.pods, 1, 100_000),
    services: int('services', values.services, 1, 20_000),
    changes: int('changes', values.changes, 1, 1000),
    workers: Math.min(agents, int('workers', values.workers, 1, 64)),
    connectConcurrency: int('connect-concurrency', values['connect-concurrency'], 1, 64),
    apiConcurrency: int('api-concurrency', values['api-concurrency'], 1, 256),
    gapMs: int('gap-ms', values['gap-ms'], 0, 60_000),
    timeoutS: int('timeout', values.timeout, 60, 24 * 3600),
    ...(values.json !== undefined ? { json: values.json } : {}),
    ...(values['cpu-prof'] !== undefined ? { cpuProf: path.resolve(values['cpu-prof']) } : {}),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Shared between the processes.

/** CLOCK_MONOTONIC in ms: one clock for every process on the machine, so an agent's ACK time and the parent's
 * request time can be subtracted. */
const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The label each measured change rewrites; no Service selects on it, so only the Pod's workload changes. */
const CHANGE_LABEL = 'bench.ferry.dev/change';
const AGENT_NAMESPACE = 'ferry-system';
const AGENT_SERVICE_ACCOUNT = 'ferry-agent';
const CRDS = path.join(__dirname, '..', '..', 'deploy', 'crds');

/** What the controller process reports. */
interface ControllerSample {
  at: number;
  cpuUs: number;
  rss: number;
  /** Peak RSS of the process so far (VmHWM). */
  peakRss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  config: {
    streams: number;
    pushes: number;
    acks: number;
    nacks: number;
    bytesSent: number;
    inflightPushes: number;
    inflightBytes: number;
    closed: Record<string, number>;
    store: { resources: number; encodedBytes: number; seq: number };
  };
  model: Record<string, number>;
  ca: Record<string, unknown>;
}

interface AgentSpec {
  node: string;
  token: string;
}

interface WorkerStats {
  agents: number;
  synced: number;
  bytes: number;
  pushes: number;
  streams: number;
  errors: string[];
  cpuUs: number;
  rss: number;
}

type ParentToWorker =
  | { op: 'init'; address: string; ca: string; agents: AgentSpec[]; concurrency: number }
  | { op: 'connect'; count: number; timeoutMs: number }
  | { op: 'arm'; id: number; marker: string; uid: string }
  | { op: 'collect'; id: number; timeoutMs: number }
  | { op: 'stats' }
  | { op: 'gc' }
  | { op: 'stop' };

interface Collected {
  id: number;
  /** Per agent that has the change: [received, ACK written, bytes of that push], monotonic ms. */
  seen: Array<[number, number, number]>;
  missing: string[];
}

/** Send `message` and resolve with the next message of op `reply`; rejects after `timeoutMs` or if the child exits. */
function ask<T>(child: ChildProcess, message: unknown, reply: string, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    const onMessage = (m: { op?: string; value?: T; error?: string }): void => {
      if (m.op === 'failed') {
        done();
        reject(new Error(`child ${child.pid}: ${m.error}`));
      } else if (m.op === reply) {
        done();
        resolve((m.value ?? m) as T);
      }
    };
    const onExit = (code: number | null, signal: string | null): void => {
      done();
      reject(new Error(`child ${child.pid} exited (${signal ?? code}) while asked for ${reply}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`child ${child.pid}: no ${reply} within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('message', onMessage);
    child.on('exit', onExit);
    child.send(message as object);
  });
}

function peakRssBytes(): number {
  const match = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return match ? Number(match[1]) * 1024 : 0;
}

/** utime + stime of any process, ms (clock ticks of 10 ms: CLK_TCK is 100 on Linux). */
function processCpuMs(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of proc(5), counted from the state (field 3) at index 0.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

/** Busy and total CPU ms of the whole machine (/proc/stat), to tell how much the phase had the cores to itself. */
function machineCpuMs(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = line.slice(0, 8).reduce((a, b) => a + b, 0) * 10;
  const idle = (line[3] + line[4]) * 10;
  return { busy: total - idle, total };
}

// ---------------------------------------------------------------------------------------------------------------
// The controller process: `ferry controller` as the CLI wires it, reporting its own CPU and memory.

async function controllerRole(kubeconfig: string): Promise<void> {
  process.on('disconnect', () => process.exit(0));
  const log = createRootLogger('warn');
  let running: Awaited<ReturnType<typeof startController>>;
  try {
    running = await startController({ kubeconfig, listen: '127.0.0.1:0' }, log);
  } catch (err) {
    process.send?.({ op: 'failed', error: (err as Error).stack ?? String(err) });
    return;
  }
  const sample = (gc: boolean): ControllerSample => {
    if (gc && global.gc) {
      global.gc();
      global.gc();
    }
    const cpu = process.cpuUsage();
    const memory = process.memoryUsage();
    const stats = running.stats() as { config: ControllerSample['config']; model: Record<string, number>; ca: Record<string, unknown> };
    return {
      at: nowMs(),
      cpuUs: cpu.user + cpu.system,
      rss: memory.rss,
      peakRss: peakRssBytes(),
      heapUsed: memory.heapUsed,
      external: memory.external,
      arrayBuffers: memory.arrayBuffers,
      config: stats.config,
      model: stats.model,
      ca: stats.ca,
    };
  };
  process.on('message', (message: { op: string; gc?: boolean }) => {
    if (message.op === 'sample') process.send?.({ op: 'sample', value: sample(message.gc === true) });
    if (message.op === 'stop') {
      const force = setTimeout(() => process.exit(1), 10_000);
      running.stop().finally(() => {
        clearTimeout(force);
        process.exit(0);
      });
    }
  });
  process.send?.({ op: 'ready', port: running.port });
}

// ---------------------------------------------------------------------------------------------------------------
// The agents' processes: each a few hundred streams, each as an agent opens it (its token, the Hello, an ACK for
// every push, a new stream with backoff when one ends).

/** The top-level fields of a ControllerMessage, read from the wire without decoding its resources. */
interface PushHeader {
  nonce: string;
  node: string;
  synced: boolean;
  resources: number;
}

/**
 * ControllerMessage's scalar fields (proto/ferry/config/v1/config.proto: nonce 1, system_version 2, resources 3,
 * removed 4, node 5, synced 6) from the protobuf wire format. The simulated agents share the bench's cores with
 * the controller; decoding every resource of every initial sync, a thousand times over, would take the cores the
 * controller is measured on. Resources are decoded where it matters: in the push that carries a change.
 */
function readPushHeader(buf: Buffer): PushHeader {
  const header: PushHeader = { nonce: '', node: '', synced: false, resources: 0 };
  let pos = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (pos >= buf.length) throw new Error('truncated varint');
      const byte = buf[pos++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    throw new Error('varint longer than 10 bytes');
  };
  while (pos < buf.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire === 0) {
      const value = varint();
      if (field === 6) header.synced = value !== 0;
    } else if (wire === 2) {
      const length = varint();
      const start = pos;
      pos += length;
      if (pos > buf.length) throw new Error(`field ${field}: ${length} bytes past the end`);
      if (field === 1) header.nonce = buf.toString('utf8', start, pos);
      else if (field === 5) header.node = buf.toString('utf8', start, pos);
      else if (field === 3) header.resources++;
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 5) {
      pos += 4;
    } else {
      throw new Error(`field ${field}: wire type ${wire}`);
    }
  }
  return header;
}

/** Whether `frame` carries workload `uid` with the change's label: decoded and checked as an agent would. */
function carriesChange(frame: Buffer, expected: { uid: string; marker: string }): boolean {
  const message = configProtocol().decodeControllerMessage(frame);
  return message.resources.some((resource) => {
    if (resource.name !== expected.uid) return false;
    const decoded = decodeResource(resource);
    return (
      decoded.ok &&
      decoded.kind === 'workload' &&
      (decoded.value as { labels: Record<string, string> }).labels[CHANGE_LABEL] === expected.marker
    );
  });
}

const MAX_STREAM_ATTEMPTS = 30;

class SimulatedAgent {
  synced = false;
  bytes = 0;
  pushes = 0;
  streams = 0;
  readonly errors: string[] = [];
  /** The change this agent last saw: its id, when its push arrived and when the ACK was written. */
  seen: { id: number; receivedAt: number; ackedAt: number; bytes: number } | undefined;
  #client: grpc.Client | undefined;
  #call: grpc.ClientDuplexStream<AgentMessage, Buffer> | undefined;
  #stopped = false;
  #attempts = 0;
  #onSynced: ((ok: boolean) => void) | undefined;

  constructor(
    readonly spec: AgentSpec,
    private readonly worker: AgentWorker,
  ) {}

  /** Resolves true once a stream is synced, false when MAX_STREAM_ATTEMPTS streams failed first. */
  start(): Promise<boolean> {
    return new Promise((resolve) => {
      this.#onSynced = resolve;
      this.#open();
    });
  }

  stop(): void {
    this.#stopped = true;
    this.#call?.cancel();
    this.#client?.close();
  }

  #open(): void {
    if (this.#stopped) return;
    const protocol = configProtocol();
    this.#attempts++;
    this.streams++;
    const client = new grpc.Client(this.worker.address, this.worker.credentials, {
      'grpc.ssl_target_name_override': CONTROLLER_SERVER_NAME,
      'grpc.default_authority': CONTROLLER_SERVER_NAME,
      // Its own connection, as an agent on its own node has.
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
      'grpc.enable_retries': 0,
    });
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${this.spec.token}`);
    const call = client.makeBidiStreamRequest(
      protocol.streamPath,
      (m: AgentMessage) => protocol.encodeAgentMessage(m),
      (b: Buffer) => b,
      metadata,
    );
    this.#client = client;
    this.#call = call;
    let first = true;
    call.on('data', (frame: Buffer) => {
      const receivedAt = nowMs();
      let header: PushHeader;
      try {
        header = readPushHeader(frame);
      } catch (err) {
        this.#failed(call, `undecodable push: ${(err as Error).message}`);
        return;
      }
      if (first) {
        first = false;
        // What GrpcConfigSource checks first: the controller derived this agent's node from its token.
        if (header.node !== this.spec.node) {
          this.#failed(call, `the controller named node ${JSON.stringify(header.node)}, not ${this.spec.node}`);
          return;
        }
      }
      this.pushes++;
      this.bytes += frame.length;
      const expected = this.worker.expected;
      const carries =
        expected !== undefined && this.seen?.id !== expected.id && frame.includes(expected.markerBytes) && carriesChange(frame, expected);
      call.write({ ack: { nonce: header.nonce, rejected: [] } });
      if (carries && expected !== undefined) {
        this.seen = { id: expected.id, receivedAt, ackedAt: nowMs(), bytes: frame.length };
        this.worker.sawChange();
      }
      if (header.synced && !this.synced) {
        this.synced = true;
        this.#attempts = 0;
        this.#onSynced?.(true);
        this.#onSynced = undefined;
      }
    });
    call.on('status', (status: grpc.StatusObject) => {
      if (this.#call === call) this.#failed(call, `stream ended: ${grpc.status[status.code] ?? status.code} ${status.details}`);
    });
    call.on('error', () => {});
    call.write({ hello: { initialResourceVersions: [] } });
  }

  /** End this stream; open another after a backoff (as GrpcConfigSource does), a bounded number of times. */
  #failed(call: grpc.ClientDuplexStream<AgentMessage, Buffer>, why: string): void {
    if (this.#call !== call) return;
    this.#call = undefined;
    call.cancel();
    this.#client?.close();
    this.#client = undefined;
    if (this.#stopped) return;
    if (this.errors.length < 5) this.errors.push(why);
    this.synced = false;
    if (this.#attempts >= MAX_STREAM_ATTEMPTS) {
      this.#onSynced?.(false);
      this.#onSynced = undefined;
      return;
    }
    const delay = Math.min(5000, 100 * 2 ** Math.min(this.#attempts, 10)) * (0.5 + Math.random() / 2);
    setTimeout(() => this.#open(), delay).unref();
  }
}

class AgentWorker {
  address = '';
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure();
  agents: SimulatedAgent[] = [];
  started = 0;
  concurrency = 8;
  expected: { id: number; uid: string; marker: string; markerBytes: Buffer } | undefined;
  #seenCount = 0;
  #onAllSeen: (() => void) | undefined;

  sawChange(): void {
    this.#seenCount++;
    if (this.#seenCount >= this.started) this.#onAllSeen?.();
  }

  async connect(count: number, timeoutMs: number): Promise<{ synced: number; failed: number }> {
    const batch = this.agents.slice(this.started, this.started + count);
    this.started += batch.length;
    const deadline = Date.now() + timeoutMs;
    const results = await mapBounded(batch, this.concurrency, (agent) =>
      Promise.race([agent.start(), sleep(Math.max(0, deadline - Date.now())).then(() => false)]),
    );
    return { synced: results.filter(Boolean).length, failed: results.filter((ok) => !ok).length };
  }

  arm(id: number, uid: string, marker: string): void {
    this.expected = { id, uid, marker, markerBytes: Buffer.from(marker) };
    this.#seenCount = 0;
    this.#onAllSeen = undefined;
  }

  async collect(id: number, timeoutMs: number): Promise<Collected> {
    const active = this.agents.slice(0, this.started);
    if (this.#seenCount < active.length) {
      await Promise.race([new Promise<void>((resolve) => (this.#onAllSeen = resolve)), sleep(timeoutMs)]);
    }
    this.#onAllSeen = undefined;
    const seen: Collected['seen'] = [];
    const missing: string[] = [];
    for (const agent of active) {
      if (agent.seen?.id === id) seen.push([agent.seen.receivedAt, agent.seen.ackedAt, agent.seen.bytes]);
      else missing.push(agent.spec.node);
    }
    return { id, seen, missing };
  }

  stats(): WorkerStats {
    const active = this.agents.slice(0, this.started);
    const cpu = process.cpuUsage();
    return {
      agents: active.length,
      synced: active.filter((a) => a.synced).length,
      bytes: active.reduce((n, a) => n + a.bytes, 0),
      pushes: active.reduce((n, a) => n + a.pushes, 0),
      streams: active.reduce((n, a) => n + a.streams, 0),
      errors: active.flatMap((a) => a.errors.map((e) => `${a.spec.node}: ${e}`)).slice(0, 10),
      cpuUs: cpu.user + cpu.system,
      rss: process.memoryUsage().rss,
    };
  }
}

function agentsRole(): void {
  process.on('disconnect', () => process.exit(0));
  const worker = new AgentWorker();
  process.on('message', (message: ParentToWorker) => {
    const reply = (value: unknown): void => void process.send?.(value);
    const failed = (err: unknown): void => reply({ op: 'failed', error: (err as Error).stack ?? String(err) });
    switch (message.op) {
      case 'init':
        worker.address = message.address;
        worker.credentials = grpc.credentials.createSsl(Buffer.from(message.ca));
        worker.concurrency = message.concurrency;
        worker.agents = message.agents.map((spec) => new SimulatedAgent(spec, worker));
        reply({ op: 'ready' });
        break;
      case 'connect':
        worker.connect(message.count, message.timeoutMs).then((value) => reply({ op: 'connected', value }), failed);
        break;
      case 'arm':
        worker.arm(message.id, message.uid, message.marker);
        reply({ op: 'armed' });
        break;
      case 'collect':
        worker.collect(message.id, message.timeoutMs).then((value) => reply({ op: 'collected', value }), failed);
        break;
      case 'stats':
        reply({ op: 'stats', value: worker.stats() });
        break;
      case 'gc':
        global.gc?.();
        global.gc?.();
        reply({ op: 'gced' });
        break;
      case 'stop':
        for (const agent of worker.agents) agent.stop();
        setTimeout(() => process.exit(0), 200);
        break;
    }
  });
  process.send?.({ op: 'up' });
}

// ---------------------------------------------------------------------------------------------------------------
// The cluster's objects.

/** Ferry's RBAC: the namespace, both service accounts, the controller's least privilege. */
const FERRY_RBAC = path.join(__dirname, '..', '..', 'deploy', 'rbac', 'ferry.yaml');

/** How the bench's objects are laid out: Service j selects the pods i with i % services === j. */
class Layout {
  readonly namespaces: number;
  constructor(readonly o: Options) {
    this.namespaces = Math.max(1, Math.min(20, o.services));
  }
  namespace(n: number): string {
    return `bench-${String(n).padStart(2, '0')}`;
  }
  serviceNamespace(j: number): string {
    return this.namespace(j % this.namespaces);
  }
  podNamespace(i: number): string {
    return this.serviceNamespace(i % this.o.services);
  }
  node(n: number): string {
    return `node-${n}`;
  }
  podNode(i: number): string {
    return this.node(i % this.o.agents);
  }
  /** 10.128.0.1 upwards: unique, and nothing on this machine routes them. */
  podIp(i: number): string {
    const n = i + 1;
    return `10.${128 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
  }
  expectedEndpoints(j: number): number {
    return Math.floor(this.o.pods / this.o.services) + (j < this.o.pods % this.o.services ? 1 : 0);
  }
}

const SERVICE_ACCOUNTS_PER_NAMESPACE = 4;

interface PodRef {
  namespace: string;
  name: string;
  uid: string;
}

type Progress = (line: string) => void;

async function registerNodes(rest: KubeRest, layout: Layout, concurrency: number): Promise<void> {
  const nodes = Array.from({ length: layout.o.agents }, (_, n) => n);
  await mapBounded(nodes, concurrency, async (n) => {
    const name = layout.node(n);
    await rest.post('/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'kubernetes.io/hostname': name } } });
    // Ready, as a kubelet posts it once: the node lifecycle controller would otherwise mark the node's pods
    // not ready after its startup grace, and every Service's endpoints would change under the measurement.
    const now = new Date().toISOString();
    const capacity = { pods: '110', cpu: '4', memory: '16Gi' };
    await rest.patch(`/api/v1/nodes/${name}/status`, {
      status: {
        capacity,
        allocatable: capacity,
        addresses: [
          { type: 'InternalIP', address: `172.30.${n >> 8}.${n & 255}` },
          { type: 'Hostname', address: name },
        ],
        conditions: [
          { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'bench', lastHeartbeatTime: now, lastTransitionTime: now },
        ],
      },
    });
  });
}

/** One agent pod per node, and its token as the kubelet would project it: bound to the pod, for Ferry's audience. */
async function agentTokens(rest: KubeRest, layout: Layout, concurrency: number): Promise<AgentSpec[]> {
  const nodes = Array.from({ length: layout.o.agents }, (_, n) => n);
  return mapBounded(nodes, concurrency, async (n) => {
    const node = layout.node(n);
    const pod = await rest.post<{ metadata: { name: string; uid: string } }>(`/api/v1/namespaces/${AGENT_NAMESPACE}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: `ferry-agent-${n}`, namespace: AGENT_NAMESPACE, labels: { app: 'ferry-agent' } },
      spec: {
        nodeName: node,
        serviceAccountName: AGENT_SERVICE_ACCOUNT,
        automountServiceAccountToken: false,
        hostNetwork: true,
        containers: [{ name: 'agent', image: 'ferry:bench' }],
      },
    });
    const request = await rest.post<{ status: { token: string } }>(
      `/api/v1/namespaces/${AGENT_NAMESPACE}/serviceaccounts/${AGENT_SERVICE_ACCOUNT}/token`,
      {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: {
          audiences: [AGENT_TOKEN_AUDIENCE],
          expirationSeconds: 4 * 3600,
          boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata.name, uid: pod.metadata.uid },
        },
      },
    );
    return { node, token: request.status.token };
  });
}

async function createNamespaces(rest: KubeRest, layout: Layout): Promise<void> {
  for (let n = 0; n < layout.namespaces; n++) {
    const namespace = layout.namespace(n);
    await rest.post('/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: namespace, annotations: { 'ferry.dev/mesh': 'enabled' } },
    });
    for (let s = 0; s < SERVICE_ACCOUNTS_PER_NAMESPACE; s++) {
      await rest.post(`/api/v1/namespaces/${namespace}/serviceaccounts`, {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name: `sa-${s}`, namespace },
      });
    }
  }
}

/** The app pods: created bound to their node (no scheduler), then Running and Ready with an address, as a kubelet reports it. */
async function createPods(rest: KubeRest, layout: Layout, concurrency: number, progress: Progress): Promise<PodRef[]> {
  const pods = Array.from({ length: layout.o.pods }, (_, i) => i);
  let done = 0;
  return mapBounded(pods, concurrency, async (i) => {
    const namespace = layout.podNamespace(i);
    const name = `pod-${i}`;
    const created = await rest.post<{ metadata: { uid: string } }>(`/api/v1/namespaces/${namespace}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace, labels: { app: `app-${i % layout.o.services}`, [CHANGE_LABEL]: 'initial' } },
      spec: {
        nodeName: layout.podNode(i),
        serviceAccountName: `sa-${i % SERVICE_ACCOUNTS_PER_NAMESPACE}`,
        automountServiceAccountToken: false,
        containers: [{ name: 'app', image: 'app:bench', ports: [{ name: 'http', containerPort: 8080 }] }],
      },
    });
    const now = new Date().toISOString();
    const ip = layout.podIp(i);
    const condition = (type: string) => ({ type, status: 'True', lastTransitionTime: now });
    await rest.patch(`/api/v1/namespaces/${namespace}/pods/${name}/status`, {
      status: {
        phase: 'Running',
        podIP: ip,
        podIPs: [{ ip }],
        startTime: now,
        conditions: ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready'].map(condition),
      },
    });
    done++;
    if (done % 2000 === 0) progress(`  ${done} pods`);
    return { namespace, name, uid: created.metadata.uid };
  });
}

async function createServices(rest: KubeRest, layout: Layout, concurrency: number): Promise<void> {
  const services = Array.from({ length: layout.o.services }, (_, j) => j);
  await mapBounded(services, concurrency, async (j) => {
    const namespace = layout.serviceNamespace(j);
    await rest.post(`/api/v1/namespaces/${namespace}/services`, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: `svc-${j}`, namespace },
      spec: { selector: { app: `app-${j}` }, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
    });
  });
}

/** Until every Service's EndpointSlices (written by the real controller-manager) list all its pods, ready. */
async function endpointSlicesComplete(rest: KubeRest, layout: Layout, timeoutMs: number, progress: Progress): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastReport = 0;
  for (;;) {
    const list = await rest.get<{
      items: Array<{
        metadata: { namespace: string; labels?: Record<string, string> };
        endpoints?: Array<{ addresses: string[]; conditions?: { ready?: boolean } }>;
      }>;
    }>('/apis/discovery.k8s.io/v1/endpointslices');
    const ready = new Map<string, number>();
    for (const slice of list.items) {
      const service = slice.metadata.labels?.['kubernetes.io/service-name'];
      if (service === undefined || !slice.metadata.namespace.startsWith('bench-')) continue;
      const key = `${slice.metadata.namespace}/${service}`;
      const n = (slice.endpoints ?? []).filter((e) => e.conditions?.ready !== false).length;
      ready.set(key, (ready.get(key) ?? 0) + n);
    }
    let complete = 0;
    for (let j = 0; j < layout.o.services; j++) {
      if ((ready.get(`${layout.serviceNamespace(j)}/svc-${j}`) ?? 0) === layout.expectedEndpoints(j)) complete++;
    }
    if (complete === layout.o.services) return;
    if (Date.now() > deadline)
      throw new Error(`EndpointSlices: ${complete} of ${layout.o.services} Services complete after ${timeoutMs} ms`);
    if (Date.now() - lastReport > 15_000) {
      progress(`  ${complete} of ${layout.o.services} Services have all their endpoints`);
      lastReport = Date.now();
    }
    await sleep(2000);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The run.

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

function summary(values: readonly number[]): { p50: number; p99: number; max: number; n: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted[sorted.length - 1] ?? Number.NaN, n: sorted.length };
}

function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) =>
    r
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])))
      .join('  ')
      .trimEnd(),
  );
}

const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MiB`;
const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`;
const ms = (value: number): string => (Number.isFinite(value) ? `${value.toFixed(value < 10 ? 1 : 0)} ms` : '-');
const seconds = (value: number): string => `${(value / 1000).toFixed(1)} s`;

interface ChangeResult {
  id: number;
  pod: string;
  node: string;
  requestMs: number;
  firstAckMs: number;
  lastAckMs: number;
  lastReceivedMs: number;
  /** Every agent's ACK, ms after the request started. */
  ackMs: number[];
  missing: number;
  controllerAcks: number;
  bytesSent: number;
  pushes: number;
  storeChanges: number;
  controllerCpuMs: number;
  agentsCpuMs: number;
}

class Run {
  cluster: DevCluster | undefined;
  controller: ChildProcess | undefined;
  workers: ChildProcess[] = [];
  rest: KubeRest | undefined;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-cp-'));
  #cleaning: Promise<void> | undefined;

  constructor(readonly o: Options) {}

  progress: Progress = (line) => process.stderr.write(`${line}\n`);

  async sample(gc = false): Promise<ControllerSample> {
    return ask<ControllerSample>(this.controller as ChildProcess, { op: 'sample', gc }, 'sample', 60_000);
  }

  async workerStats(): Promise<WorkerStats[]> {
    return Promise.all(this.workers.map((w) => ask<WorkerStats>(w, { op: 'stats' }, 'stats', 30_000)));
  }

  /** Until the controller's store has not changed for `quietMs` and no push is outstanding. */
  async settled(
    what: string,
    quietMs: number,
    timeoutMs: number,
    ready: (s: ControllerSample) => boolean = () => true,
  ): Promise<ControllerSample> {
    const deadline = Date.now() + timeoutMs;
    let last = await this.sample();
    let since = Date.now();
    for (;;) {
      await sleep(500);
      const now = await this.sample();
      if (now.config.store.seq !== last.config.store.seq || now.config.inflightPushes > 0 || !ready(now)) since = Date.now();
      last = now;
      if (Date.now() - since >= quietMs) return now;
      if (Date.now() > deadline) {
        throw new Error(
          `${what}: not settled within ${timeoutMs} ms (model ${JSON.stringify(now.model)}, config ${JSON.stringify(now.config)})`,
        );
      }
    }
  }

  cleanup(): Promise<void> {
    this.#cleaning ??= (async () => {
      const exited = (child: ChildProcess, ms: number): Promise<void> =>
        child.exitCode !== null || child.signalCode !== null
          ? Promise.resolve()
          : new Promise<void>((resolve) => {
              const timer = setTimeout(() => {
                child.kill('SIGKILL');
                resolve();
              }, ms);
              child.once('exit', () => {
                clearTimeout(timer);
                resolve();
              });
            });
      const children = [...this.workers, ...(this.controller ? [this.controller] : [])];
      for (const child of children) {
        if (child.connected) child.send({ op: 'stop' });
      }
      await Promise.all(children.map((child) => exited(child, 10_000)));
      await this.rest?.close().catch(() => {});
      await this.cluster?.stop().catch((err: unknown) => this.progress(`dev cluster stop: ${(err as Error).message}`));
    })();
    return this.#cleaning;
  }
}

async function controllerKubeconfig(run: Run, rest: KubeRest, adminKubeconfig: string): Promise<string> {
  const admin = new KubeConfig();
  admin.loadFromFile(adminKubeconfig);
  const cluster = admin.getCurrentCluster();
  if (cluster === null) throw new Error('the dev cluster kubeconfig has no cluster');
  const token = await rest.post<{ status: { token: string } }>(
    `/api/v1/namespaces/${AGENT_NAMESPACE}/serviceaccounts/ferry-controller/token`,
    { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 4 * 3600 } },
  );
  const file = path.join(run.dir, 'controller.kubeconfig');
  fs.writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'dev', cluster: { server: cluster.server, 'certificate-authority-data': cluster.caData } }],
      users: [{ name: 'ferry-controller', user: { token: token.status.token } }],
      contexts: [{ name: 'dev', context: { cluster: 'dev', user: 'ferry-controller' } }],
      'current-context': 'dev',
    }),
    { mode: 0o600 },
  );
  return file;
}

async function kubectl(cluster: DevCluster, args: string[], input?: string): Promise<void> {
  const result = await cluster.kubectl(args, input);
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')}: exit ${result.code}: ${result.stderr.trim()}`);
}

async function main(o: Options, run: Run): Promise<Record<string, unknown>> {
  const layout = new Layout(o);
  const log = run.progress;
  const times: Record<string, number> = {};
  const timed = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    log(`${name}…`);
    const value = await work();
    times[name] = Date.now() - started;
    log(`${name}: ${seconds(times[name])}`);
    return value;
  };
  const clusterCpu = (): number => processCpuMs(run.cluster?.pid ?? -1);

  run.cluster = await timed('dev cluster start', () => startDevCluster({ name: 'cp-bench', timeoutMs: 180_000 }));
  const cluster = run.cluster;
  const rest = await KubeRest.fromKubeconfig(cluster.kubeconfigPath, { connections: o.apiConcurrency });
  run.rest = rest;
  await timed('CRDs, ferry-system and RBAC', async () => {
    await kubectl(cluster, ['apply', '--server-side', '-f', CRDS]);
    await kubectl(cluster, ['wait', '--for=condition=Established', '--timeout=60s', 'crd/authorizationpolicies.security.istio.io']);
    await kubectl(cluster, ['wait', '--for=condition=Established', '--timeout=60s', 'crd/peerauthentications.security.istio.io']);
    await rest.post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: AGENT_NAMESPACE } });
    await kubectl(cluster, ['apply', '-f', FERRY_RBAC]);
  });

  const kubeconfig = await controllerKubeconfig(run, rest, cluster.kubeconfigPath);
  const controllerLog = path.join(run.dir, 'controller.log');
  const logFd = fs.openSync(controllerLog, 'a');
  run.controller = fork(__filename, ['--role', 'controller', kubeconfig], {
    execArgv: ['--expose-gc', ...(o.cpuProf !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProf}`] : [])],
    stdio: ['ignore', logFd, logFd, 'ipc'],
  });
  fs.closeSync(logFd);
  const { port } = await timed(
    'controller start',
    () =>
      new Promise<{ port: number }>((resolve, reject) => {
        const child = run.controller as ChildProcess;
        const timer = setTimeout(() => reject(new Error('the controller did not start within 120 s')), 120_000);
        child.once('exit', (code) => reject(new Error(`the controller exited (${code}); see ${controllerLog}`)));
        child.on('message', (m: { op: string; port?: number; error?: string }) => {
          if (m.op === 'ready') {
            clearTimeout(timer);
            resolve({ port: m.port as number });
          }
          if (m.op === 'failed') reject(new Error(`the controller failed to start: ${m.error}`));
        });
      }),
  );
  const roots = await rest.get<{ data: Record<string, string> }>(`/api/v1/namespaces/${AGENT_NAMESPACE}/configmaps/ferry-ca-root-cert`);
  const empty = await run.sample(true);

  // --- the objects ---------------------------------------------------------------------------------------------
  const beforeObjects = { controller: await run.sample(), cluster: clusterCpu() };
  const setupStarted = Date.now();
  await timed('namespaces and service accounts', () => createNamespaces(rest, layout));
  await timed(`${o.agents} Nodes, Ready`, () => registerNodes(rest, layout, o.apiConcurrency));
  const agents = await timed(`${o.agents} agent pods and their bound tokens`, () => agentTokens(rest, layout, o.apiConcurrency));
  const pods = await timed(`${o.pods} pods, Running and Ready`, () => createPods(rest, layout, o.apiConcurrency, log));
  await timed(`${o.services} Services`, () => createServices(rest, layout, o.apiConcurrency));
  await timed('EndpointSlices complete (kube-controller-manager)', () => endpointSlicesComplete(rest, layout, 1_200_000, log));
  const withObjectsQuiet = await timed('controller model settled', () =>
    run.settled(
      'the controller model',
      3000,
      300_000,
      (s) => (s.model.workload ?? 0) >= o.pods + o.agents && (s.model.service ?? 0) >= o.services,
    ),
  );
  times['objects created and settled, in all'] = Date.now() - setupStarted;
  const afterObjects = { controller: withObjectsQuiet, cluster: clusterCpu() };
  const withObjects = await run.sample(true);

  // --- the agents ----------------------------------------------------------------------------------------------
  const workerLog = fs.openSync(path.join(run.dir, 'agents.log'), 'a');
  for (let w = 0; w < o.workers; w++) {
    run.workers.push(fork(__filename, ['--role', 'agents'], { execArgv: ['--expose-gc'], stdio: ['ignore', workerLog, workerLog, 'ipc'] }));
  }
  fs.closeSync(workerLog);
  await Promise.all(
    run.workers.map(
      (w) =>
        new Promise<void>((resolve, reject) => {
          w.once('message', () => resolve());
          w.once('exit', (code) => reject(new Error(`an agent worker exited (${code})`)));
        }),
    ),
  );
  const share = (from: number, to: number, w: number): number => {
    let n = 0;
    for (let i = from; i < to; i++) if (i % o.workers === w) n++;
    return n;
  };
  await Promise.all(
    run.workers.map((w, k) =>
      ask(
        w,
        {
          op: 'init',
          address: `127.0.0.1:${port}`,
          ca: roots.data['root-cert.pem'],
          agents: agents.filter((_, i) => i % o.workers === k),
          concurrency: o.connectConcurrency,
        } satisfies ParentToWorker,
        'ready',
        30_000,
      ),
    ),
  );
  const connectPhase = async (from: number, to: number): Promise<{ ms: number; cpuMs: number; sample: ControllerSample }> => {
    const before = await run.sample();
    const started = Date.now();
    const results = await Promise.all(
      run.workers.map((w, k) =>
        ask<{ synced: number; failed: number }>(
          w,
          { op: 'connect', count: share(from, to, k), timeoutMs: 600_000 } satisfies ParentToWorker,
          'connected',
          660_000,
        ),
      ),
    );
    const failed = results.reduce((n, r) => n + r.failed, 0);
    if (failed > 0) {
      const errors = (await run.workerStats()).flatMap((s) => s.errors).slice(0, 10);
      throw new Error(`${failed} of ${to - from} agents did not sync: ${errors.join('; ')}`);
    }
    const elapsed = Date.now() - started;
    const after = await run.settled('the initial syncs', 1000, 120_000);
    return { ms: elapsed, cpuMs: (after.cpuUs - before.cpuUs) / 1000, sample: await run.sample(true) };
  };
  const quarter = Math.max(1, Math.ceil(o.agents / 4));
  const firstSync = await timed(`${quarter} agents synced`, () => connectPhase(0, quarter));
  const restSync =
    quarter < o.agents ? await timed(`${o.agents - quarter} more agents synced`, () => connectPhase(quarter, o.agents)) : undefined;
  const allAgents = restSync?.sample ?? firstSync.sample;
  if (allAgents.config.streams !== o.agents) throw new Error(`the controller serves ${allAgents.config.streams} streams, not ${o.agents}`);

  // --- the changes ---------------------------------------------------------------------------------------------
  // The agents' processes collect what the initial syncs left (gigabytes received), so that their collector does
  // not take the cores from the controller during the first changes: real agents run on other machines.
  await Promise.all(run.workers.map((w) => ask(w, { op: 'gc' } satisfies ParentToWorker, 'gced', 60_000)));
  await run.settled('before the changes', 2000, 120_000);
  const changes: ChangeResult[] = [];
  const machineBefore = machineCpuMs();
  const changesCluster = clusterCpu();
  const changesStarted = Date.now();
  log(`${o.changes} changes…`);
  for (let k = 0; k < o.changes; k++) {
    const i = (k * 7919 + 13) % o.pods;
    const pod = pods[i];
    const marker = `c${k}-${randomBytes(4).toString('hex')}`;
    await Promise.all(run.workers.map((w) => ask(w, { op: 'arm', id: k, uid: pod.uid, marker } satisfies ParentToWorker, 'armed', 10_000)));
    const workersBefore = await run.workerStats();
    const before = await run.sample();
    const requestAt = nowMs();
    await rest.patch(`/api/v1/namespaces/${pod.namespace}/pods/${pod.name}`, { metadata: { labels: { [CHANGE_LABEL]: marker } } });
    const answeredAt = nowMs();
    const collected = await Promise.all(
      run.workers.map((w) => ask<Collected>(w, { op: 'collect', id: k, timeoutMs: 30_000 } satisfies ParentToWorker, 'collected', 40_000)),
    );
    const seen = collected.flatMap((c) => c.seen);
    // The controller has counted every ACK (or 5 s have passed): its CPU for the change is all in.
    let after = await run.sample();
    for (
      let wait = 0;
      wait < 100 && after.config.acks + after.config.nacks - before.config.acks - before.config.nacks < seen.length;
      wait++
    ) {
      await sleep(50);
      after = await run.sample();
    }
    const workersAfter = await run.workerStats();
    const acks = seen.map(([, acked]) => acked - requestAt).sort((a, b) => a - b);
    changes.push({
      id: k,
      pod: `${pod.namespace}/${pod.name}`,
      node: layout.podNode(i),
      requestMs: answeredAt - requestAt,
      firstAckMs: acks[0] ?? Number.NaN,
      lastAckMs: acks[acks.length - 1] ?? Number.NaN,
      lastReceivedMs: Math.max(...seen.map(([received]) => received - requestAt)),
      ackMs: acks,
      missing: collected.reduce((n, c) => n + c.missing.length, 0),
      controllerAcks: after.config.acks + after.config.nacks - before.config.acks - before.config.nacks,
      bytesSent: after.config.bytesSent - before.config.bytesSent,
      pushes: after.config.pushes - before.config.pushes,
      storeChanges: after.config.store.seq - before.config.store.seq,
      controllerCpuMs: (after.cpuUs - before.cpuUs) / 1000,
      agentsCpuMs: workersAfter.reduce((n, s, w) => n + s.cpuUs - workersBefore[w].cpuUs, 0) / 1000,
    });
    const last = changes[changes.length - 1];
    if (last.missing > 0) log(`  change ${k}: ${last.missing} agents without it after 30 s`);
    if ((k + 1) % 10 === 0 || k === o.changes - 1) log(`  ${k + 1} changes, last one's last ACK after ${ms(last.lastAckMs)}`);
    await sleep(o.gapMs);
  }
  const changesMs = Date.now() - changesStarted;
  const machineAfter = machineCpuMs();
  const changesClusterMs = clusterCpu() - changesCluster;

  // --- idle, and the memory at the end -------------------------------------------------------------------------
  const idleBefore = await run.sample();
  await sleep(5000);
  const idleAfter = await run.sample();
  const end = await run.sample(true);
  const workers = await run.workerStats();

  // --- the report ----------------------------------------------------------------------------------------------
  const objects = o.pods + o.services + o.agents * 2 + layout.namespaces * (1 + SERVICE_ACCOUNTS_PER_NAMESPACE);
  const last = summary(changes.map((c) => c.lastAckMs));
  const first = summary(changes.map((c) => c.firstAckMs));
  const every = summary(changes.flatMap((c) => c.ackMs));
  const received = summary(changes.map((c) => c.lastReceivedMs));
  const requests = summary(changes.map((c) => c.requestMs));
  const bytes = summary(changes.map((c) => c.bytesSent));
  const pushes = summary(changes.map((c) => c.pushes));
  const cpu = summary(changes.map((c) => c.controllerCpuMs));
  const agentCpu = summary(changes.map((c) => c.agentsCpuMs));
  const missing = changes.reduce((n, c) => n + c.missing, 0);
  const extraStoreChanges = changes.reduce((n, c) => n + Math.max(0, c.storeChanges - 1), 0);
  const machineBusy = (machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total);
  const perAgent = (a: number, b: number): number => (restSync ? (a - b) / (o.agents - quarter) : Number.NaN);
  const memoryRow = (name: string, s: ControllerSample): string[] => [
    name,
    mib(s.rss),
    mib(s.heapUsed),
    mib(s.external),
    String(s.config.streams),
    String(s.config.store.resources),
  ];

  const lines: string[] = [];
  lines.push(
    `Ferry control plane: ${o.agents} agents (${o.workers} processes), ${o.pods} pods, ${o.services} Services in ${layout.namespaces} namespaces, ${o.changes} changes; ${os.cpus().length} CPUs`,
    '',
    'Setup',
    ...table([
      ['phase', 'time'],
      ...Object.entries(times).map(([name, t]) => [name, seconds(t)]),
      ['controller CPU while the objects were created', seconds((afterObjects.controller.cpuUs - beforeObjects.controller.cpuUs) / 1000)],
      ['dev cluster CPU while the objects were created', seconds(afterObjects.cluster - beforeObjects.cluster)],
      [`controller CPU, initial sync of ${quarter} agents`, seconds(firstSync.cpuMs)],
      ...(restSync ? [[`controller CPU, initial sync of ${o.agents - quarter} more`, seconds(restSync.cpuMs)]] : []),
    ]),
    '',
    `One Pod's label changed (PATCH) → the push carrying it ACKed by every agent, ms from the request's start (${changes.length} changes)`,
    ...table([
      ['', 'p50', 'p99', 'max'],
      ['last agent ACK', ms(last.p50), ms(last.p99), ms(last.max)],
      ['last agent received', ms(received.p50), ms(received.p99), ms(received.max)],
      ['first agent ACK', ms(first.p50), ms(first.p99), ms(first.max)],
      [`every agent's ACK (${every.n})`, ms(every.p50), ms(every.p99), ms(every.max)],
      ['PATCH answered', ms(requests.p50), ms(requests.p99), ms(requests.max)],
    ]),
    '',
    'Per change',
    ...table([
      ['', 'p50', 'p99', 'max'],
      ['gRPC message bytes the controller wrote, all agents', kib(bytes.p50), kib(bytes.p99), kib(bytes.max)],
      [
        '  per agent',
        `${(bytes.p50 / o.agents).toFixed(0)} B`,
        `${(bytes.p99 / o.agents).toFixed(0)} B`,
        `${(bytes.max / o.agents).toFixed(0)} B`,
      ],
      ['pushes', String(pushes.p50), String(pushes.p99), String(pushes.max)],
      ['controller CPU', ms(cpu.p50), ms(cpu.p99), ms(cpu.max)],
      ['agent processes CPU', ms(agentCpu.p50), ms(agentCpu.p99), ms(agentCpu.max)],
    ]),
    `  machine busy during the changes: ${(machineBusy * 100).toFixed(0)}% of ${os.cpus().length} CPUs; dev cluster CPU ${seconds(changesClusterMs)} over ${seconds(changesMs)}`,
    `  controller CPU idle with ${o.agents} streams: ${((idleAfter.cpuUs - idleBefore.cpuUs) / 1000 / ((idleAfter.at - idleBefore.at) / 1000)).toFixed(1)} ms/s`,
    '',
    'Controller memory (after two full GCs)',
    ...table([
      ['', 'RSS', 'heap used', 'external', 'streams', 'resources'],
      memoryRow('no objects, no agents', empty),
      memoryRow(`${objects} objects, no agents`, withObjects),
      memoryRow(`${quarter} agents synced`, firstSync.sample),
      ...(restSync ? [memoryRow(`${o.agents} agents synced`, restSync.sample)] : []),
      memoryRow('after the changes', end),
    ]),
    `  peak RSS ${mib(end.peakRss)}; store ${mib(withObjects.config.store.encodedBytes)} encoded (× ${o.agents} agents would be ${mib(withObjects.config.store.encodedBytes * o.agents)})`,
    `  per object: RSS ${kib((withObjects.rss - empty.rss) / objects)}, heap ${kib((withObjects.heapUsed - empty.heapUsed) / objects)}`,
    ...(restSync
      ? [
          `  per agent (${quarter} → ${o.agents}): RSS ${kib(perAgent(restSync.sample.rss, firstSync.sample.rss))}, heap ${kib(perAgent(restSync.sample.heapUsed, firstSync.sample.heapUsed))}, external ${kib(perAgent(restSync.sample.external, firstSync.sample.external))}`,
        ]
      : []),
    '',
    `Goal p99 < 1 s for one changed Pod: ${last.p99 < 1000 ? 'met' : 'NOT met'} (p99 of the last agent's ACK ${ms(last.p99)})`,
  );
  if (missing > 0) lines.push(`! ${missing} agent-changes never arrived within 30 s`);
  if (extraStoreChanges > 0)
    lines.push(`! ${extraStoreChanges} other store changes happened during the changes (their pushes are in the bytes)`);
  const streamsOpened = workers.reduce((n, s) => n + s.streams, 0);
  if (streamsOpened > o.agents)
    lines.push(`  agents opened ${streamsOpened} streams for ${o.agents} agents (refused or ended ones retried)`);
  const closed = Object.entries(end.config.closed).filter(([, n]) => n > 0);
  if (closed.length > 0) lines.push(`  controller ended or refused streams: ${closed.map(([r, n]) => `${r} ${n}`).join(', ')}`);
  if (end.config.nacks > 0) lines.push(`! ${end.config.nacks} NACKs`);
  console.log(lines.join('\n'));

  return {
    options: o,
    cpus: os.cpus().length,
    namespaces: layout.namespaces,
    objects,
    setupMs: times,
    latencyMs: { lastAck: last, lastReceived: received, firstAck: first, everyAck: every, patch: requests },
    perChange: { bytesSent: bytes, pushes, controllerCpuMs: cpu, agentsCpuMs: agentCpu },
    machineBusyDuringChanges: machineBusy,
    devClusterCpuMsDuringChanges: changesClusterMs,
    controllerCpuMs: {
      objects: (afterObjects.controller.cpuUs - beforeObjects.controller.cpuUs) / 1000,
      firstSync: firstSync.cpuMs,
      restSync: restSync?.cpuMs ?? null,
      idlePerSecond: (idleAfter.cpuUs - idleBefore.cpuUs) / 1000 / ((idleAfter.at - idleBefore.at) / 1000),
    },
    devClusterCpuMsWhileObjectsCreated: afterObjects.cluster - beforeObjects.cluster,
    syncMs: { first: firstSync.ms, rest: restSync?.ms ?? null },
    memory: {
      empty,
      withObjects,
      firstAgents: firstSync.sample,
      allAgents: restSync?.sample ?? null,
      end,
    },
    agents: { streamsOpened, bytes: workers.reduce((n, s) => n + s.bytes, 0), pushes: workers.reduce((n, s) => n + s.pushes, 0) },
    missing,
    extraStoreChanges,
    changes: changes.map(({ ackMs, ...change }) => ({ ...change, everyAckMs: summary(ackMs) })),
  };
}

// ---------------------------------------------------------------------------------------------------------------

function start(): void {
  const role = process.argv.indexOf('--role');
  if (role > 0) {
    if (process.argv[role + 1] === 'controller') {
      controllerRole(process.argv[role + 2]).catch((err: unknown) => {
        process.send?.({ op: 'failed', error: String(err) });
        process.exit(1);
      });
    } else {
      agentsRole();
    }
    return;
  }
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error((err as Error).message);
    process.exit(2);
  }
  const run = new Run(options);
  let failed = false;
  const finish = async (code: number): Promise<never> => {
    const started = Date.now();
    await run.cleanup();
    run.progress(`stopped the agents, the controller and the dev cluster in ${seconds(Date.now() - started)}`);
    if (failed) {
      run.progress(`logs kept in ${run.dir}`);
    } else {
      fs.rmSync(run.dir, { recursive: true, force: true });
    }
    process.exit(code);
  };
  const watchdog = setTimeout(() => {
    failed = true;
    run.progress(`the whole run took longer than --timeout ${options.timeoutS} s; stopping`);
    void finish(1);
  }, options.timeoutS * 1000);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      failed = true;
      run.progress(`${signal}: stopping`);
      void finish(130);
    });
  }
  main(options, run).then(
    (result) => {
      clearTimeout(watchdog);
      if (options.json !== undefined) fs.writeFileSync(options.json, `${JSON.stringify(result, null, 2)}\n`);
      void finish(0);
    },
    (err: unknown) => {
      clearTimeout(watchdog);
      failed = true;
      console.error(err);
      void finish(1);
    },
  );
}

start();
