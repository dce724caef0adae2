// The agent hand-over over a real Unix socket: listening TCP sockets passed with SCM_RIGHTS from a
// HandoverServer (the running agent's side) to a PredecessorLink (the starting agent's), served by
// the receiver on the same port with nothing re-bound, and what a hostile or broken successor gets:
// garbage frames, an oversized length, another node's hello, a second successor, one that leaves
// half-way or never asks. Root-only (CI runs it as root; the agent's socket directory is root's).
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  HANDOVER_TIMEOUTS,
  HandoverServer,
  PredecessorLink,
  closeTaken,
  type OfferedListener,
  type PredecessorRole,
} from '../../src/handover';
import { closeFd, fdOf, netnsCookie, unixListen } from '../../src/native';
import { createRootLogger } from '../../src/telemetry';
import { assertRoot } from './helpers';

const log = createRootLogger('silent');
const NODE = 'node-h';
const PIN_DIR = '/sys/fs/bpf/ferrytest-handover';
let dir: string;
const servers: net.Server[] = [];

before(() => {
  assertRoot();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrytest-handover-'));
});

after(() => {
  for (const s of servers) if (s.listening) s.close();
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(fs.existsSync(dir), false);
});

let counter = 0;
function socketPath(): string {
  counter += 1;
  return path.join(dir, `h${counter}.sock`);
}

/** A TCP listener on 127.0.0.1 answering `name` to every connection. */
async function answering(name: string): Promise<net.Server> {
  const server = net.createServer((s) => s.end(name));
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

function ask(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(port, '127.0.0.1');
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString()));
    socket.on('error', reject);
  });
}

interface RoleLog {
  frozen: number;
  thawed: string[];
  released: number;
}

function roleOf(offer: () => OfferedListener[], record: RoleLog, onRelease: () => void = () => undefined): PredecessorRole {
  return {
    node: NODE,
    pinDir: PIN_DIR,
    cgroupId: 4242n,
    pod: 'agent-old',
    async freeze() {
      record.frozen += 1;
      return offer();
    },
    thaw(reason) {
      record.thawed.push(reason);
    },
    release() {
      record.released += 1;
      onRelease();
      return { open: 3 };
    },
  };
}

const identity = { node: NODE, pinDir: PIN_DIR, cgroupPath: '/sys/fs/cgroup/x', pod: 'agent-new' };

/** Raw frames to the server, as a hostile successor writes them; resolves with what it answers before closing. */
async function rawConversation(socket: string, frames: Buffer[]): Promise<string[]> {
  const client = net.connect(socket);
  await once(client, 'connect');
  for (const f of frames) client.write(f);
  const chunks: Buffer[] = [];
  client.on('data', (c: Buffer) => chunks.push(c));
  await once(client, 'close');
  const data = Buffer.concat(chunks);
  const messages: string[] = [];
  for (let at = 0; at + 4 <= data.length; ) {
    const length = data.readUInt32BE(at);
    messages.push(data.subarray(at + 4, at + 4 + length).toString());
    at += 4 + length;
  }
  return messages;
}

function frame(payload: string | Buffer): Buffer {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

const hello = JSON.stringify({ type: 'hello', version: 1, pid: 77, ...identity });

describe('agent hand-over over a Unix socket', { timeout: 60_000 }, () => {
  test('the successor receives the listening sockets, serves them on the same port, and after go only it accepts', async () => {
    const record: RoleLog = { frozen: 0, thawed: [], released: 0 };
    const readiness = await answering('old readiness');
    const outbound = await answering('old outbound');
    const cookie = await netnsCookie('/proc/self/ns/net');
    const pod = { uid: 'uid-1', namespace: 'app', name: 'web', netnsCookie: cookie.toString() };
    const ports = new Map([readiness, outbound].map((s) => [s, (s.address() as net.AddressInfo).port]));
    const port = (s: net.Server) => ports.get(s) as number;
    const socket = socketPath();
    const server = HandoverServer.listen(
      socket,
      roleOf(
        () => [
          { message: { kind: 'readiness', family: 4, port: port(readiness) }, fd: fdOf(readiness) },
          { message: { kind: 'outbound', pod, family: 4, port: port(outbound) }, fd: fdOf(outbound) },
        ],
        record,
        () => {
          readiness.close();
          outbound.close();
        },
      ),
      log,
    );
    assert.equal((fs.statSync(socket).mode & 0o777).toString(8), '600', 'the socket is its owner’s only');

    const link = await PredecessorLink.connect(socket, identity, log);
    assert.ok(link, 'a predecessor answered');
    assert.equal(link.hello.pid, process.pid);
    assert.equal(link.hello.pod, 'agent-old');
    assert.equal(link.cgroupId, 4242n);
    const taken = await link.takeListeners();
    assert.equal(record.frozen, 1);
    assert.deepEqual([...taken.pods.keys()], ['uid-1']);
    const podTaken = taken.pods.get('uid-1');
    assert.equal(podTaken?.byKind.outbound.length, 1);
    assert.equal(podTaken?.netnsCookie, cookie);
    const readinessFd = taken.node.readiness;
    assert.ok(readinessFd !== undefined);

    // The successor serves the very same sockets: no bind, the same ports.
    const newReadiness = net.createServer((s) => s.end('new readiness'));
    servers.push(newReadiness);
    newReadiness.listen({ fd: readinessFd });
    await once(newReadiness, 'listening');
    const newOutbound = net.createServer((s) => s.end('new outbound'));
    servers.push(newOutbound);
    newOutbound.listen({ fd: podTaken?.byKind.outbound[0].fd as number });
    await once(newOutbound, 'listening');
    assert.equal((newReadiness.address() as net.AddressInfo).port, port(readiness));
    // Both accept until go: every connection is answered by one or the other, none refused.
    const during = await Promise.all(Array.from({ length: 20 }, () => ask(port(readiness))));
    assert.ok(
      during.every((a) => a === 'old readiness' || a === 'new readiness'),
      during.join(','),
    );

    const { open } = await link.go();
    assert.equal(open, 3);
    assert.equal(record.released, 1);
    assert.equal(server.complete, true);
    const exited = new Promise<void>((resolve) => link.watchExit(resolve));
    const afterGo = await Promise.all(Array.from({ length: 20 }, () => ask(port(readiness))));
    assert.deepEqual(new Set(afterGo), new Set(['new readiness']));
    assert.equal(await ask(port(outbound)), 'new outbound');
    assert.deepEqual(record.thawed, []);
    // The predecessor listens no more: a later agent finds nobody there.
    assert.equal(await PredecessorLink.connect(socket, identity, log), undefined);
    server.close();
    await exited;
    assert.ok(fs.existsSync(socket), 'after a hand-over the path is the successor’s to take, not removed');
    fs.rmSync(socket);
    newReadiness.close();
    newOutbound.close();
  });

  test('no agent at the socket: the successor starts fresh; a stale socket file counts as none and is replaced', async () => {
    const socket = socketPath();
    assert.equal(await PredecessorLink.connect(socket, identity, log), undefined);
    // A crashed agent's socket file: bound, nobody listening any more.
    closeFd(unixListen(socket, 0o600));
    assert.ok(fs.statSync(socket).isSocket());
    assert.equal(await PredecessorLink.connect(socket, identity, log), undefined);
    const server = HandoverServer.listen(
      socket,
      roleOf(() => [], { frozen: 0, thawed: [], released: 0 }),
      log,
    );
    const link = await PredecessorLink.connect(socket, identity, log);
    assert.ok(link, 'the new socket answers');
    link.abandon();
    server.close();
    assert.equal(fs.existsSync(socket), false, 'an agent that never handed over removes its socket');
  });

  test('a live agent at the socket is never replaced by a second listener', async () => {
    const socket = socketPath();
    const server = HandoverServer.listen(
      socket,
      roleOf(() => [], { frozen: 0, thawed: [], released: 0 }),
      log,
    );
    assert.throws(
      () =>
        HandoverServer.listen(
          socket,
          roleOf(() => [], { frozen: 0, thawed: [], released: 0 }),
          log,
        ),
      (err: Error & { code?: string }) => err.code === 'FERRY_ERR_HANDOVER_SOCKET' && /listens there already/.test(err.message),
    );
    server.close();
  });

  test('a socket directory others can reach is refused', () => {
    const open = path.join(dir, 'open');
    fs.mkdirSync(open, { mode: 0o755 });
    fs.chmodSync(open, 0o755);
    assert.throws(
      () =>
        HandoverServer.listen(
          path.join(open, 'h.sock'),
          roleOf(() => [], { frozen: 0, thawed: [], released: 0 }),
          log,
        ),
      (err: Error & { code?: string }) => err.code === 'FERRY_ERR_HANDOVER_SOCKET' && /mode 0700/.test(err.message),
    );
  });

  test('hostile successors: garbage, an oversized frame, another node, a message out of order — each answered with an error naming it, nothing frozen', async () => {
    const record: RoleLog = { frozen: 0, thawed: [], released: 0 };
    const socket = socketPath();
    const server = HandoverServer.listen(
      socket,
      roleOf(() => [], record),
      log,
    );
    const cases: Array<[string, Buffer[], RegExp]> = [
      ['not JSON', [frame('{nope')], /not JSON/],
      ['oversized', [Buffer.from([0x7f, 0xff, 0xff, 0xff])], /frame of 2147483647 bytes/],
      ['another node', [frame(JSON.stringify({ type: 'hello', version: 1, pid: 5, ...identity, node: 'node-z' }))], /for node node-z/],
      ['go before hello', [frame('{"type":"go"}')], /has "go"; expected hello/],
      ['a field of the wrong type', [frame(JSON.stringify({ type: 'hello', version: 1, pid: 'x', ...identity }))], /pid/],
      ['an unknown field', [frame(JSON.stringify({ type: 'hello', version: 1, pid: 5, ...identity, extra: 1 }))], /extra|additional/],
    ];
    for (const [name, frames, expected] of cases) {
      const answers = await rawConversation(socket, frames);
      const last = JSON.parse(answers.at(-1) ?? '{}') as { type?: string; message?: string };
      assert.equal(last.type, 'error', `${name}: ${answers.join(' | ')}`);
      assert.match(last.message ?? '', expected, name);
    }
    assert.deepEqual(record, { frozen: 0, thawed: [], released: 0 });
    // The server still takes a proper successor.
    const link = await PredecessorLink.connect(socket, identity, log);
    assert.ok(link);
    link.abandon();
    server.close();
  });

  test('a second successor while one is in progress is refused; one that leaves after taking the listeners thaws the agent', async () => {
    const record: RoleLog = { frozen: 0, thawed: [], released: 0 };
    const listener = await answering('old');
    const socket = socketPath();
    const server = HandoverServer.listen(
      socket,
      roleOf(
        () => [{ message: { kind: 'metrics', family: 4, port: (listener.address() as net.AddressInfo).port }, fd: fdOf(listener) }],
        record,
      ),
      log,
    );
    const first = await PredecessorLink.connect(socket, identity, log);
    assert.ok(first);
    await assert.rejects(PredecessorLink.connect(socket, identity, log), /in progress/);
    const taken = await first.takeListeners();
    closeTaken(taken);
    first.abandon();
    for (let i = 0; i < 100 && record.thawed.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(record.thawed.length, 1, 'thawed once the successor left');
    assert.equal(record.released, 0);
    assert.equal(server.complete, false);
    // Its listener was never closed: it still answers.
    assert.equal(await ask((listener.address() as net.AddressInfo).port), 'old');
    server.close();
  });

  test('a successor that never asks for the listeners is dropped at the deadline', async () => {
    const record: RoleLog = { frozen: 0, thawed: [], released: 0 };
    const socket = socketPath();
    const server = HandoverServer.listen(
      socket,
      roleOf(() => [], record),
      log,
      { ...HANDOVER_TIMEOUTS, requestMs: 300 },
    );
    const answers = await rawConversation(socket, [frame(hello)]);
    assert.equal(JSON.parse(answers[0]).type, 'hello');
    assert.match(JSON.parse(answers.at(-1) ?? '{}').message, /no request from the successor within 300 ms/);
    assert.equal(record.frozen, 0);
    server.close();
  });
});
