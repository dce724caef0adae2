// Shared harness of the HBONE unit tests: an echo app and one pod's HboneListener on loopback,
// an HbonePool whose dialer lands every tunnel on that listener, and request/exchange helpers.
import { once } from 'node:events';
import type * as http2 from 'node:http2';
import * as net from 'node:net';
import {
  HboneListener, HbonePool, hboneServerLimits, newTraceparent, relay,
  type Dialer, type HboneInboundStream, type HboneOpenRequest, type HbonePoolOptions, type HboneServerLimits, type ProxyPod,
} from '../../src/proxy';
import { createRootLogger } from '../../src/telemetry';
import { createCa, FakeTlsProvider, type TestCa } from './hbone-pki';
import { type After, sleep, within } from './helpers';

export const BACKEND: ProxyPod = {
  uid: 'shop/backend', namespace: 'shop', name: 'backend', serviceAccount: 'backend',
  netnsPath: '/run/netns/ftest-backend', netnsCookie: 1n, ips: ['127.0.0.1'],
};
export const FRONTEND: ProxyPod = {
  uid: 'shop/frontend', namespace: 'shop', name: 'frontend', serviceAccount: 'frontend',
  netnsPath: '/run/netns/ftest-frontend', netnsCookie: 2n, ips: ['127.0.0.1'],
};

export interface LogLine { level: number; component?: string; msg?: string; [key: string]: unknown }

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

/** An echo app on loopback and the pod's HBONE listener in front of it; onStream relays to the app. */
export async function hboneServer(t: After, limits: Partial<HboneServerLimits> = {}): Promise<Server> {
  const { ca, other } = await cas();
  const provider = new FakeTlsProvider(ca);
  await provider.add('shop', 'backend');
  await provider.add('shop', 'frontend');
  const lines: LogLine[] = [];
  const log = createRootLogger('debug', { write: (line: string) => { lines.push(JSON.parse(line) as LogLine); } });

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
  const listener = new HboneListener(BACKEND, {
    tls: provider, log, limits: hboneServerLimits(limits),
    onStream: (request) => {
      requests.push(request);
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
    provider, ca, other, listener, port: (server.address() as net.AddressInfo).port, appPort, lines, requests,
    accepted: () => lines.filter((l) => l.msg === 'hbone connection accepted').length,
  };
}

/** Every "pod" is this host: tunnels to any address land on the test's listener. */
export const loopbackDialer: Dialer = {
  dial(_netnsPath, to) {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: to.port, allowHalfOpen: true });
      socket.once('error', reject);
      socket.once('connect', () => { socket.off('error', reject); resolve(socket); });
    });
  },
};

export function pool(t: After, s: Server, options: Partial<HbonePoolOptions> = {}): HbonePool {
  const log = createRootLogger('debug', { write: (line: string) => { s.lines.push({ ...JSON.parse(line) as LogLine, client: true }); } });
  const p = new HbonePool({ tls: s.provider, dialer: loopbackDialer, log }, { port: s.port, ...options });
  t.after(() => p.close());
  return p;
}

export function request(s: Server, overrides: Partial<HboneOpenRequest> = {}): HboneOpenRequest {
  return {
    sourcePod: FRONTEND, sourcePrincipal: s.provider.principalFor('shop', 'frontend'),
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

