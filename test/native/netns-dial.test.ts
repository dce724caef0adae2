// socketInNetns / connectSocketInNetns / connectInNetns in real namespaces: sockets made in a
// namespace and connected by libuv on the event loop, so dials to a destination that drops SYNs
// hold no pool thread. The blackhole is 10.99.0.0/24, routed inside a test namespace into a veth
// whose far end (in a second test namespace) has no address and answers nothing. Root-only.
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

import { connectInNetns, connectSocketInNetns, isNativeError, listenInNetns, socketInNetns, socketMark } from '../../src/native';
import type { DialStormConfig, DialStormReport } from './fixtures/dial-storm';
import { assertRoot, createNetns, createVeth, fixtureScript, ipIn, nsInode, run, type TestNetns } from './helpers';

const PREFIX = 'hn';
const MARK = 0xfe44;
const DIAL_ADDRESS = '10.98.0.1';
const SINK_GATEWAY = '10.98.0.2';
const BLACKHOLE = '10.99.0';

const namespaces: TestNetns[] = [];
let pod: TestNetns;
let hostInode = 0;

before(() => {
  assertRoot();
  hostInode = nsInode('/proc/self/ns/net');
  pod = createNetns(PREFIX);
  namespaces.push(pod);
  const sink = createNetns(PREFIX);
  namespaces.push(sink);
  createVeth(pod, 'hn-out', sink, 'hn-sink');
  ipIn(pod, ['addr', 'add', `${DIAL_ADDRESS}/24`, 'dev', 'hn-out']);
  // A permanent neighbour entry for the gateway: SYNs leave at once, without ARP (which would
  // fail after ~3 s with EHOSTUNREACH), and the sink, with no address and no forwarding, drops
  // them without an ICMP answer (ip_error on a non-forwarding device) — a silent destination.
  const [sinkLink] = JSON.parse(ipIn(sink, ['-j', 'link', 'show', 'hn-sink'])) as Array<{ address: string }>;
  ipIn(pod, ['neigh', 'add', SINK_GATEWAY, 'lladdr', sinkLink.address, 'dev', 'hn-out', 'nud', 'permanent']);
  ipIn(pod, ['route', 'add', `${BLACKHOLE}.0/24`, 'via', SINK_GATEWAY, 'dev', 'hn-out']);
});

after(() => {
  for (const netns of namespaces) netns.remove();
  assert.equal(nsInode('/proc/self/ns/net'), hostInode);
});

async function echoServer(host: string, port: number, onAccept?: (socket: net.Socket) => void): Promise<net.Server> {
  const listener = await listenInNetns(pod.path, { host, port });
  const server = net.createServer((socket) => {
    onAccept?.(socket);
    socket.pipe(socket);
  });
  server.listen({ fd: listener.fd });
  await once(server, 'listening');
  return server;
}

async function roundTrip(socket: net.Socket, payload: string): Promise<string> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.write(payload);
  while (Buffer.concat(chunks).length < payload.length) await once(socket, 'data');
  return Buffer.concat(chunks).toString();
}

describe('socketInNetns: made in the namespace, connected by libuv', () => {
  test('an adopted socket connects from inside the namespace and exchanges data, carrying its mark', async (t) => {
    const peers: string[] = [];
    const server = await echoServer(DIAL_ADDRESS, 7001, (socket) => peers.push(socket.remoteAddress ?? ''));
    t.after(() => server.close());

    const fd = await socketInNetns(pod.path, { family: 4, mark: MARK, transparent: false });
    assert.equal(socketMark(fd), MARK);
    const socket = new net.Socket({ fd, allowHalfOpen: true });
    t.after(() => socket.destroy());
    socket.connect(7001, DIAL_ADDRESS);
    await once(socket, 'connect');
    // The source the kernel chose is the namespace's own address: the socket lives there.
    assert.equal(socket.localAddress, DIAL_ADDRESS);
    assert.equal(await roundTrip(socket, 'through an adopted socket'), 'through an adopted socket');
    assert.deepEqual(peers, [DIAL_ADDRESS]);
  });

  test('IPv6: socketInNetns family 6 on the namespace loopback', async (t) => {
    const server = await echoServer('::1', 7002);
    t.after(() => server.close());
    const socket = await connectSocketInNetns(pod.path, { host: '::1', port: 7002, timeoutMs: 2000 });
    t.after(() => socket.destroy());
    assert.equal(socket.remoteFamily, 'IPv6');
    assert.equal(await roundTrip(socket, 'v6'), 'v6');
  });

  test('a source address that is not local is EADDRNOTAVAIL from bind unless transparent', async () => {
    await assert.rejects(socketInNetns(pod.path, { family: 4, bindHost: '10.244.9.9' }), (error: unknown) => {
      assert.ok(isNativeError(error));
      assert.equal(error.code, 'EADDRNOTAVAIL');
      assert.equal(error.syscall, 'bind');
      assert.match(error.message, /10\.244\.9\.9:0/);
      assert.ok(error.message.includes(pod.path), error.message);
      return true;
    });
    const fd = await socketInNetns(pod.path, { family: 4, transparent: true, bindHost: '10.244.9.9' });
    fs.closeSync(fd);
  });
});

describe('connectSocketInNetns', () => {
  test('resolves a connected socket; a closed port rejects with ECONNREFUSED from connect', async (t) => {
    const server = await echoServer(DIAL_ADDRESS, 7003);
    t.after(() => server.close());
    const socket = await connectSocketInNetns(pod.path, { host: DIAL_ADDRESS, port: 7003, mark: MARK, timeoutMs: 2000 });
    t.after(() => socket.destroy());
    assert.equal(socket.remoteAddress, DIAL_ADDRESS);
    assert.equal(await roundTrip(socket, 'ping'), 'ping');

    await assert.rejects(connectSocketInNetns(pod.path, { host: DIAL_ADDRESS, port: 7999, timeoutMs: 2000 }), (error: unknown) => {
      assert.ok(isNativeError(error));
      assert.equal(error.code, 'ECONNREFUSED');
      assert.equal(error.errno, 111);
      assert.equal(error.syscall, 'connect');
      assert.equal(error.message, `connect: Connection refused (${DIAL_ADDRESS}:7999 in ${pod.path})`);
      return true;
    });
  });

  test('a destination that drops SYNs: ETIMEDOUT after timeoutMs, and the socket is closed', async () => {
    const synSent = (): string => run('ip', ['netns', 'exec', pod.name, 'ss', '-Htn', 'state', 'syn-sent', 'dst', `${BLACKHOLE}.1`]).trim();
    const started = performance.now();
    await assert.rejects(connectSocketInNetns(pod.path, { host: `${BLACKHOLE}.1`, port: 80, timeoutMs: 300 }), (error: unknown) => {
      assert.ok(isNativeError(error));
      assert.equal(error.code, 'ETIMEDOUT');
      assert.equal(error.errno, 110);
      assert.equal(error.syscall, 'connect');
      assert.equal(error.message, `connect: Connection timed out (${BLACKHOLE}.1:80 in ${pod.path}: no answer within 300 ms)`);
      return true;
    });
    // libuv's timers run on its millisecond clock, so allow 1 ms of rounding.
    assert.ok(performance.now() - started >= 299, 'rejected before its timeout');
    // Destroyed, so closed: a leaked fd would keep its socket in SYN-SENT, retransmitting.
    assert.equal(synSent(), '', 'the timed-out socket is still open');
  });

  test('connectInNetns hands over an fd without losing what the server sends first', async (t) => {
    const listener = await listenInNetns(pod.path, { host: DIAL_ADDRESS, port: 7004 });
    const server = net.createServer((socket) => socket.end('greeting from a server that speaks first\n'));
    server.listen({ fd: listener.fd });
    await once(server, 'listening');
    t.after(() => server.close());
    const fd = await connectInNetns(pod.path, { host: DIAL_ADDRESS, port: 7004, timeoutMs: 2000 });
    const socket = new net.Socket({ fd, readable: true, writable: true });
    t.after(() => socket.destroy());
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    await once(socket, 'end');
    assert.equal(Buffer.concat(chunks).toString(), 'greeting from a server that speaks first\n');
  });
});

describe('dials to a blackhole hold no pool thread', () => {
  test('32 dials to a blackhole and 100 live dials with UV_THREADPOOL_SIZE=4: the live ones all succeed', async () => {
    const timeoutMs = 5000;
    const config: DialStormConfig = {
      netnsPath: pod.path,
      liveHost: DIAL_ADDRESS,
      livePort: 7100,
      liveDials: 100,
      blackholeHosts: Array.from({ length: 32 }, (_, i) => `${BLACKHOLE}.${i + 1}`),
      blackholePort: 80,
      blackholeTimeoutMs: timeoutMs,
    };
    // A child process: the pool size is fixed when libuv first uses the pool, and this process's
    // pool (run-tests.js gives it 16 threads) is long started.
    const { stdout } = await promisify(execFile)(process.execPath, [fixtureScript('dial-storm'), JSON.stringify(config)], {
      env: { ...process.env, UV_THREADPOOL_SIZE: '4' },
      timeout: 60_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const report = JSON.parse(stdout) as DialStormReport;
    assert.equal(report.threadpoolSize, '4');

    const failedLive = report.live.filter((outcome) => !outcome.ok);
    assert.equal(report.live.length, 100);
    assert.deepEqual(failedLive, [], `live dials failed: ${JSON.stringify(failedLive.slice(0, 5))}`);

    assert.equal(report.blackhole.length, 32);
    for (const outcome of report.blackhole) {
      assert.equal(outcome.ok, false);
      assert.equal(outcome.code, 'ETIMEDOUT', JSON.stringify(outcome));
      assert.equal(outcome.syscall, 'connect');
      assert.ok(outcome.elapsedMs >= timeoutMs - 1, `a blackhole dial gave up after ${outcome.elapsedMs} ms`);
    }
    // The order of events that shows no thread was held: every live dial had finished while all
    // 32 blackhole dials were still waiting for their (explicit) timeout. A dial that kept a pool
    // thread until its timeout would have queued the live dials behind 8 rounds of 4 of them.
    assert.equal(report.blackholePendingAfterLive, 32);
  });
});
