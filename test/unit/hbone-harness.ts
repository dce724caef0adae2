// Shared harness of the HBONE unit tests: an echo app and one pod's HboneListener on loopback,
// an HbonePool whose dialer lands every tunnel on that listener, request/exchange helpers, a TCP
// relay that can stop forwarding (a peer gone silent), and the h2-flood attacker tool.
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import {
  HboneListener,
  HbonePool,
  hboneServerLimits,
  newTraceparent,
  relay,
  type Dialer,
  type HboneAdmission,
  type HboneInboundStream,
  type HboneOpenRequest,
  type HbonePoolOptions,
  type HboneServerLimits,
  type ProxyPod,
} from '../../src/proxy';
import { createRootLogger } from '../../src/telemetry';
import { createCa, FakeTlsProvider, spiffe, type TestCa } from './hbone-pki';
import { type After, sleep, within } from './helpers';

export const BACKEND: ProxyPod = {
  uid: 'shop/backend',
  namespace: 'shop',
  name: 'backend',
  serviceAccount: 'backend',
  netnsPath: '/run/netns/ftest-backend',
  netnsCookie: 1n,
  ips: ['127.0.0.1'],
};
export const FRONTEND: ProxyPod = {
  uid: 'shop/frontend',
  namespace: 'shop',
  name: 'frontend',
  serviceAccount: 'frontend',
  netnsPath: '/run/netns/ftest-frontend',
  netnsCookie: 2n,
  ips: ['127.0.0.1'],
};

export interface LogLine {
  level: number;
  component?: string;
  msg?: string;
  [key: string]: unknown;
}

export async function waitFor(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

let pki: { ca: TestCa; other: TestCa } | undefined;
export async function cas(): Promise<{ ca: TestCa; other: TestCa }> {
  pki ??= { ca: await createCa('mesh ca'), other: await createCa('someone else') };
  return pki;
}

export interface Server {
  provider: FakeTlsProvider;
  ca: TestCa;
  other: TestCa;
  listener: HboneListener;
  port: number;
  appPort: number;
  lines: LogLine[];
  requests: HboneInboundStream[];
  /** TLS sessions the server accepted (one log line each). */
  accepted(): number;
}

export interface ServerOptions {
  /** Shared agent-wide caps (several listeners, one agent); default: the listener's own. */
  admission?: HboneAdmission;
  /** Reuse another server's PKI, so one client identity works on both. */
  provider?: FakeTlsProvider;
  pod?: ProxyPod;
  /** Replaces the relay to the echo app (e.g. a handler that never answers). */
  onStream?: (request: HboneInboundStream) => void;
}

/** An echo app on loopback and the pod's HBONE listener in front of it; onStream relays to the app. */
export async function hboneServer(t: After, limits: Partial<HboneServerLimits> = {}, options: ServerOptions = {}): Promise<Server> {
  const { ca, other } = await cas();
  const provider = options.provider ?? new FakeTlsProvider(ca);
  if (!options.provider) {
    await provider.add('shop', 'backend');
    await provider.add('shop', 'frontend');
  }
  const lines: LogLine[] = [];
  const log = createRootLogger('debug', {
    write: (line: string) => {
      lines.push(JSON.parse(line) as LogLine);
    },
  });

  const appSockets = new Set<net.Socket>();
  const app = net.createServer({ allowHalfOpen: true }, (s) => {
    appSockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => appSockets.delete(s));
    s.pipe(s);
  });
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  const appPort = (app.address() as net.AddressInfo).port;

  const requests: HboneInboundStream[] = [];
  const listener = new HboneListener(options.pod ?? BACKEND, {
    tls: provider,
    log,
    limits: hboneServerLimits(limits),
    admission: options.admission,
    onStream: (request) => {
      requests.push(request);
      if (options.onStream) {
        options.onStream(request);
        return;
      }
      const upstream = net.connect({ host: request.target.ip, port: request.target.port, allowHalfOpen: true });
      upstream.on('error', () => request.reject(503));
      upstream.on('connect', () => {
        request.accept();
        void relay(request.stream, upstream);
      });
    },
  });
  const raws = new Set<net.Socket>();
  const server = net.createServer((raw) => {
    raws.add(raw);
    raw.on('close', () => raws.delete(raw));
    listener.accept(raw);
  });
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 });
  await once(server, 'listening');
  t.after(() => {
    listener.close();
    server.close();
    app.close();
    for (const s of [...raws, ...appSockets]) s.destroy();
  });
  return {
    provider,
    ca,
    other,
    listener,
    port: (server.address() as net.AddressInfo).port,
    appPort,
    lines,
    requests,
    accepted: () => lines.filter((l) => l.msg === 'hbone connection accepted').length,
  };
}

/** Every "pod" is this host: tunnels to any address land on the test's listener. */
export const loopbackDialer: Dialer = {
  dial(_netnsPath, to) {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: to.port, allowHalfOpen: true });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(socket);
      });
    });
  },
};

export function pool(t: After, s: Server, options: Partial<HbonePoolOptions> = {}): HbonePool {
  const log = createRootLogger('debug', {
    write: (line: string) => {
      s.lines.push({ ...(JSON.parse(line) as LogLine), client: true });
    },
  });
  const p = new HbonePool({ tls: s.provider, dialer: loopbackDialer, log }, { port: s.port, ...options });
  t.after(() => p.close());
  return p;
}

export function request(s: Server, overrides: Partial<HboneOpenRequest> = {}): HboneOpenRequest {
  return {
    sourcePod: FRONTEND,
    sourcePrincipal: s.provider.principalFor('shop', 'frontend'),
    target: { family: 4, ip: '127.0.0.1', port: s.appPort },
    expectedPrincipal: s.provider.principalFor('shop', 'backend'),
    headers: { forwarded: 'for=127.0.0.1', traceparent: newTraceparent(), baggage: 'k8s.namespace.name=shop,k8s.pod.name=frontend' },
    ...overrides,
  };
}

/** Write `text`, half-close, read until the peer ends. */
export async function exchange(stream: http2.ClientHttp2Stream, text: string): Promise<string> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const ended = once(stream, 'end');
  stream.end(text);
  await within(ended, 3000, 'the echo to end');
  return Buffer.concat(chunks).toString();
}

/** Resolves on 'close' whatever errors come first (events.once would reject on 'error'). */
export function closeOf(emitter: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => emitter.once('close', () => resolve()));
}

/** A dialer that sends tunnels for some target IPs to other loopback ports (a second, maybe hostile, peer). */
export function routedDialer(ports: Record<string, number>, dials: string[] = []): Dialer {
  return {
    dial(netnsPath, to) {
      dials.push(to.ip);
      return loopbackDialer.dial(netnsPath, { ...to, port: ports[to.ip] ?? to.port });
    },
  };
}

export function poolWith(t: After, s: Server, dialer: Dialer, options: Partial<HbonePoolOptions> = {}): HbonePool {
  const log = createRootLogger('debug', {
    write: (line: string) => {
      s.lines.push({ ...(JSON.parse(line) as LogLine), client: true });
    },
  });
  const p = new HbonePool({ tls: s.provider, dialer, log }, { port: s.port, ...options });
  t.after(() => p.close());
  return p;
}

export interface TcpRelay {
  port: number;
  /** Stop forwarding both ways, on open connections and new ones alike: the far end goes silent. */
  pause(): void;
  resume(): void;
}

/**
 * A loopback TCP relay to `targetPort`. Paused, it stops reading either side, so bytes (PINGs and
 * their ACKs) stay in kernel buffers and neither end hears from the other, as when a peer's host
 * hangs or a path drops packets; nothing is lost, so resume() carries on where it stopped.
 */
export async function tcpRelay(t: After, targetPort: number): Promise<TcpRelay> {
  let paused = false;
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    if (paused) socket.pause();
  };
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    track(client);
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.close();
    for (const socket of sockets) socket.destroy();
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    pause() {
      paused = true;
      for (const socket of sockets) socket.pause();
    },
    resume() {
      paused = false;
      for (const socket of sockets) socket.resume();
    },
  };
}

/** An authenticated raw HTTP/2 client session as `shop/<serviceAccount>` (for sessions HbonePool would not make). */
export async function clientSession(
  t: After,
  port: number,
  provider: FakeTlsProvider,
  serviceAccount = 'frontend',
): Promise<{ session: http2.ClientHttp2Session; goaway: () => number | undefined; closed: Promise<void> }> {
  const principal = provider.principalFor('shop', serviceAccount);
  if (!provider.contexts(principal)) await provider.add('shop', serviceAccount);
  const contexts = provider.contexts(principal);
  if (!contexts) throw new Error(`no certificate for ${principal}`);
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    secureContext: contexts.client,
    ALPNProtocols: ['h2'],
    checkServerIdentity: () => undefined,
  });
  const session = http2.connect(`https://127.0.0.1:${port}`, { createConnection: () => socket });
  let code: number | undefined;
  session.on('error', () => undefined);
  session.on('goaway', (c: number) => {
    code ??= c;
  });
  const closed = closeOf(session);
  t.after(() => {
    session.destroy();
  });
  await within(once(session, 'remoteSettings'), 3000, "the server's SETTINGS");
  return { session, goaway: () => code, closed };
}

// dist/test/unit → <repo>/test/fixtures/tools
export const TOOLS = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'tools');

/** PEM files (cert, key, CA) for `spiffe://cluster.local/ns/shop/sa/<serviceAccount>`, as h2-flood.js and hbone-client.js take them. */
export async function pemFiles(t: After, ca: TestCa, serviceAccount = 'frontend'): Promise<string[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-hbone-pem-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const issued = await ca.issue([spiffe('cluster.local', 'shop', serviceAccount)]);
  fs.writeFileSync(path.join(dir, 'cert.pem'), issued.certPem);
  fs.writeFileSync(path.join(dir, 'key.pem'), issued.keyPem);
  fs.writeFileSync(path.join(dir, 'ca.pem'), ca.pem);
  return ['--cert', path.join(dir, 'cert.pem'), '--key', path.join(dir, 'key.pem'), '--ca', path.join(dir, 'ca.pem')];
}

/** What test/fixtures/tools/h2-flood.js prints. */
export interface FloodResult {
  attack: string | null;
  framesSent: number;
  closedAfterMs: number | null;
  goaway: { errorCode: number; lastStreamId: number } | null;
  reset: boolean;
  rstStream?: { streamId: number; errorCode: number } | null;
  error?: string;
}

/** Run h2-flood.js as a child process (its own event loop, as an attacker would be); resolves with its one JSON line. */
export function runFlood(args: string[]): Promise<{ code: number | null; result: FloodResult }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [path.join(TOOLS, 'h2-flood.js'), ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      const lines = stdout.trim().split('\n');
      if (lines.length !== 1 || lines[0] === '') {
        reject(new Error(`h2-flood printed ${JSON.stringify(stdout)} (stderr ${JSON.stringify(stderr)})`));
        return;
      }
      resolve({ code, result: JSON.parse(lines[0]) as FloodResult });
    });
  });
}

/** A loopback TCP pair standing in for the source app: `near` is relayed into the tunnel, `far` is what the app sees. */
export async function appPair(
  t: After,
): Promise<{ near: net.Socket; far: net.Socket; farError: () => string | undefined; farClosed: Promise<void> }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const far = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
  const [near] = await accepted;
  server.close();
  let error: string | undefined;
  far.on('error', (err: NodeJS.ErrnoException) => {
    error ??= err.code;
  });
  near.on('error', () => undefined);
  const farClosed = new Promise<void>((resolve) => far.once('close', () => resolve()));
  t.after(() => {
    near.destroy();
    far.destroy();
  });
  return { near, far, farError: () => error, farClosed };
}
