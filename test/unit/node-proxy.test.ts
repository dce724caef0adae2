// Fakes stand in for the kernel capture (origins: the BPF original-destination map) and the namespace dialer (setns + SO_MARK), which need root and BPF; test/integration covers the real ones.
// Everything else is real: NodeProxy serves a real listening socket, relays over loopback TCP to
// an echo server, resolves through a real ClusterState and logs through pino.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { NodeProxy, type AccessRecord, type Dialer, type OriginalDestinationSource, type ProxyPod, type SocketAddress } from '../../src/proxy';
import { ClusterState, type ClusterSnapshot } from '../../src/state';
import { createRootLogger } from '../../src/telemetry';
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
server.listen(0, '127.0.0.1', () => {
  process.send({ port: server.address().port }, server._handle, () => { server.close(); process.disconnect(); });
});
`;

interface RawHandle {
  fd: number;
  close(): void;
}

async function listeningFd(t: After): Promise<{ fd: number; port: number; adopted: () => void }> {
  const child = spawn(process.execPath, ['-e', LISTENER_CHILD], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  t.after(() => { if (child.exitCode === null) child.kill(); });
  const exited = once(child, 'exit');
  const [message, handle] = await within(once(child, 'message'), 10_000, 'the child to send a listening socket') as [unknown, unknown];
  // Until the child has closed its copy the socket keeps listening there after NodeProxy closes ours.
  await within(exited, 10_000, 'the child to exit');
  const port = (message as { port?: unknown }).port;
  const raw = handle as Partial<RawHandle> | undefined;
  assert.equal(typeof port, 'number');
  assert.ok(raw && typeof raw.fd === 'number' && raw.fd >= 0, 'no fd in the handle the child sent');
  let owned = true;
  // Closed here only when no NodeProxy took it (a failure before addPod).
  t.after(() => { if (owned) raw.close?.(); });
  return { fd: raw.fd, port: port as number, adopted: () => { owned = false; } };
}

// ---- servers, clients, logs -----------------------------------------------------------------

/** A TCP server on 127.0.0.1:0 whose accepted sockets are destroyed at the end of the test. */
async function serve(t: After, onSocket: (s: net.Socket) => void): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    onSocket(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

/** Echoes everything back and ends when the peer ends (half-close). */
function echoServer(t: After): Promise<number> {
  return serve(t, (s) => s.pipe(s));
}

/** Reads the whole request, then answers with how many bytes it got and ends (a reply of another size). */
function countingServer(t: After): Promise<number> {
  return serve(t, (s) => {
    let bytes = 0;
    s.on('data', (chunk: Buffer) => { bytes += chunk.length; });
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

async function connect(t: After, port: number): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  socket.on('error', () => undefined);
  t.after(() => { socket.destroy(); });
  await within(once(socket, 'connect'), 2000, `a connection to 127.0.0.1:${port}`);
  return socket;
}

/**
 * Connects and resolves with the reset the proxy answers with. The RST may arrive before the
 * client's connect completes in libuv (the error then names syscall 'connect') or after.
 */
async function resetError(t: After, port: number): Promise<NodeJS.ErrnoException> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  t.after(() => { socket.destroy(); });
  let ended = false;
  socket.on('end', () => { ended = true; });
  const [err] = await within(once(socket, 'error'), 2000, 'the client to be reset') as [NodeJS.ErrnoException];
  assert.equal(ended, false, 'the client saw a clean FIN before the error');
  return err;
}

/** Resolves with the error a connect attempt gets (e.g. ECONNREFUSED), or rejects if it connects. */
async function connectError(port: number): Promise<NodeJS.ErrnoException> {
  const socket = net.connect({ host: '127.0.0.1', port });
  try {
    const [err] = await within(once(socket, 'error'), 2000, `a connect to ${port} to fail`) as [NodeJS.ErrnoException];
    return err;
  } finally {
    socket.destroy();
  }
}

/** Sends `text`, reads the echo back (the connection stays open). */
async function roundTrip(socket: net.Socket, text: string): Promise<string> {
  let got = '';
  const onData = (chunk: Buffer): void => { got += chunk.toString(); };
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
  uid: 'shop/frontend', namespace: 'shop', name: 'frontend', serviceAccount: 'frontend',
  netnsPath: '/run/netns/ftest-frontend', netnsCookie: 4242n, ips: ['10.244.0.5'],
};
const OTHER_POD: ProxyPod = {
  uid: 'shop/worker', namespace: 'shop', name: 'worker', serviceAccount: 'worker',
  netnsPath: '/run/netns/ftest-worker', netnsCookie: 4343n, ips: ['10.244.0.6'],
};

interface Setup {
  proxy: NodeProxy;
  state: ClusterState;
  lines: LogLine[];
  access: () => AccessRecord[];
  dials: Array<{ netnsPath: string; to: SocketAddress }>;
  asked: Array<{ pod: string; clientPort: number | undefined }>;
  /** What the fake capture answers for the next accepted connection. */
  origin: { next: SocketAddress | undefined };
}

function setup(t: After): Setup {
  const lines: LogLine[] = [];
  const log = createRootLogger('debug', { write: (line: string) => { lines.push(JSON.parse(line) as LogLine); } });
  const state = new ClusterState();
  const dials: Setup['dials'] = [];
  const asked: Setup['asked'] = [];
  const origin: Setup['origin'] = { next: undefined };
  const origins: OriginalDestinationSource = {
    originalDestination(pod, accepted) {
      asked.push({ pod: pod.uid, clientPort: accepted.remotePort });
      return origin.next;
    },
  };
  const dialer: Dialer = {
    dial(netnsPath, to) {
      dials.push({ netnsPath, to });
      return new Promise((resolve, reject) => {
        const socket = net.connect({ host: to.ip, port: to.port, allowHalfOpen: true });
        socket.once('error', reject);
        socket.once('connect', () => {
          socket.off('error', reject);
          resolve(socket);
        });
        t.after(() => { socket.destroy(); });
      });
    },
  };
  const proxy = new NodeProxy({ resolver: state, origins, dialer, log });
  // Whatever a test left: close it, bounded, so one failure does not hang the file.
  t.after(async () => {
    proxy.tracker.destroyWhere(() => true);
    await within(proxy.drain(0), 2000, 'the final drain').catch(() => undefined);
  });
  const access = (): AccessRecord[] =>
    lines.filter((l) => l.component === 'access') as unknown as AccessRecord[];
  return { proxy, state, lines, access, dials, asked, origin };
}

/** A pod served by the proxy on a fresh listener; returns the listener's port. */
async function addPod(t: After, s: Setup, pod: ProxyPod = POD): Promise<number> {
  const listener = await listeningFd(t);
  await within(s.proxy.addPod(pod, { outbound: [listener.fd], inbound: [] }), 2000, 'addPod');
  listener.adopted();
  return listener.port;
}

// ---- tests ----------------------------------------------------------------------------------

test('relays a captured connection to its original destination and logs one access record', async (t) => {
  const s = setup(t);
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
  assert.equal(record.pod, POD.uid);
  assert.match(record.conn, /^o\d+$/);
  assert.equal(record.source, `127.0.0.1:${clientPort}`);
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
  const s = setup(t);
  const echoPort = await echoServer(t);
  const snapshot: ClusterSnapshot = {
    version: 1, revision: 1, workloads: [],
    services: [{
      namespace: 'shop', name: 'cart', hostname: 'cart.shop.svc.cluster.local', vips: ['10.96.0.10'],
      ports: [{ port: 80, endpoints: [{ ip: '127.0.0.1', port: echoPort }] }],
    }],
  };
  s.state.replace(snapshot);
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

test('a connection without an original destination is reset and nothing is dialled', async (t) => {
  const s = setup(t);
  s.origin.next = undefined;
  const port = await addPod(t, s);

  const err = await resetError(t, port);
  assert.equal(err.code, 'ECONNRESET');
  assert.equal(s.asked.length, 1);
  assert.deepEqual(s.dials, []);
  assert.ok(s.lines.some((l) => l.component === 'proxy' && /no original destination/.test(l.msg ?? '')),
    'no log line says why the connection was reset');
  assert.equal(s.proxy.tracker.size, 0);
});

test('a Service port without endpoints resets the client and logs the reason', async (t) => {
  const s = setup(t);
  s.state.replace({
    version: 1, revision: 1, workloads: [],
    services: [{ namespace: 'shop', name: 'cart', hostname: 'cart.shop.svc.cluster.local', vips: ['10.96.0.10'], ports: [{ port: 80, endpoints: [] }] }],
  });
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
  const s = setup(t);
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
  const s = setup(t);
  const echoPort = await echoServer(t);
  s.origin.next = { family: 4, ip: '127.0.0.1', port: echoPort };
  const port = await addPod(t, s);
  const client = await connect(t, port);
  assert.equal(await roundTrip(client, 'before drain'), 'before drain');

  let drained: { finished: boolean; closed: number } | undefined;
  const draining = s.proxy.drain(5000).then((r) => { drained = r; return r; });

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
  const s = setup(t);
  const port = await addPod(t, s);
  const result = await within(s.proxy.drain(5000), 1000, 'drain');
  assert.deepEqual(result, { finished: true, closed: 0 });
  assert.equal((await connectError(port)).code, 'ECONNREFUSED');
});

test('drain closes a connection still open at the deadline', async (t) => {
  const s = setup(t);
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
  await waitFor(() => s.access().length === 1, 'the closed connection\'s access record');
  assert.equal(s.access()[0].bytesSent, 'stay'.length);
  assert.equal((await connectError(port)).code, 'ECONNREFUSED');
});

test('removePod closes that pod\'s listener and connections, and leaves other pods alone', async (t) => {
  const s = setup(t);
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
  const [errA] = (await within(resetA, 2000, 'the removed pod\'s connection to be reset')) as [NodeJS.ErrnoException];
  assert.equal(errA.code, 'ECONNRESET');
  assert.equal((await connectError(portA)).code, 'ECONNREFUSED');

  assert.equal(await roundTrip(clientB, 'still here'), 'still here');
  const clientB2 = await connect(t, portB);
  assert.equal(await roundTrip(clientB2, 'new'), 'new');
  assert.deepEqual(s.proxy.tracker.list().map((c) => c.podUid).sort(), [OTHER_POD.uid, OTHER_POD.uid]);
});

test('removePod of a pod with no connections closes its listener', async (t) => {
  const s = setup(t);
  const port = await addPod(t, s);
  s.proxy.removePod(POD.uid);
  assert.equal(s.proxy.hasPod(POD.uid), false);
  assert.equal((await connectError(port)).code, 'ECONNREFUSED');
  // Removing an unknown pod is a no-op.
  s.proxy.removePod('shop/unknown');
  assert.equal(s.proxy.hasPod('shop/unknown'), false);
});
