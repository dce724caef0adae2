// tuneSocket / socketOptions on real TCP sockets in a test namespace: values read back by
// getsockopt, and SO_LINGER {on, 0} turning a close — or the death of the process holding the
// socket — into a reset the peer sees. Each reset case has its control: without lingerZero the
// peer sees a clean end. Root-only.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';

import { connectSocketInNetns, fdOf, isNativeError, listenInNetns, socketInNetns, socketOptions, tuneSocket } from '../../src/native';
import { assertRoot, createNetns, fixtureScript, nsInode, type TestNetns } from './helpers';

const PREFIX = 'hn';

let pod: TestNetns;
let hostInode = 0;

before(() => {
  assertRoot();
  hostInode = nsInode('/proc/self/ns/net');
  pod = createNetns(PREFIX);
});

after(() => {
  pod.remove();
  assert.equal(nsInode('/proc/self/ns/net'), hostInode);
});

/** How the server side of a connection ended: a reset (an 'error' with its code) or a clean FIN. */
type PeerEnding = { kind: 'error'; code: string | undefined } | { kind: 'end' };

function peerEnding(socket: net.Socket): Promise<PeerEnding> {
  return new Promise((resolve) => {
    socket.once('error', (error: NodeJS.ErrnoException) => resolve({ kind: 'error', code: error.code }));
    socket.once('end', () => resolve({ kind: 'end' }));
    socket.resume();
  });
}

/** A server in the pod whose accepted sockets are handed to the test, first data already read. */
async function podServer(port: number): Promise<{ server: net.Server; next: () => Promise<net.Socket> }> {
  const listener = await listenInNetns(pod.path, { host: '127.0.0.1', port });
  const waiting: Array<(socket: net.Socket) => void> = [];
  const ready: net.Socket[] = [];
  const server = net.createServer((socket) => {
    socket.once('data', () => {
      socket.pause();
      const take = waiting.shift();
      if (take) take(socket);
      else ready.push(socket);
    });
  });
  server.listen({ fd: listener.fd });
  await once(server, 'listening');
  const next = (): Promise<net.Socket> => {
    const socket = ready.shift();
    return socket ? Promise.resolve(socket) : new Promise((resolve) => waiting.push(resolve));
  };
  return { server, next };
}

describe('tuneSocket and socketOptions', () => {
  test('values read back equal those set; unset fields are not touched', async () => {
    const fd = await socketInNetns(pod.path, { family: 4 });
    try {
      const defaults = socketOptions(fd);
      assert.equal(defaults.keepAlive, false);
      assert.deepEqual(defaults.linger, { on: false, seconds: 0 });

      tuneSocket(fd, {
        keepAliveIdleSeconds: 30,
        keepAliveIntervalSeconds: 5,
        keepAliveCount: 4,
        userTimeoutMs: 20_000,
        lingerZero: true,
      });
      assert.deepEqual(socketOptions(fd), {
        keepAlive: true,
        keepAliveIdleSeconds: 30,
        keepAliveIntervalSeconds: 5,
        keepAliveCount: 4,
        userTimeoutMs: 20_000,
        linger: { on: true, seconds: 0 },
      });

      // One field at a time: the others keep their values.
      tuneSocket(fd, { userTimeoutMs: 1234 });
      tuneSocket(fd, { lingerZero: false });
      tuneSocket(fd, {});
      assert.deepEqual(socketOptions(fd), {
        keepAlive: true,
        keepAliveIdleSeconds: 30,
        keepAliveIntervalSeconds: 5,
        keepAliveCount: 4,
        userTimeoutMs: 1234,
        linger: { on: false, seconds: 0 },
      });
    } finally {
      fs.closeSync(fd);
    }
  });

  test('a non-TCP fd is a NativeError from setsockopt naming the option', () => {
    const fd = fs.openSync('/dev/null', 'r');
    try {
      assert.throws(
        () => tuneSocket(fd, { keepAliveCount: 3 }),
        (error: unknown) => {
          assert.ok(isNativeError(error));
          assert.equal(error.code, 'ENOTSOCK');
          assert.equal(error.syscall, 'setsockopt');
          assert.equal(error.message, `setsockopt: Socket operation on non-socket (SO_KEEPALIVE on fd ${fd})`);
          return true;
        },
      );
      assert.throws(
        () => socketOptions(fd),
        (error: unknown) => isNativeError(error) && error.code === 'ENOTSOCK',
      );
    } finally {
      fs.closeSync(fd);
    }
  });
});

describe('lingerZero: closing sends RST', () => {
  for (const lingerZero of [true, false]) {
    test(`closing a connected socket ${lingerZero ? 'with' : 'without'} lingerZero: the peer sees ${lingerZero ? 'ECONNRESET' : 'a clean end'}`, async (t) => {
      const { server, next } = await podServer(lingerZero ? 9101 : 9102);
      t.after(() => server.close());
      const client = await connectSocketInNetns(pod.path, { host: '127.0.0.1', port: lingerZero ? 9101 : 9102, timeoutMs: 2000 });
      tuneSocket(fdOf(client), { lingerZero });
      client.write('hello');
      const peer = await next();
      t.after(() => peer.destroy());
      const ending = peerEnding(peer);
      client.destroy(); // close(2) of the fd
      assert.deepEqual(await ending, lingerZero ? { kind: 'error', code: 'ECONNRESET' } : { kind: 'end' });
    });
  }

  for (const lingerZero of [true, false]) {
    test(`a process killed while holding a connection ${lingerZero ? 'with' : 'without'} lingerZero: the peer sees ${lingerZero ? 'a reset' : 'a clean end'}`, async (t) => {
      const port = lingerZero ? 9103 : 9104;
      const { server, next } = await podServer(port);
      t.after(() => server.close());
      const child = spawn(
        'ip',
        [
          'netns',
          'exec',
          pod.name,
          process.execPath,
          fixtureScript('linger-child'),
          '127.0.0.1',
          String(port),
          lingerZero ? 'linger-zero' : 'default',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      const exited = once(child, 'exit');
      t.after(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      // `ip netns exec` execs the command in its own process, so child.pid is node's.
      const peer = await next(); // the child has connected, tuned its socket and said "ready"
      t.after(() => peer.destroy());
      const ending = peerEnding(peer);
      child.kill('SIGKILL');
      const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
      assert.equal(signal, 'SIGKILL', `child exited with ${code}: ${stderr}`);
      assert.deepEqual(await ending, lingerZero ? { kind: 'error', code: 'ECONNRESET' } : { kind: 'end' });
    });
  }
});
