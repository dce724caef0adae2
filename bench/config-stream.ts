// What the config stream costs the controller: bytes per push (initial sync, one pod change) and memory per agent
// stream, with the ConfigServer in a child process of its own (so the agents' memory does not count) and the
// agents as real gRPC clients over TLS on 127.0.0.1 that ACK every push. Bounded: a fixed number of agents and
// one change; everything ends by itself.
//   node --expose-gc dist/bench/config-stream.js [--agents N] [--pods N] [--json FILE]
import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { ConfigServer, ResourceStore, type StreamAuthenticator } from '../src/controller';
import { configProtocol, type AgentMessage, type ControllerMessage__Output } from '../src/proto';
import type { Service, Workload } from '../src/state';
import { createRootLogger } from '../src/telemetry';
import { forgeCertificate, foreignRootSigner } from '../test/fixtures/certs';

const SERVER_NAME = 'controller.ferry.bench';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

function pod(i: number, node: number, round = 0): Workload {
  return {
    uid: `ns${i % 50}/pod-${i}`,
    namespace: `ns${i % 50}`,
    name: `pod-${i}`,
    node: `node-${node}`,
    serviceAccount: `sa-${i % 200}`,
    ips: [`10.${64 + Math.floor(i / 65536)}.${Math.floor(i / 256) % 256}.${i % 256}`],
    labels: { app: `app-${i % 500}`, version: round === 0 ? 'v1' : `v${round + 1}`, 'pod-template-hash': `h${i % 500}` },
    meshEnabled: true,
    netnsPath: '',
    excludeOutboundPorts: [],
    excludeOutboundCidrs: [],
  };
}

function service(s: number, pods: number): Service {
  const members = Array.from({ length: Math.ceil(pods / 500) }, (_, k) => s + k * 500).filter((i) => i < pods);
  return {
    namespace: `ns${s % 50}`,
    name: `svc-${s}`,
    hostname: `svc-${s}.ns${s % 50}.svc.cluster.local`,
    vips: [`10.96.${Math.floor(s / 256)}.${s % 256}`],
    ports: [{ name: 'http', port: 80, endpoints: members.map((i) => ({ ip: pod(i, 0).ips[0], port: 8080, workloadUid: pod(i, 0).uid })) }],
  };
}

interface Measure {
  heapUsed: number;
  external: number;
  rss: number;
  stats: ReturnType<ConfigServer['stats']>;
}

/** The child: a store of `pods` pods on `agents` nodes and 500 Services, served until the parent says stop. */
async function serve(): Promise<void> {
  const agents = arg('--agents', 200);
  const pods = arg('--pods', 10_000);
  const root = await foreignRootSigner('CN=bench root');
  const leaf = await forgeCertificate(root, { uris: [], dns: [SERVER_NAME] });
  const store = new ResourceStore();
  store.replaceAll(
    'workload',
    Array.from({ length: pods }, (_, i) => pod(i, i % agents)),
  );
  store.replaceAll(
    'service',
    Array.from({ length: 500 }, (_, s) => service(s, pods)),
  );
  const authenticator: StreamAuthenticator = {
    async authenticate(metadata) {
      const token = String(metadata.get('authorization')[0] ?? '').replace(/^Bearer /, '');
      if (!token.startsWith('node-')) throw new Error('unknown token');
      return { node: token, subject: token };
    },
  };
  const server = new ConfigServer({ store, authenticator, log: createRootLogger('silent'), limits: { maxStreams: agents + 10 } });
  const { port } = await server.listen({ address: '127.0.0.1:0', keyPem: leaf.keyPem, certPem: leaf.chainPem.join('') });
  const measure = (): Measure => {
    global.gc?.();
    const m = process.memoryUsage();
    return { heapUsed: m.heapUsed, external: m.external + m.arrayBuffers, rss: m.rss, stats: server.stats() };
  };
  process.on('message', (message: { op: string }) => {
    if (message.op === 'measure') process.send?.({ op: 'measure', value: measure() });
    if (message.op === 'change') {
      store.upsert('workload', pod(7, 7 % agents).uid, pod(7, 7 % agents, 1));
      process.send?.({ op: 'changed' });
    }
    if (message.op === 'stop') server.close().then(() => process.exit(0));
  });
  // The parent died (or was killed by a timeout): nothing is left running.
  process.on('disconnect', () => process.exit(0));
  process.send?.({ op: 'ready', port, ca: root.certPem });
}

function request(child: ChildProcess, op: string, reply: string): Promise<{ op: string; value?: Measure }> {
  return new Promise((resolve) => {
    const on = (message: { op: string; value?: Measure }): void => {
      if (message.op !== reply) return;
      child.off('message', on);
      resolve(message);
    };
    child.on('message', on);
    child.send({ op });
  });
}

/** One agent: Hello, ACK every push, count bytes. */
class Agent {
  bytes = 0;
  pushes = 0;
  synced = false;
  private readonly client: grpc.Client;

  constructor(port: number, ca: string, node: string) {
    const protocol = configProtocol();
    this.client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(ca)), {
      'grpc.ssl_target_name_override': SERVER_NAME,
      'grpc.default_authority': SERVER_NAME,
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
    });
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${node}`);
    const call = this.client.makeBidiStreamRequest(
      protocol.streamPath,
      (m: AgentMessage) => protocol.encodeAgentMessage(m),
      (b: Buffer) => {
        this.bytes += b.length;
        return protocol.decodeControllerMessage(b);
      },
      metadata,
    );
    call.on('error', () => {});
    call.on('data', (m: ControllerMessage__Output) => {
      this.pushes++;
      if (m.synced) this.synced = true;
      call.write({ ack: { nonce: m.nonce, rejected: [] } });
    });
    call.write({ hello: { initialResourceVersions: [] } });
  }

  close(): void {
    this.client.close();
  }
}

async function until(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function main(): Promise<void> {
  if (process.argv.includes('--serve')) return serve();
  const agents = arg('--agents', 200);
  const pods = arg('--pods', 10_000);
  const child = fork(__filename, ['--serve', ...process.argv.slice(2)], { execArgv: ['--expose-gc'] });
  try {
    const ready = await new Promise<{ port: number; ca: string }>((resolve) => child.once('message', resolve as (m: unknown) => void));
    const before = (await request(child, 'measure', 'measure')).value as Measure;
    const started = Date.now();
    const fleet = Array.from({ length: agents }, (_, i) => new Agent(ready.port, ready.ca, `node-${i}`));
    await until(() => fleet.every((a) => a.synced), 'every agent to sync', 600_000);
    const syncMs = Date.now() - started;
    // Let writes complete and the collector see every push buffer unreachable before measuring.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await request(child, 'measure', 'measure');
    const synced = (await request(child, 'measure', 'measure')).value as Measure;
    const initialBytes = fleet.reduce((n, a) => n + a.bytes, 0) / agents;
    const initialPushes = fleet.reduce((n, a) => n + a.pushes, 0) / agents;
    const bytesBefore = fleet.map((a) => a.bytes);
    const pushesBefore = fleet.map((a) => a.pushes);
    const changeAt = Date.now();
    await request(child, 'change', 'changed');
    await until(() => fleet.every((a, i) => a.pushes > pushesBefore[i]), 'every agent to get the change', 60_000);
    const changeMs = Date.now() - changeAt;
    const changeBytes = fleet.reduce((n, a, i) => n + a.bytes - bytesBefore[i], 0) / agents;
    const result = {
      agents,
      pods,
      services: 500,
      storeResources: synced.stats.store.resources,
      storeEncodedBytes: synced.stats.store.encodedBytes,
      initialSyncBytesPerAgent: Math.round(initialBytes),
      initialSyncPushesPerAgent: initialPushes,
      initialSyncMs: syncMs,
      onePodChangeBytesPerAgent: Math.round(changeBytes),
      onePodChangeToAllAgentsMs: changeMs,
      serverHeapPerStreamBytes: Math.round((synced.heapUsed - before.heapUsed) / agents),
      serverExternalPerStreamBytes: Math.round((synced.external - before.external) / agents),
      serverRssPerStreamBytes: Math.round((synced.rss - before.rss) / agents),
      serverHeapBeforeAgents: before.heapUsed,
      serverHeapWithAgents: synced.heapUsed,
    };
    console.log(JSON.stringify(result, null, 2));
    const json = process.argv.indexOf('--json');
    if (json > 0) fs.writeFileSync(process.argv[json + 1], `${JSON.stringify(result, null, 2)}\n`);
    for (const a of fleet) a.close();
  } finally {
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.send({ op: 'stop' });
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
