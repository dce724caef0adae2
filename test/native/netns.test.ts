// listenInNetns / connectInNetns / netnsCookie / socketCookie / socketMark with real network
// namespaces made by `ip netns add`, and proof that no thread is left in a pod's namespace.
// Root-only: fails when not root.
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';

import { connectInNetns, fdOf, isNativeError, listenInNetns, netnsCookie, socketCookie, socketMark } from '../../src/native';
import { assertRoot, createNetns, nsInode, type TestNetns } from './helpers';

const MARK = 0xfe44; // FERRY_SOCKET_MARK in bpf/include/ferry-shared.h

const namespaces: TestNetns[] = [];
let pod: TestNetns;
let hostInode = 0;

before(() => {
  assertRoot();
  hostInode = nsInode('/proc/self/ns/net');
  pod = createNetns();
  namespaces.push(pod);
});

after(() => {
  for (const netns of namespaces) netns.remove();
  // Whatever happened above, the main thread must still be in the host namespace.
  assert.equal(nsInode('/proc/self/ns/net'), hostInode);
});

/** Adopts a listening fd into a net.Server that echoes; resolves once listening. */
async function echoServer(fd: number, accepted: net.Socket[] = []): Promise<net.Server> {
  const server = net.createServer((socket) => {
    accepted.push(socket);
    socket.pipe(socket);
  });
  server.listen({ fd });
  await once(server, 'listening');
  return server;
}

function adopt(fd: number): net.Socket {
  return new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: false });
}

async function roundTrip(socket: net.Socket, payload: string): Promise<string> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.write(payload);
  while (Buffer.concat(chunks).length < payload.length) await once(socket, 'data');
  return Buffer.concat(chunks).toString();
}

describe('listen and connect inside a namespace', () => {
  test('data round-trips; marks and cookies are what the kernel reports', async (t) => {
    const hostCookie = await netnsCookie('/proc/self/ns/net');
    const podCookie = await netnsCookie(pod.path);
    assert.equal(typeof podCookie, 'bigint');
    assert.notEqual(podCookie, hostCookie);

    const listener = await listenInNetns(pod.path, { host: '127.0.0.1', port: 15001, mark: MARK, backlog: 16 });
    assert.equal(listener.netnsCookie, podCookie);
    assert.equal(socketMark(listener.fd), MARK);
    const accepted: net.Socket[] = [];
    const server = await echoServer(listener.fd, accepted);
    t.after(() => server.close());
    assert.deepEqual(server.address(), { address: '127.0.0.1', family: 'IPv4', port: 15001 });

    const fd = await connectInNetns(pod.path, { host: '127.0.0.1', port: 15001, mark: MARK, timeoutMs: 2000 });
    assert.equal(socketMark(fd), MARK);
    const client = adopt(fd);
    t.after(() => client.destroy());
    assert.equal(await roundTrip(client, 'hello through the pod namespace'), 'hello through the pod namespace');

    assert.equal(accepted.length, 1);
    const acceptedCookie = socketCookie(fdOf(accepted[0]));
    const clientCookie = socketCookie(fd);
    assert.equal(typeof acceptedCookie, 'bigint');
    assert.ok(acceptedCookie > 0n);
    assert.ok(clientCookie > 0n);
    assert.notEqual(acceptedCookie, clientCookie);
    // An accepted socket is a clone of its listener (inet_csk_clone_lock -> sk_clone_lock copies
    // sk_mark), so it carries the listener's mark although nobody set SO_MARK on it.
    assert.equal(socketMark(fdOf(accepted[0])), MARK);
  });

  test('the namespace really is separate: the host cannot reach the pod listener', async (t) => {
    // A port free on the host right now, so a refusal can only mean the namespaces are apart.
    const free = net.createServer().listen(0, '127.0.0.1');
    await once(free, 'listening');
    const { port } = free.address() as net.AddressInfo;
    await new Promise<void>((resolve) => free.close(() => resolve()));
    const listener = await listenInNetns(pod.path, { host: '127.0.0.1', port });
    const server = await echoServer(listener.fd);
    t.after(() => server.close());
    const probe = net.connect(port, '127.0.0.1');
    const [error] = (await once(probe, 'error')) as [NodeJS.ErrnoException];
    assert.equal(error.code, 'ECONNREFUSED');
  });

  test('IPv6 with v6Only on ::1', async (t) => {
    const listener = await listenInNetns(pod.path, { host: '::1', port: 15003, v6Only: true });
    const server = await echoServer(listener.fd);
    t.after(() => server.close());
    assert.equal((server.address() as net.AddressInfo).family, 'IPv6');
    const client = adopt(await connectInNetns(pod.path, { host: '::1', port: 15003 }));
    t.after(() => client.destroy());
    assert.equal(await roundTrip(client, 'v6'), 'v6');
  });

  test('connecting to a closed port rejects with ECONNREFUSED from connect', async () => {
    await assert.rejects(connectInNetns(pod.path, { host: '127.0.0.1', port: 15999, timeoutMs: 2000 }), (error: unknown) => {
      assert.ok(isNativeError(error));
      assert.equal(error.code, 'ECONNREFUSED');
      assert.equal(error.errno, 111);
      assert.equal(error.syscall, 'connect');
      assert.ok(error.message.startsWith('connect: Connection refused (127.0.0.1:15999 in /run/netns/'), error.message);
      return true;
    });
  });

  test('a connect nobody answers rejects with ETIMEDOUT after timeoutMs', async (t) => {
    // backlog 0 and no accept(): once one connection waits in the accept queue the kernel drops
    // further SYNs (tcp_conn_request: sk_acceptq_is_full), so the next connect never completes.
    const listener = await listenInNetns(pod.path, { host: '127.0.0.1', port: 15004, backlog: 0 });
    t.after(() => fs.closeSync(listener.fd));
    const first = await connectInNetns(pod.path, { host: '127.0.0.1', port: 15004, timeoutMs: 2000 });
    t.after(() => fs.closeSync(first));
    const started = Date.now();
    await assert.rejects(connectInNetns(pod.path, { host: '127.0.0.1', port: 15004, timeoutMs: 300 }), (error: unknown) => {
      assert.ok(isNativeError(error));
      assert.equal(error.code, 'ETIMEDOUT');
      assert.equal(error.syscall, 'connect');
      assert.match(error.message, /no answer within 300 ms/);
      return true;
    });
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 250 && elapsed < 5000, `timed out after ${elapsed} ms`);
  });

  test('binding a port twice in the same namespace is EADDRINUSE from bind', async (t) => {
    const listener = await listenInNetns(pod.path, { host: '127.0.0.1', port: 15005 });
    t.after(() => fs.closeSync(listener.fd));
    await assert.rejects(listenInNetns(pod.path, { host: '127.0.0.1', port: 15005 }), (error: unknown) => {
      return isNativeError(error) && error.code === 'EADDRINUSE' && error.syscall === 'bind';
    });
  });

  test('a missing namespace path is ENOENT from open; a non-net namespace is EINVAL from setns', async () => {
    await assert.rejects(netnsCookie('/run/netns/ferrytest-native-does-not-exist'), (error: unknown) => {
      return isNativeError(error) && error.code === 'ENOENT' && error.syscall === 'open';
    });
    await assert.rejects(listenInNetns('/proc/self/ns/uts', { host: '127.0.0.1', port: 15006 }), (error: unknown) => {
      return isNativeError(error) && error.code === 'EINVAL' && error.syscall === 'setns' && error.message.includes('/proc/self/ns/uts');
    });
  });
});

describe('no thread is left in another namespace', () => {
  test('50 interleaved listens in 5 namespaces, then the host and every pool thread are still home', async () => {
    const extra = Array.from({ length: 4 }, () => createNetns());
    namespaces.push(...extra);
    const all = [pod, ...extra];
    const cookies = await Promise.all(all.map((netns) => netnsCookie(netns.path)));
    assert.equal(new Set(cookies.map(String)).size, all.length, 'each namespace has its own cookie');

    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => {
        const which = i % all.length; // interleaved: consecutive calls go to different namespaces
        return listenInNetns(all[which].path, { host: '127.0.0.1', port: 20000 + i }).then((r) => ({ ...r, which }));
      }),
    );
    for (const result of results) {
      assert.equal(result.netnsCookie, cookies[result.which]);
      fs.closeSync(result.fd);
    }

    assert.equal(nsInode('/proc/self/ns/net'), hostInode, 'main thread moved');
    // fs calls run on the libuv pool; /proc/thread-self resolves to the thread doing the call, so
    // this reads the namespace of pool threads, more requests than threads to touch them all.
    const hostLink = fs.readlinkSync('/proc/self/ns/net');
    const poolLinks = await Promise.all(Array.from({ length: 64 }, () => fs.promises.readlink('/proc/thread-self/ns/net')));
    assert.deepEqual(new Set(poolLinks), new Set([hostLink]));

    for (let i = 0; i < 10; i++) {
      const server = net.createServer();
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const { port } = server.address() as net.AddressInfo;
      const client = net.connect(port, '127.0.0.1');
      await once(client, 'connect');
      client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    assert.equal(await netnsCookie('/proc/self/ns/net'), await netnsCookie('/proc/thread-self/ns/net'));
  });
});
