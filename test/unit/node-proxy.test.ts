// Fakes stand in for the kernel capture (origins: the BPF original-destination map), the namespace dialer (setns + SO_MARK: here a bind to the pod's 127.0.0.x address), the identity module (FakeTlsProvider over test certificates) and the policy engine (FakeAuthorizer); test/integration covers the real ones.
// Everything else is real: NodeProxy serves real listening sockets, relays over loopback TCP to
// echo servers, speaks HBONE (TLS 1.3 + HTTP/2) between two proxies, resolves through a real
// ClusterState and logs through pino.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  NodeProxy,
  type AccessRecord,
  type AuthorizationVerdict,
  type Dialer,
  type HboneOptions,
  type InboundAuthorizer,
  type InboundSource,
  type OriginalDestinationSource,
  type ProxyLimits,
  type ProxyPod,
  type SocketAddress,
  type SocketOptions,
} from '../../src/proxy';
import { ClusterState, type ClusterSnapshot, type Workload } from '../../src/state';
import { Registry } from 'prom-client';
import { createRootLogger, ISTIO_TCP_METRICS, TrafficMetrics } from '../../src/telemetry';
import { createCa, FakeTlsProvider, type TestCa } from './hbone-pki';
import { type After, sleep, within } from './helpers';

async function waitFor(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

// ---- a listening socket as a bare fd --------------------------------------------------------

/**
 * The agent gets its listeners as bare fds from listenInNetns (root). Here a child process opens a
 * listening socket on 127.0.0.1:0 and sends it over the IPC channel (SCM_RIGHTS) as a raw handle.
 * The fd cannot come from a net.Server of this process (fdOf(server)): libuv refuses a second
 * watcher for an fd its loop already polls, and server.listen({ fd }) fails with EEXIST.
 * The raw handle received here is never started, so the fd is NodeProxy's to listen on and close.
 */
const LISTENER_CHILD = `
const net = require('node:net');
const server = net.createServer();
server.listen(0, process.argv[1] || '127.0.0.1', () => {
  process.send({ port: server.address().port }, server._handle, () => { server.close(); process.disconnect(); });
});
`;

interface RawHandle {
  fd: number;
  close(): void;
}

async function listeningFd(t: After, host = '127.0.0.1'): Promise<{ fd: number; port: number; adopted: () => void }> {
  const child = spawn(process.execPath, ['-e', LISTENER_CHILD, host], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  t.after(() => {
    if (child.exitCode === null) child.kill();
  });
  const exited = once(child, 'exit');
  const [message, handle] = (await within(once(child, 'message'), 10_000, 'the child to send a listening socket')) as [unknown, unknown];
  // Until the child has closed its copy the socket keeps listening there after NodeProxy closes ours.
  await within(exited, 10_000, 'the child to exit');
  const port = (message as { port?: unknown }).port;
  const raw = handle as Partial<RawHandle> | undefined;
  assert.equal(typeof port, 'number');
  assert.ok(raw && typeof raw.fd === 'number' && raw.fd >= 0, 'no fd in the handle the child sent');
  let owned = true;
  // Closed here only when no NodeProxy took it (a failure before addPod).
  t.after(() => {
    if (owned) raw.close?.();
  });
  return {
    fd: raw.fd,
    port: port as number,
    adopted: () => {
      owned = false;
    },
  };
}

// ---- servers, clients, logs -----------------------------------------------------------------

/** A TCP server on 127.0.0.1:0 whose accepted sockets are destroyed at the end of the test. */
async function serve(t: After, onSocket: (s: net.Socket) => void, host = '127.0.0.1'): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    onSocket(s);
  });
  server.listen(0, host);
  await once(server, 'listening');
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

/** Echoes everything back and ends when the peer ends (half-close). */
function echoServer(t: After, host = '127.0.0.1'): Promise<number> {
  return serve(t, (s) => s.pipe(s), host);
}

/** Reads the whole request, then answers with how many bytes it got and ends (a reply of another size). */
function countingServer(t: After): Promise<number> {
  return serve(t, (s) => {
    let bytes = 0;
    s.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    s.on('end', () => s.end(`got ${bytes} bytes`));
  });
}

/** A port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function connect(t: After, port: number, host = '127.0.0.1'): Promise<net.Socket> {
  const socket = net.connect({ host, port, allowHalfOpen: true });
  socket.on('error', () => undefined);
  t.after(() => {
    socket.destroy();
  });
  await within(once(socket, 'connect'), 2000, `a connection to 127.0.0.1:${port}`);
  return socket;
}

/**
 * Connects and resolves with the reset the proxy answers with. The RST may arrive before the
 * client's connect completes in libuv (the error then names syscall 'connect') or after.
 */
async function resetError(t: After, port: number, host = '127.0.0.1'): Promise<NodeJS.ErrnoException> {
  const socket = net.connect({ host, port, allowHalfOpen: true });
  t.after(() => {
    socket.destroy();
  });
  let ended = false;
  socket.on('end', () => {
    ended = true;
  });
  const [err] = (await within(once(socket, 'error'), 2000, 'the client to be reset')) as [NodeJS.ErrnoException];
  assert.equal(ended, false, 'the client saw a clean FIN before the error');
  return err;
}

/** Resolves with the error a connect attempt gets (e.g. ECONNREFUSED), or rejects if it connects. */
async function connectError(port: number): Promise<NodeJS.ErrnoException> {
  const socket = net.connect({ host: '127.0.0.1', port });
  try {
    const [err] = (await within(once(socket, 'error'), 2000, `a connect to ${port} to fail`)) as [NodeJS.ErrnoException];
    return err;
  } finally {
    socket.destroy();
  }
}

/** Sends `text`, reads the echo back (the connection stays open). */
async function roundTrip(socket: net.Socket, text: string): Promise<string> {
  let got = '';
  const onData = (chunk: Buffer): void => {
    got += chunk.toString();
  };
  socket.on('data', onData);
  socket.write(text);
  try {
    await waitFor(() => got.length >= text.length, `the echo of ${JSON.stringify(text)}`, 2000);
  } finally {
    socket.off('data', onData);
  }
  return got;
}

interface LogLine {
  level: number;
  component?: string;
  msg?: string;
  [key: string]: unknown;
}

const POD: ProxyPod = {
  uid: '7d3f0c52-frontend',
  namespace: 'shop',
  name: 'frontend',
  serviceAccount: 'frontend',
  netnsPath: '/run/netns/ftest-frontend',
  netnsCookie: 4242n,
  ips: ['10.244.0.5'],
};
const OTHER_POD: ProxyPod = {
  uid: 'shop/worker',
  namespace: 'shop',
  name: 'worker',
  serviceAccount: 'worker',
  netnsPath: '/run/netns/ftest-worker',
  netnsCookie: 4343n,
  ips: ['10.244.0.6'],
};
/** Pods of the mesh tests: their own loopback addresses, so each can be told apart by IP. */
const FRONTEND: ProxyPod = {
  uid: 'shop/frontend',
  namespace: 'shop',
  name: 'frontend',
  serviceAccount: 'frontend',
  netnsPath: '/run/netns/ftest-frontend',
  netnsCookie: 4242n,
  ips: ['127.0.0.2'],
};
const BACKEND: ProxyPod = {
  uid: '7d3f0c52-backend',
  namespace: 'shop',
  name: 'backend',
  serviceAccount: 'backend',
  netnsPath: '/run/netns/ftest-backend',
  netnsCookie: 4444n,
  ips: ['127.0.0.3'],
};

function workload(pod: ProxyPod, node: string, meshEnabled = true): Workload {
  return {
    uid: pod.uid,
    namespace: pod.namespace,
    name: pod.name,
    node,
    serviceAccount: pod.serviceAccount,
    ips: pod.ips,
    labels: { app: pod.name },
    meshEnabled,
    netnsPath: pod.netnsPath,
    excludeOutboundPorts: [],
    excludeOutboundCidrs: [],
  };
}

/** The model with POD and OTHER_POD and a Service `shop/cart` on 10.96.0.10:80 with these endpoints. */
function cartSnapshot(endpoints: Array<{ ip: string; port: number }>): ClusterSnapshot {
  return {
    version: 1,
    revision: 1,
    workloads: POD_WORKLOADS(),
    services: [
      { namespace: 'shop', name: 'cart', hostname: 'cart.shop.svc.cluster.local', vips: ['10.96.0.10'], ports: [{ port: 80, endpoints }] },
    ],
  };
}

/** A model with POD and OTHER_POD in it: a pod the model does not know is refused. */
function podsState(): ClusterState {
  const state = new ClusterState();
  state.replace({ version: 1, revision: 1, workloads: POD_WORKLOADS(), services: [] });
  return state;
}

const POD_WORKLOADS = (): Workload[] => [workload(POD, 'node-a'), workload(OTHER_POD, 'node-a')];

/** Policy engine stand-in: a rule function, STRICT per pod, and the change announcement. */
class FakeAuthorizer implements InboundAuthorizer {
  rule: (pod: ProxyPod, source: InboundSource, destination: SocketAddress) => AuthorizationVerdict = () => ({
    allow: true,
    reason: 'no policy',
  });
  readonly strict = new Set<string>();
  readonly calls: Array<{ pod: string; source: InboundSource; destination: SocketAddress }> = [];
  private readonly listeners = new Set<() => void>();

  admitsPlaintext(pod: ProxyPod): boolean {
    return !this.strict.has(pod.uid);
  }

  authorize(pod: ProxyPod, source: InboundSource, destination: SocketAddress): AuthorizationVerdict {
    this.calls.push({ pod: pod.uid, source, destination });
    return this.rule(pod, source, destination);
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A policy update: new rule, then the announcement. */
  change(rule: FakeAuthorizer['rule']): void {
    this.rule = rule;
    for (const listener of this.listeners) listener();
  }
}

const DENY_BY_POLICY: AuthorizationVerdict = { allow: false, policy: 'shop/deny-frontend', reason: 'DENY rule 0 matched' };

let testCa: TestCa | undefined;
async function meshTls(): Promise<FakeTlsProvider> {
  testCa ??= await createCa();
  const provider = new FakeTlsProvider(testCa);
  for (const pod of [POD, OTHER_POD, BACKEND]) await provider.add(pod.namespace, pod.serviceAccount);
  return provider;
}

/**
 * The namespace dialer's stand-in: connects from the pod's address (what setns gives the real
 * one), and follows `routes` for addresses the test cannot listen on: a pod's 15008 (its HBONE
 * listener is on an ephemeral port) and inbound targets (what sk_lookup would have steered).
 */
function fakeDialer(
  t: After,
  dials: Array<{ netnsPath: string; to: SocketAddress }>,
  routes: Map<string, number>,
  pods: ProxyPod[],
  deliveries: Array<{ to: SocketAddress; sourceIp?: string; sourcePort?: number }>,
  portTaken: { next: number },
): Dialer {
  return {
    dial(netnsPath, to, options) {
      dials.push({ netnsPath, to });
      deliveries.push({ to, sourceIp: options?.sourceIp, sourcePort: options?.sourcePort });
      if (options?.sourceIp !== undefined && portTaken.next > 0) {
        // The kernel's answer when the chosen source port is bound already.
        portTaken.next -= 1;
        return Promise.reject(Object.assign(new Error('bind: Address already in use'), { code: 'EADDRINUSE' }));
      }
      const pod = pods.find((p) => p.netnsPath === netnsPath);
      const localAddress = pod?.ips[0]?.startsWith('127.') && pod.ips[0] !== '127.0.0.1' ? pod.ips[0] : undefined;
      const port = routes.get(`${to.ip}:${to.port}`) ?? to.port;
      return new Promise((resolve, reject) => {
        const socket = net.connect({ host: to.ip, port, localAddress, allowHalfOpen: true });
        socket.once('error', reject);
        socket.once('connect', () => {
          socket.off('error', reject);
          resolve(socket);
        });
        t.after(() => {
          socket.destroy();
        });
      });
    },
  };
}

interface Setup {
  proxy: NodeProxy;
  state: ClusterState;
  tls: FakeTlsProvider;
  authorizer: FakeAuthorizer;
  lines: LogLine[];
  access: () => AccessRecord[];
  dials: Array<{ netnsPath: string; to: SocketAddress }>;
  /** The source address (and port) each dial asked to deliver from (undefined: the pod's own). */
  deliveries: Array<{ to: SocketAddress; sourceIp?: string; sourcePort?: number }>;
  /** How many of the next deliveries the fake kernel refuses with EADDRINUSE. */
  portTaken: { next: number };
  /** What the proxy asked of the socket options: relayed, finished and tunnel sockets. */
  tuned: { relayed: number; finished: number; tunnel: number };
  asked: Array<{ pod: string; clientPort: number | undefined }>;
  /** What the fake capture answers for the next accepted connection. */
  origin: { next: SocketAddress | undefined };
  routes: Map<string, number>;
  /** The series of one of Istio's TCP counters, as the agent would expose them now. */
  series: (metric: string) => Promise<Array<{ labels: Record<string, string | number>; value: number }>>;
}

interface SetupOptions {
  state?: ClusterState;
  tls?: FakeTlsProvider;
  authorizer?: FakeAuthorizer;
  routes?: Map<string, number>;
  hbone?: HboneOptions;
  localShortcut?: boolean;
  limits?: Partial<ProxyLimits>;
}

async function setup(t: After, options: SetupOptions = {}): Promise<Setup> {
  const lines: LogLine[] = [];
  const log = createRootLogger('debug', {
    write: (line: string) => {
      lines.push(JSON.parse(line) as LogLine);
    },
  });
  const state = options.state ?? podsState();
  const tls = options.tls ?? (await meshTls());
  const authorizer = options.authorizer ?? new FakeAuthorizer();
  const routes = options.routes ?? new Map<string, number>();
  const dials: Setup['dials'] = [];
  const asked: Setup['asked'] = [];
  const origin: Setup['origin'] = { next: undefined };
  const origins: OriginalDestinationSource = {
    originalDestination(pod, accepted) {
      asked.push({ pod: pod.uid, clientPort: accepted.remotePort });
      return origin.next;
    },
  };
  const deliveries: Setup['deliveries'] = [];
  const portTaken = { next: 0 };
  const dialer = fakeDialer(t, dials, routes, [FRONTEND, BACKEND, OTHER_POD], deliveries, portTaken);
  const registry = new Registry();
  const tuned = { relayed: 0, finished: 0, tunnel: 0 };
  const sockets: SocketOptions = {
    relayed: () => {
      tuned.relayed += 1;
    },
    finished: () => {
      tuned.finished += 1;
    },
    tunnel: () => {
      tuned.tunnel += 1;
    },
  };
  const proxy = new NodeProxy({
    resolver: state,
    origins,
    dialer,
    tls,
    authorizer,
    log,
    hbone: options.hbone,
    localShortcut: options.localShortcut,
    metrics: new TrafficMetrics(registry),
    sockets,
    limits: options.limits,
  });
  const series: Setup['series'] = async (metric) => {
    const found = (await registry.getMetricsAsJSON()).find((m) => m.name === metric);
    return (found?.values ?? []).map((v) => ({ labels: v.labels as Record<string, string | number>, value: v.value }));
  };
  // Whatever a test left: close it, bounded, so one failure does not hang the file.
  t.after(async () => {
    proxy.tracker.destroyWhere(() => true);
    await within(proxy.drain(0), 2000, 'the final drain').catch(() => undefined);
  });
  const access = (): AccessRecord[] => lines.filter((l) => l.component === 'access') as unknown as AccessRecord[];
  return { proxy, state, tls, authorizer, lines, access, dials, deliveries, portTaken, tuned, asked, origin, routes, series };
}

/** A pod served by the proxy on fresh listeners (outbound; inbound and HBONE when asked); returns their ports. */
async function addPod(t: After, s: Setup, pod: ProxyPod = POD, which: { inbound?: boolean; hbone?: boolean } = {}): Promise<number> {
  const ports = await addPodListeners(t, s, pod, which);
  return ports.outbound;
}

async function addPodListeners(
  t: After,
  s: Setup,
  pod: ProxyPod,
  which: { inbound?: boolean; hbone?: boolean } = {},
): Promise<{ outbound: number; inbound?: number; hbone?: number }> {
  // Mesh-test pods have loopback addresses of their own; the others listen on 127.0.0.1.
  const host = pod.ips[0]?.startsWith('127.') ? pod.ips[0] : '127.0.0.1';
  const outbound = await listeningFd(t, host);
  const inbound = which.inbound ? await listeningFd(t, host) : undefined;
  const hbone = which.hbone ? await listeningFd(t, host) : undefined;
  await within(
    s.proxy.addPod(pod, {
      outbound: [outbound.fd],
      inbound: inbound ? [inbound.fd] : [],
      hbone: hbone ? [hbone.fd] : [],
    }),
    2000,
    'addPod',
  );
  for (const l of [outbound, inbound, hbone]) l?.adopted();
  // The peer agents dial <pod ip>:15008.
  if (hbone) s.routes.set(`${host}:15008`, hbone.port);
  return { outbound: outbound.port, inbound: inbound?.port, hbone: hbone?.port };
}

// ---- tests ----------------------------------------------------------------------------------

test('relays a captured connection to its original destination and logs one access record', async (t) => {
  const s = await setup(t);
  const serverPort = await countingServer(t);
  s.origin.next = { family: 4, ip: '127.0.0.1', port: serverPort };
  const port = await addPod(t, s);
  assert.ok(s.proxy.hasPod(POD.uid));
  assert.equal(s.proxy.listening(), true);

  const client = await connect(t, port);
  const clientPort = client.localPort;
  const received: Buffer[] = [];
  client.on('data', (c: Buffer) => received.push(c));
  const request = 'GET / HTTP/1.0\r\n\r\n'.repeat(1000);
  client.end(request);
  await within(once(client, 'end'), 3000, 'the reply to end');
  const reply = `got ${request.length} bytes`;
  assert.equal(Buffer.concat(received).toString(), reply);

  await waitFor(() => s.access().length === 1, 'the access record');
  const [record] = s.access();
  assert.equal(record.direction, 'outbound');
  assert.deepEqual([record.pod, record.podUid], ['shop/frontend', POD.uid]);
  assert.match(record.conn, /^o\d+$/);
  // The pod's address with the app's port, not the loopback the capture redirected it to.
  assert.equal(record.source, `10.244.0.5:${clientPort}`);
  assert.equal(record.destination, `127.0.0.1:${serverPort}`);
  assert.equal(record.upstream, `127.0.0.1:${serverPort}`);
  assert.equal(record.bytesSent, request.length);
  assert.equal(record.bytesReceived, reply.length);
  assert.equal(record.error, undefined);
  assert.equal(typeof record.durationMs, 'number');

  // The capture was asked about this client's socket, and the dial went out from the pod's namespace.
  assert.deepEqual(s.asked, [{ pod: POD.uid, clientPort }]);
  assert.deepEqual(s.dials, [{ netnsPath: POD.netnsPath, to: { family: 4, ip: '127.0.0.1', port: serverPort } }]);
  assert.equal(s.proxy.tracker.size, 0);
});

test('a Service VIP is dialled at the endpoint the state picks, and the record names the Service', async (t) => {
  const s = await setup(t);
  const echoPort = await echoServer(t);
  s.state.replace(cartSnapshot([{ ip: '127.0.0.1', port: echoPort }]));
  s.origin.next = { family: 4, ip: '10.96.0.10', port: 80 };
  const port = await addPod(t, s);

  const client = await connect(t, port);
  assert.equal(await roundTrip(client, 'ping'), 'ping');
  client.end();
  await waitFor(() => s.access().length === 1, 'the access record');
  const [record] = s.access();
  assert.equal(record.destination, '10.96.0.10:80');
  assert.equal(record.upstream, `127.0.0.1:${echoPort}`);
  assert.equal(record.destinationService, 'cart.shop');
  assert.deepEqual(s.dials[0].to, { family: 4, ip: '127.0.0.1', port: echoPort });
  assert.equal(record.bytesSent, 4);
  assert.equal(record.bytesReceived, 4);
});

test('a connection without an original destination (straight to 127.0.0.1:15001) is refused as a self call, never dialled', async (t) => {
  const s = await setup(t);
  s.origin.next = undefined;
  const port = await addPod(t, s);

  const err = await resetError(t, port);
  assert.equal(err.code, 'ECONNRESET');
  assert.equal(s.asked.length, 1);
  assert.deepEqual(s.dials, []);
  await waitFor(() => s.access().length === 1, "the refusal's access record");
  const [record] = s.access();
  assert.equal(record.reason, 'self_call');
  assert.equal(record.responseFlags, 'DENY');
  assert.match(record.error ?? '', /^refused: connection made directly to the outbound listener/);
  assert.deepEqual(s.proxy.refusalCounts(), [{ direction: 'outbound', reason: 'self_call', count: 1 }]);
  assert.equal(s.proxy.tracker.size, 0);
});

test('a Service port without endpoints resets the client and logs the reason', async (t) => {
  const s = await setup(t);
  s.state.replace(cartSnapshot([]));
  s.origin.next = { family: 4, ip: '10.96.0.10', port: 80 };
  const port = await addPod(t, s);

  const err = await resetError(t, port);
  assert.equal(err.code, 'ECONNRESET');
  assert.deepEqual(s.dials, []);
  await waitFor(() => s.access().length === 1, 'the access record');
  assert.equal(s.access()[0].error, 'no healthy endpoints');
  assert.equal(s.access()[0].destinationService, 'cart.shop');
});

test('a failed dial resets the client and the access record carries the error', async (t) => {
  const s = await setup(t);
  const deadPort = await closedPort();
  s.origin.next = { family: 4, ip: '127.0.0.1', port: deadPort };
  const port = await addPod(t, s);

  const err = await resetError(t, port);
  assert.equal(err.code, 'ECONNRESET');
  await waitFor(() => s.access().length === 1, 'the access record');
  const [record] = s.access();
  assert.equal(record.destination, `127.0.0.1:${deadPort}`);
  assert.match(record.error ?? '', new RegExp(`^connect 127\\.0\\.0\\.1:${deadPort}: .*ECONNREFUSED`));
  assert.equal(record.bytesSent, 0);
  assert.equal(record.bytesReceived, 0);
  assert.equal(s.proxy.tracker.size, 0);
});

test('drain closes the listeners at once and waits for an open connection to finish', async (t) => {
  const s = await setup(t);
  const echoPort = await echoServer(t);
  s.origin.next = { family: 4, ip: '127.0.0.1', port: echoPort };
  const port = await addPod(t, s);
  const client = await connect(t, port);
  assert.equal(await roundTrip(client, 'before drain'), 'before drain');

  let drained: { finished: boolean; closed: number } | undefined;
  const draining = s.proxy.drain(5000).then((r) => {
    drained = r;
    return r;
  });

  // New connections are refused (fail closed) while the old one is still served.
  assert.equal((await connectError(port)).code, 'ECONNREFUSED');
  assert.equal(await roundTrip(client, 'during drain'), 'during drain');
  assert.equal(drained, undefined, 'drain resolved while a connection was open');

  client.end();
  const result = await within(draining, 3000, 'drain to resolve once the connection finished');
  assert.deepEqual(result, { finished: true, closed: 0 });
  assert.equal(s.proxy.hasPod(POD.uid), false);
  await waitFor(() => s.access().length === 1, 'the access record');
  assert.equal(s.access()[0].bytesSent, 'before drain'.length + 'during drain'.length);
});

test('drain with nothing open resolves at once', async (t) => {
  const s = await setup(t);
  const port = await addPod(t, s);
  const result = await within(s.proxy.drain(5000), 1000, 'drain');
  assert.deepEqual(result, { finished: true, closed: 0 });
  assert.equal((await connectError(port)).code, 'ECONNREFUSED');
});

test('drain closes a connection still open at the deadline', async (t) => {
  const s = await setup(t);
  const echoPort = await echoServer(t);
  s.origin.next = { family: 4, ip: '127.0.0.1', port: echoPort };
  const port = await addPod(t, s);
  const client = await connect(t, port);
  assert.equal(await roundTrip(client, 'stay'), 'stay');
  // Closed at the deadline with a reset, so the client cannot take the cut-off stream for a complete one.
  const clientReset = once(client, 'error');

  const started = Date.now();
  const result = await within(s.proxy.drain(300), 3000, 'drain(300) to give up on the open connection');
  assert.deepEqual(result, { finished: false, closed: 1 });
  assert.ok(Date.now() - started >= 250, 'drain did not wait for the deadline');
  const [resetErr] = (await within(clientReset, 2000, 'the proxy to reset the client connection')) as [NodeJS.ErrnoException];
  assert.equal(resetErr.code, 'ECONNRESET');
  await waitFor(() => s.proxy.tracker.size === 0, 'the closed connection to leave the tracker');
  await waitFor(() => s.access().length === 1, "the closed connection's access record");
  assert.equal(s.access()[0].bytesSent, 'stay'.length);
  assert.equal((await connectError(port)).code, 'ECONNREFUSED');
});

test("removePod closes that pod's listener and connections, and leaves other pods alone", async (t) => {
  const s = await setup(t);
  const echoPort = await echoServer(t);
  s.origin.next = { family: 4, ip: '127.0.0.1', port: echoPort };
  const portA = await addPod(t, s, POD);
  const portB = await addPod(t, s, OTHER_POD);
  const clientA = await connect(t, portA);
  const clientB = await connect(t, portB);
  assert.equal(await roundTrip(clientA, 'a'), 'a');
  assert.equal(await roundTrip(clientB, 'b'), 'b');
  assert.equal(s.proxy.tracker.size, 2);
  const resetA = once(clientA, 'error');

  s.proxy.removePod(POD.uid);
  assert.equal(s.proxy.hasPod(POD.uid), false);
  assert.equal(s.proxy.hasPod(OTHER_POD.uid), true);
  const [errA] = (await within(resetA, 2000, "the removed pod's connection to be reset")) as [NodeJS.ErrnoException];
  assert.equal(errA.code, 'ECONNRESET');
  assert.equal((await connectError(portA)).code, 'ECONNREFUSED');

  assert.equal(await roundTrip(clientB, 'still here'), 'still here');
  const clientB2 = await connect(t, portB);
  assert.equal(await roundTrip(clientB2, 'new'), 'new');
  assert.deepEqual(
    s.proxy.tracker
      .list()
      .map((c) => c.podUid)
      .sort(),
    [OTHER_POD.uid, OTHER_POD.uid],
  );
});

test('removePod of a pod with no connections closes its listener', async (t) => {
  const s = await setup(t);
  const port = await addPod(t, s);
  s.proxy.removePod(POD.uid);
  assert.equal(s.proxy.hasPod(POD.uid), false);
  assert.equal((await connectError(port)).code, 'ECONNREFUSED');
  // Removing an unknown pod is a no-op.
  s.proxy.removePod('shop/unknown');
  assert.equal(s.proxy.hasPod('shop/unknown'), false);
});

// ---- the mesh: HBONE between two proxies, plaintext inbound, the short path, policy changes ----

interface Mesh {
  /** Node A: FRONTEND (outbound). */
  a: Setup;
  /** Node B: BACKEND (inbound plaintext and HBONE). */
  b: Setup;
  authorizer: FakeAuthorizer;
  appPort: number;
  /** FRONTEND's outbound listener (what its captured connects reach). */
  frontendOut: number;
  /** BACKEND's inbound plaintext listener (what sk_lookup steers to). */
  backendIn: number;
}

/** Two agents sharing one cluster view, trust domain and policy; BACKEND's app echoes on 127.0.0.3. */
async function mesh(t: After, workloads = [workload(FRONTEND, 'node-a'), workload(BACKEND, 'node-b')]): Promise<Mesh> {
  const state = new ClusterState();
  state.replace({ version: 1, revision: 1, workloads, services: [] });
  const tls = await meshTls();
  const authorizer = new FakeAuthorizer();
  const routes = new Map<string, number>();
  const a = await setup(t, { state, tls, authorizer, routes });
  const b = await setup(t, { state, tls, authorizer, routes });
  const appPort = await echoServer(t, '127.0.0.3');
  const front = await addPodListeners(t, a, FRONTEND);
  const back = await addPodListeners(t, b, BACKEND, { inbound: true, hbone: true });
  assert.ok(back.inbound !== undefined);
  // sk_lookup's stand-in: the inbound listener's own address is the "original destination" the
  // proxy dials; route it to the app.
  routes.set(`127.0.0.3:${back.inbound}`, appPort);
  a.origin.next = { family: 4, ip: '127.0.0.3', port: appPort };
  return { a, b, authorizer, appPort, frontendOut: front.outbound, backendIn: back.inbound };
}

function pick(labels: Record<string, string | number>, keys: string[]): Record<string, string | number> {
  return Object.fromEntries(keys.map((k) => [k, labels[k]]));
}

const count = (s: Setup, msg: string): number => s.lines.filter((l) => l.msg === msg).length;

test('a meshed pod on another node is reached through HBONE: mutual TLS, authorized as the source identity', async (t) => {
  const m = await mesh(t);
  for (let i = 0; i < 3; i++) {
    const client = await connect(t, m.frontendOut, '127.0.0.2');
    assert.equal(await roundTrip(client, `ping ${i}`), `ping ${i}`);
    client.end();
    await waitFor(() => m.a.access().length === i + 1 && m.b.access().length === i + 1, `access records of connection ${i}`);
  }
  // One tunnel carried all three connections.
  assert.equal(count(m.a, 'hbone connection established'), 1);
  assert.equal(count(m.b, 'hbone connection accepted'), 1);

  const out = m.a.access()[0];
  assert.equal(out.direction, 'outbound');
  assert.equal(out.path, 'hbone');
  assert.equal(out.security, 'mutual_tls');
  assert.equal(out.sourcePrincipal, 'cluster.local/ns/shop/sa/frontend');
  assert.equal(out.destinationPrincipal, 'cluster.local/ns/shop/sa/backend');
  assert.equal(out.destinationWorkload, BACKEND.name);
  assert.equal(out.destinationNamespace, BACKEND.namespace);
  assert.equal(out.bytesSent, 'ping 0'.length);
  assert.equal(out.bytesReceived, 'ping 0'.length);
  assert.match(out.traceparent ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  assert.equal(out.error, undefined);

  const inb = m.b.access()[0];
  assert.equal(inb.direction, 'inbound');
  assert.deepEqual([inb.pod, inb.podUid], ['shop/backend', BACKEND.uid]);
  assert.equal(inb.path, 'hbone');
  assert.equal(inb.security, 'mutual_tls');
  assert.equal(inb.sourcePrincipal, 'cluster.local/ns/shop/sa/frontend');
  assert.equal(inb.traceparent, out.traceparent, 'the traceparent did not travel in the CONNECT');
  assert.match(inb.source, /^127\.0\.0\.2:\d+$/);
  assert.equal(inb.destination, `127.0.0.3:${m.appPort}`);
  assert.equal(inb.bytesSent, 'ping 0'.length);

  // B authorized the verified peer and its address; the tunnel was dialled from FRONTEND's
  // namespace and the app from BACKEND's.
  const [call] = m.authorizer.calls;
  assert.equal(call.pod, BACKEND.uid);
  assert.equal(call.source.peer?.principal, 'cluster.local/ns/shop/sa/frontend');
  assert.equal(call.source.ip, '127.0.0.2');
  assert.deepEqual(call.destination, { family: 4, ip: '127.0.0.3', port: m.appPort });
  assert.deepEqual(m.a.dials[0], { netnsPath: FRONTEND.netnsPath, to: { family: 4, ip: '127.0.0.3', port: 15008 } });
  assert.deepEqual(m.b.dials[0], { netnsPath: BACKEND.netnsPath, to: { family: 4, ip: '127.0.0.3', port: m.appPort } });
  assert.equal(m.a.dials.length, 1, 'a second tunnel was dialled');

  // Istio's metrics: one series per reporter, exactly three connections and their bytes.
  const expected = {
    request_protocol: 'tcp',
    response_flags: '-',
    connection_security_policy: 'mutual_tls',
    source_workload: 'frontend',
    source_workload_namespace: 'shop',
    source_app: 'frontend',
    source_version: 'latest',
    source_principal: 'spiffe://cluster.local/ns/shop/sa/frontend',
    destination_workload: 'backend',
    destination_workload_namespace: 'shop',
    destination_app: 'backend',
    destination_principal: 'spiffe://cluster.local/ns/shop/sa/backend',
    destination_service: 'unknown',
  };
  const bytes = ['ping 0', 'ping 1', 'ping 2'].join('').length;
  for (const [side, reporter] of [
    [m.a, 'source'],
    [m.b, 'destination'],
  ] as const) {
    for (const [metric, value] of [
      [ISTIO_TCP_METRICS.opened, 3],
      [ISTIO_TCP_METRICS.closed, 3],
      [ISTIO_TCP_METRICS.received, bytes],
      [ISTIO_TCP_METRICS.sent, bytes],
    ] as const) {
      const all = await side.series(metric);
      assert.equal(all.length, 1, `${reporter} ${metric}: ${JSON.stringify(all)}`);
      assert.equal(all[0].value, value, `${reporter} ${metric}`);
      assert.deepEqual(pick(all[0].labels, Object.keys(expected)), expected, `${reporter} ${metric}`);
      assert.equal(all[0].labels.reporter, reporter);
    }
  }
  assert.deepEqual(
    m.a.proxy.hboneStats().pool.map((p) => [p.sourcePod, p.targetIp, p.connections.length]),
    [[FRONTEND.uid, '127.0.0.3', 1]],
  );
});

test('denied over HBONE: 403 on the tunnel, the client is reset, the app is never dialled', async (t) => {
  const m = await mesh(t);
  m.authorizer.rule = () => DENY_BY_POLICY;
  const err = await resetError(t, m.frontendOut, '127.0.0.2');
  assert.equal(err.code, 'ECONNRESET');
  await waitFor(() => m.a.access().length === 1 && m.b.access().length === 1, 'both access records');
  assert.deepEqual(m.b.dials, []);
  const inb = m.b.access()[0];
  assert.equal(inb.status, 403);
  assert.equal(inb.policy, 'shop/deny-frontend');
  assert.equal(inb.reason, 'DENY rule 0 matched');
  assert.equal(inb.error, 'denied by policy shop/deny-frontend');
  const out = m.a.access()[0];
  assert.equal(out.status, 403);
  assert.match(out.error ?? '', /answered 403/);
  assert.equal(out.responseFlags, 'DENY');
  assert.equal(inb.responseFlags, 'DENY');
  // Opened as `-` (the flag is known only at the end), closed as DENY; no bytes.
  for (const side of [m.a, m.b]) {
    assert.deepEqual(
      (await side.series(ISTIO_TCP_METRICS.opened)).map((v) => [v.labels.response_flags, v.value]),
      [['-', 1]],
    );
    assert.deepEqual(
      (await side.series(ISTIO_TCP_METRICS.closed)).map((v) => [v.labels.response_flags, v.value]),
      [['DENY', 1]],
    );
    assert.deepEqual(await side.series(ISTIO_TCP_METRICS.received), []);
  }
});

test('plaintext inbound: STRICT rejects it, PERMISSIVE admits it after authorizing the source address', async (t) => {
  const m = await mesh(t);
  m.authorizer.strict.add(BACKEND.uid);
  assert.equal((await resetError(t, m.backendIn, '127.0.0.3')).code, 'ECONNRESET');
  await waitFor(() => m.b.access().length === 1, "the rejection's access record");
  assert.equal(m.b.access()[0].error, 'plaintext rejected by PeerAuthentication STRICT');
  assert.equal(m.b.access()[0].path, 'plaintext');
  assert.equal(m.authorizer.calls.length, 0);
  assert.deepEqual(m.b.dials, []);

  m.authorizer.strict.delete(BACKEND.uid);
  const client = await connect(t, m.backendIn, '127.0.0.3');
  assert.equal(await roundTrip(client, 'plain'), 'plain');
  client.end();
  await waitFor(() => m.b.access().length === 2, "the admitted connection's record");
  const record = m.b.access()[1];
  assert.equal(record.path, 'plaintext');
  assert.equal(record.security, 'none');
  assert.equal(record.sourcePrincipal, undefined);
  assert.equal(record.error, undefined);
  assert.equal(m.authorizer.calls.length, 1);
  assert.equal(m.authorizer.calls[0].source.peer, undefined);
  assert.equal(m.authorizer.calls[0].source.ip, '127.0.0.1');

  // Denied by policy: reset too.
  m.authorizer.rule = () => DENY_BY_POLICY;
  assert.equal((await resetError(t, m.backendIn, '127.0.0.3')).code, 'ECONNRESET');
  await waitFor(() => m.b.access().length === 3, "the denial's record");
  assert.equal(m.b.access()[2].policy, 'shop/deny-frontend');
});

/** FRONTEND and BACKEND enrolled on one agent, BACKEND's app echoing on 127.0.0.3; FRONTEND's next connect goes there. */
async function sameNode(t: After): Promise<{ s: Setup; appPort: number; front: { outbound: number } }> {
  const state = new ClusterState();
  state.replace({ version: 1, revision: 1, workloads: [workload(FRONTEND, 'node-a'), workload(BACKEND, 'node-a')], services: [] });
  const s = await setup(t, { state });
  const appPort = await echoServer(t, '127.0.0.3');
  const front = await addPodListeners(t, s, FRONTEND);
  await addPodListeners(t, s, BACKEND);
  s.origin.next = { family: 4, ip: '127.0.0.3', port: appPort };
  return { s, appPort, front };
}

test("same node: the short path authorizes with the source identity and delivers from the destination's namespace", async (t) => {
  const { s, appPort, front } = await sameNode(t);

  const client = await connect(t, front.outbound, '127.0.0.2');
  assert.equal(await roundTrip(client, 'local'), 'local');
  client.end();
  await waitFor(() => s.access().length === 1, 'the access record');
  const record = s.access()[0];
  assert.equal(record.path, 'short');
  assert.equal(record.sourcePrincipal, 'cluster.local/ns/shop/sa/frontend');
  assert.equal(record.destinationPrincipal, 'cluster.local/ns/shop/sa/backend');
  assert.equal(count(s, 'hbone connection established'), 0, 'the short path used TLS');
  assert.equal(record.security, 'mutual_tls');
  // This agent is both ends: it reports the connection once as source and once as destination.
  const opened = await s.series(ISTIO_TCP_METRICS.opened);
  assert.deepEqual(opened.map((v) => [v.labels.reporter, v.labels.connection_security_policy, v.value]).sort(), [
    ['destination', 'mutual_tls', 1],
    ['source', 'mutual_tls', 1],
  ]);
  const [call] = s.authorizer.calls;
  assert.equal(call.pod, BACKEND.uid);
  assert.deepEqual(call.source.peer, {
    trustDomain: 'cluster.local',
    namespace: 'shop',
    serviceAccount: 'frontend',
    principal: 'cluster.local/ns/shop/sa/frontend',
  });
  assert.equal(call.source.ip, '127.0.0.2');
  assert.deepEqual(s.dials, [{ netnsPath: BACKEND.netnsPath, to: { family: 4, ip: '127.0.0.3', port: appPort } }]);

  s.authorizer.rule = () => DENY_BY_POLICY;
  assert.equal((await resetError(t, front.outbound, '127.0.0.2')).code, 'ECONNRESET');
  await waitFor(() => s.access().length === 2, "the denial's record");
  assert.equal(s.access()[1].error, 'denied by policy shop/deny-frontend');
  assert.equal(s.dials.length, 1);
});

test('same node with localShortcut off: HBONE to itself', async (t) => {
  const state = new ClusterState();
  state.replace({ version: 1, revision: 1, workloads: [workload(FRONTEND, 'node-a'), workload(BACKEND, 'node-a')], services: [] });
  const s = await setup(t, { state, localShortcut: false });
  const appPort = await echoServer(t, '127.0.0.3');
  const front = await addPodListeners(t, s, FRONTEND);
  await addPodListeners(t, s, BACKEND, { hbone: true });
  s.origin.next = { family: 4, ip: '127.0.0.3', port: appPort };
  const client = await connect(t, front.outbound, '127.0.0.2');
  assert.equal(await roundTrip(client, 'loop'), 'loop');
  client.end();
  await waitFor(() => s.access().length === 2, 'both records');
  assert.deepEqual(
    s
      .access()
      .map((r) => [r.direction, r.path])
      .sort(),
    [
      ['inbound', 'hbone'],
      ['outbound', 'hbone'],
    ],
  );
});

test('a destination that is not meshed is passed through from the source pod', async (t) => {
  const state = new ClusterState();
  state.replace({ version: 1, revision: 1, workloads: [workload(FRONTEND, 'node-a'), workload(BACKEND, 'node-b', false)], services: [] });
  const s = await setup(t, { state });
  const appPort = await echoServer(t, '127.0.0.3');
  const front = await addPodListeners(t, s, FRONTEND);
  s.origin.next = { family: 4, ip: '127.0.0.3', port: appPort };
  const client = await connect(t, front.outbound, '127.0.0.2');
  assert.equal(await roundTrip(client, 'plain'), 'plain');
  client.end();
  await waitFor(() => s.access().length === 1, 'the record');
  assert.equal(s.access()[0].path, 'passthrough');
  assert.equal(s.access()[0].security, 'none');
  assert.deepEqual(s.dials, [{ netnsPath: FRONTEND.netnsPath, to: { family: 4, ip: '127.0.0.3', port: appPort } }]);
  assert.deepEqual(s.authorizer.calls, []);
  // Reported by the source only, with no principal claimed: nothing was verified.
  const [sent] = await s.series(ISTIO_TCP_METRICS.received);
  assert.deepEqual(
    pick(sent.labels, ['reporter', 'connection_security_policy', 'source_principal', 'destination_principal', 'destination_workload']),
    {
      reporter: 'source',
      connection_security_policy: 'unknown',
      source_principal: 'unknown',
      destination_principal: 'unknown',
      destination_workload: 'backend',
    },
  );
  assert.equal(sent.value, 'plain'.length);
});

test('with HBONE disabled a meshed pod on another node is dialled in plaintext from the source pod', async (t) => {
  const state = new ClusterState();
  state.replace({ version: 1, revision: 1, workloads: [workload(FRONTEND, 'node-a'), workload(BACKEND, 'node-b')], services: [] });
  const s = await setup(t, { state, hbone: { enabled: false } });
  const appPort = await echoServer(t, '127.0.0.3');
  const front = await addPodListeners(t, s, FRONTEND);
  s.origin.next = { family: 4, ip: '127.0.0.3', port: appPort };
  const client = await connect(t, front.outbound, '127.0.0.2');
  assert.equal(await roundTrip(client, 'clear'), 'clear');
  client.end();
  await waitFor(() => s.access().length === 1, 'the record');
  assert.deepEqual([s.access()[0].path, s.access()[0].security], ['passthrough', 'none']);
  assert.deepEqual(s.dials, [{ netnsPath: FRONTEND.netnsPath, to: { family: 4, ip: '127.0.0.3', port: appPort } }]);
});

test('a policy change closes the open connections it now denies, within 1 s, and leaves the rest', async (t) => {
  const m = await mesh(t);
  const tunnelled = await connect(t, m.frontendOut, '127.0.0.2');
  assert.equal(await roundTrip(tunnelled, 'via hbone'), 'via hbone');
  const plain = await connect(t, m.backendIn, '127.0.0.3');
  assert.equal(await roundTrip(plain, 'plaintext'), 'plaintext');
  await waitFor(() => m.b.proxy.tracker.size === 2, 'both connections to be open at B');

  const reset = within(once(tunnelled, 'error'), 1000, 'the denied connection to be reset') as Promise<[NodeJS.ErrnoException]>;
  const started = Date.now();
  // Deny the frontend identity only: the plaintext connection (no peer) stays allowed.
  m.authorizer.change((_pod, source) => (source.peer?.serviceAccount === 'frontend' ? DENY_BY_POLICY : { allow: true, reason: 'ok' }));
  const [err] = await reset;
  assert.equal(err.code, 'ECONNRESET');
  assert.ok(Date.now() - started < 1000);
  await waitFor(() => m.b.access().length === 1 && m.a.access().length === 1, "the closed connection's records");
  const closed = m.b.access()[0];
  assert.equal(closed.error, 'closed: denied by policy shop/deny-frontend after policy change');
  assert.equal(closed.policy, 'shop/deny-frontend');
  assert.equal(await roundTrip(plain, 'still allowed'), 'still allowed');

  // PeerAuthentication turning STRICT closes the plaintext one.
  const plainReset = within(once(plain, 'error'), 1000, 'the plaintext connection to be reset') as Promise<[NodeJS.ErrnoException]>;
  m.authorizer.strict.add(BACKEND.uid);
  m.authorizer.change(m.authorizer.rule);
  assert.equal((await plainReset)[0].code, 'ECONNRESET');
  await waitFor(() => m.b.access().length === 2, 'the plaintext record');
  assert.equal(m.b.access()[1].error, 'closed: plaintext rejected by PeerAuthentication STRICT after policy change');
});

test("removePod closes the pod's HBONE listener and its tunnels", async (t) => {
  const m = await mesh(t);
  const client = await connect(t, m.frontendOut, '127.0.0.2');
  assert.equal(await roundTrip(client, 'x'), 'x');
  const reset = within(once(client, 'error'), 2000, 'the tunnelled connection to be reset') as Promise<[NodeJS.ErrnoException]>;
  let ended = false;
  client.on('end', () => {
    ended = true;
  });
  m.b.proxy.removePod(BACKEND.uid);
  assert.equal((await reset)[0].code, 'ECONNRESET');
  assert.equal(ended, false, 'the client saw a clean FIN before the reset');
  await waitFor(() => m.a.proxy.hboneStats().pool.length === 0, 'A to drop the closed tunnel');
  assert.equal(m.b.proxy.hboneStats().listeners[BACKEND.uid], undefined);
});

// ---- hardening: what a hostile pod would try -------------------------------------------------

test("self calls: a captured connect to the pod's own address, loopback or a Service endpoint on Ferry's ports is refused, never dialled", async (t) => {
  const s = await setup(t);
  s.state.replace({
    version: 1,
    revision: 2,
    workloads: POD_WORKLOADS(),
    services: [
      {
        namespace: 'shop',
        name: 'trap',
        hostname: 'trap.shop.svc.cluster.local',
        vips: ['10.96.0.66'],
        ports: [{ port: 80, endpoints: [{ ip: OTHER_POD.ips[0], port: 15006, workloadUid: OTHER_POD.uid }] }],
      },
    ],
  });
  const port = await addPod(t, s);
  const targets: SocketAddress[] = [
    { family: 4, ip: POD.ips[0], port: 15006 },
    { family: 4, ip: '0.0.0.0', port: 15001 },
    { family: 6, ip: '::ffff:127.0.0.1', port: 15008 },
    { family: 6, ip: '::', port: 15006 },
    { family: 4, ip: OTHER_POD.ips[0], port: 15008 },
    { family: 4, ip: '10.96.0.66', port: 80 },
  ];
  for (const target of targets) {
    s.origin.next = target;
    assert.equal((await resetError(t, port)).code, 'ECONNRESET', `${target.ip}:${target.port}`);
  }
  assert.deepEqual(s.dials, [], 'a self call was dialled');
  assert.deepEqual(s.proxy.refusalCounts(), [{ direction: 'outbound', reason: 'self_call', count: targets.length }]);
  assert.equal(s.proxy.tracker.size, 0);
});

test('self calls: a connection that reached the inbound listener without sk_lookup (its own loopback address) is refused', async (t) => {
  // POD's address is 10.244.0.5 but its listeners here are on 127.0.0.1: a connection arriving at
  // 127.0.0.1 came straight to the listener, as `curl 127.0.0.1:15006` inside the pod would.
  const s = await setup(t);
  const ports = await addPodListeners(t, s, POD, { inbound: true });
  assert.ok(ports.inbound !== undefined);
  assert.equal((await resetError(t, ports.inbound)).code, 'ECONNRESET');
  assert.deepEqual(s.dials, []);
  assert.deepEqual(s.authorizer.calls, [], 'a self call reached the policy engine');
  assert.deepEqual(s.proxy.refusalCounts(), [{ direction: 'inbound', reason: 'self_call', count: 1 }]);
});

test('refused connections write one access line per pod and interval, with the count of the rest', async (t) => {
  const s = await setup(t, { limits: { refusedLogIntervalMs: 200 } });
  s.origin.next = undefined;
  const port = await addPod(t, s);
  for (let i = 0; i < 40; i++) await resetError(t, port);
  assert.equal(s.access().length, 1, 'a burst wrote more than one line at once');
  assert.equal(s.access()[0].suppressed, undefined);
  await waitFor(() => s.access().length === 2, 'the line closing the window');
  assert.equal(s.access()[1].suppressed, 38);
  assert.equal(s.proxy.suppressedAccessLines, 38);
  assert.deepEqual(s.proxy.refusalCounts(), [{ direction: 'outbound', reason: 'self_call', count: 40 }], 'every refusal is counted');
});

test('a pod the model does not know is refused as a source: nothing to authorize it as', async (t) => {
  const state = new ClusterState();
  const s = await setup(t, { state });
  const echoPort = await echoServer(t);
  s.origin.next = { family: 4, ip: '127.0.0.1', port: echoPort };
  const port = await addPod(t, s);
  assert.equal((await resetError(t, port)).code, 'ECONNRESET');
  assert.deepEqual(s.dials, []);
  await waitFor(() => s.access().length === 1, 'the access record');
  assert.equal(s.access()[0].reason, 'workload_unknown');
});

test('at the per-pod connection cap a new connection is reset (UO), counted, and the pod recovers when one closes', async (t) => {
  const s = await setup(t, { limits: { maxConnectionsPerPod: 2 } });
  const echoPort = await echoServer(t);
  s.origin.next = { family: 4, ip: '127.0.0.1', port: echoPort };
  const port = await addPod(t, s);
  const held = [await connect(t, port), await connect(t, port)];
  for (const [i, c] of held.entries()) assert.equal(await roundTrip(c, `held ${i}`), `held ${i}`);
  assert.equal((await resetError(t, port)).code, 'ECONNRESET');
  await waitFor(() => s.access().some((r) => r.responseFlags === 'UO'), 'the refusal record');
  assert.equal(s.proxy.connectionLimitExceeded, 1);
  assert.deepEqual(s.proxy.refusalCounts(), [{ direction: 'outbound', reason: 'connection_limit', count: 1 }]);
  held[0].end();
  await waitFor(() => s.proxy.tracker.openFor(POD.uid) === 1, 'the closed connection to leave the count');
  const again = await connect(t, port);
  assert.equal(await roundTrip(again, 'room again'), 'room again');
});

test('with an idle timeout a relayed connection without traffic is reset, and one with traffic is not', async (t) => {
  const s = await setup(t, { limits: { idleTimeoutMs: 400 } });
  const echoPort = await echoServer(t);
  s.origin.next = { family: 4, ip: '127.0.0.1', port: echoPort };
  const port = await addPod(t, s);
  const idle = await connect(t, port);
  assert.equal(await roundTrip(idle, 'then silence'), 'then silence');
  const busy = await connect(t, port);
  const reset = within(once(idle, 'error'), 3000, 'the idle connection to be reset') as Promise<[NodeJS.ErrnoException]>;
  let busyErrors = 0;
  busy.on('error', () => {
    busyErrors += 1;
  });
  // Bounded: 20 round trips 100 ms apart keep the busy one alive through several sweeps.
  for (let i = 0; i < 20 && idle.readyState !== 'closed'; i++) {
    assert.equal(await roundTrip(busy, `tick ${i}`), `tick ${i}`);
    await sleep(100);
  }
  assert.equal((await reset)[0].code, 'ECONNRESET');
  assert.equal(busyErrors, 0);
  assert.equal(await roundTrip(busy, 'still here'), 'still here');
  await waitFor(() => s.access().some((r) => /idle for/.test(r.error ?? '')), 'the idle record');
});

test('relayed sockets get a zero linger until their FIN is out; HBONE sockets keepalive', async (t) => {
  const m = await mesh(t);
  const client = await connect(t, m.frontendOut, '127.0.0.2');
  assert.equal(await roundTrip(client, 'tuned'), 'tuned');
  client.end();
  await waitFor(() => m.a.access().length === 1 && m.b.access().length === 1, 'both records');
  // A: the app's socket, and the tunnel it dialled. B: the tunnel it accepted and the app connection it
  // dialled. Each relayed socket ended cleanly, so each was finished.
  assert.deepEqual(m.a.tuned, { relayed: 1, finished: 1, tunnel: 1 });
  assert.deepEqual(m.b.tuned, { relayed: 1, finished: 1, tunnel: 1 });
});

test("deliveries carry the real source: the tunnel's peer over HBONE, the source pod on the short path, the client for plaintext", async (t) => {
  const m = await mesh(t);
  const viaHbone = await connect(t, m.frontendOut, '127.0.0.2');
  assert.equal(await roundTrip(viaHbone, 'a'), 'a');
  const plain = await connect(t, m.backendIn, '127.0.0.3');
  assert.equal(await roundTrip(plain, 'b'), 'b');
  // A's dial is the tunnel (from its own address); B's are deliveries from the real sources.
  assert.deepEqual(
    m.a.deliveries.map((d) => d.sourceIp),
    [undefined],
  );
  // Each delivery picked its source port in the ephemeral range, never the plaintext client's own.
  for (const d of m.b.deliveries) assert.ok((d.sourcePort ?? 0) >= 32768 && (d.sourcePort ?? 0) <= 60999, JSON.stringify(d));
  assert.notEqual(m.b.deliveries[1].sourcePort, plain.localPort);
  assert.deepEqual(
    m.b.deliveries.map((d) => d.sourceIp),
    ['127.0.0.2', '127.0.0.1'],
  );

  const { s, appPort, front } = await sameNode(t);
  const short = await connect(t, front.outbound, '127.0.0.2');
  assert.equal(await roundTrip(short, 'c'), 'c');
  assert.deepEqual(
    s.deliveries.map(({ to, sourceIp }) => ({ to, sourceIp })),
    [{ to: { family: 4, ip: '127.0.0.3', port: appPort }, sourceIp: '127.0.0.2' }],
  );
});

test('an HBONE tunnel from the address of a workload with another identity is refused (403), the app never dialled', async (t) => {
  // The model says 127.0.0.2 is a pod running as `impostor`; FRONTEND's agent tunnels from there as `frontend`.
  const m = await mesh(t, [{ ...workload(FRONTEND, 'node-a'), serviceAccount: 'impostor' }, workload(BACKEND, 'node-b')]);
  assert.equal((await resetError(t, m.frontendOut, '127.0.0.2')).code, 'ECONNRESET');
  await waitFor(() => m.b.access().length === 1, 'the refusal record');
  assert.deepEqual(m.b.dials, []);
  assert.equal(m.b.access()[0].status, 403);
  assert.deepEqual(m.b.proxy.refusalCounts(), [{ direction: 'inbound', reason: 'source_identity_mismatch', count: 1 }]);
  assert.deepEqual(m.authorizer.calls, []);
});

test('a delivery whose source port is taken is dialled again from another port', async (t) => {
  const m = await mesh(t);
  m.b.portTaken.next = 2;
  const plain = await connect(t, m.backendIn, '127.0.0.3');
  assert.equal(await roundTrip(plain, 'twice refused'), 'twice refused');
  const ports = m.b.deliveries.map((d) => d.sourcePort);
  assert.equal(ports.length, 3, 'two refusals and the dial that worked');
  assert.equal(new Set(ports).size, 3, `the same port was tried again: ${ports.join(', ')}`);
});
