// configurePodRouting in a real namespace, read back with `ip -j` and /proc/sys, and the
// transparent dial it exists for: a proxy socket in the pod bound to a client address that is not
// local (10.244.9.9, fd00:99::9) reaches the app, which sees that address as its peer. Root-only.
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';

import {
  POD_ROUTING_RULE_PRIORITY,
  configurePodRouting,
  connectSocketInNetns,
  fdOf,
  isNativeError,
  listenInNetns,
  socketMark,
} from '../../src/native';
import { assertRoot, createNetns, createVeth, ipIn, nsInode, run, type TestNetns } from './helpers';

async function waitFor(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const PREFIX = 'hn';
const MARK = 0xfe45;
const TABLE = 15006;
const APP_PORT = 8080;

const namespaces: TestNetns[] = [];
let app: TestNetns;
let hostInode = 0;

before(() => {
  assertRoot();
  hostInode = nsInode('/proc/self/ns/net');
  app = createNetns(PREFIX);
  namespaces.push(app);
  const peer = createNetns(PREFIX);
  namespaces.push(peer);
  // The app's addresses live on a veth, as a pod's do; the far end only gives the link a carrier.
  createVeth(app, 'hn-app', peer, 'hn-peer');
  ipIn(app, ['addr', 'add', '10.1.0.2/24', 'dev', 'hn-app']);
  ipIn(app, ['-6', 'addr', 'add', 'fd00::2/64', 'dev', 'hn-app', 'nodad']);
  ipIn(peer, ['addr', 'add', '10.1.0.1/24', 'dev', 'hn-peer']);
  ipIn(peer, ['-6', 'addr', 'add', 'fd00::1/64', 'dev', 'hn-peer', 'nodad']);
});

after(() => {
  for (const netns of namespaces) netns.remove();
  assert.equal(nsInode('/proc/self/ns/net'), hostInode);
});

interface IpRule {
  priority: number;
  fwmark?: string;
  fwmask?: string;
  table: string;
}

interface IpRoute {
  type?: string;
  dst: string;
  dev: string;
  scope?: string;
}

function rules(family: 4 | 6): IpRule[] {
  return JSON.parse(ipIn(app, [`-${family}`, '-j', 'rule', 'show'])) as IpRule[];
}

function tableRoutes(family: 4 | 6): IpRoute[] {
  return JSON.parse(ipIn(app, [`-${family}`, '-j', 'route', 'show', 'table', String(TABLE)])) as IpRoute[];
}

function ourRules(family: 4 | 6): IpRule[] {
  return rules(family).filter((rule) => rule.priority === POD_ROUTING_RULE_PRIORITY);
}

function fwmarkAccept(): string {
  return run('ip', ['netns', 'exec', app.name, 'cat', '/proc/sys/net/ipv4/tcp_fwmark_accept']).trim();
}

function fwmarkReflect(family: 4 | 6): string {
  return run('ip', ['netns', 'exec', app.name, 'cat', `/proc/sys/net/ipv${family}/fwmark_reflect`]).trim();
}

const enable = { mark: MARK, table: TABLE, families: [4, 6] as Array<4 | 6>, enable: true };
const disable = { ...enable, enable: false };

describe('configurePodRouting', () => {
  test('adds the fwmark rule and the local route per family, sets tcp_fwmark_accept, twice is once', async () => {
    const mainBefore = ipIn(app, ['route', 'show', 'table', 'main']);
    assert.equal(fwmarkAccept(), '0');
    await configurePodRouting(app.path, enable);
    await configurePodRouting(app.path, enable); // EEXIST is success: still exactly one of each
    for (const family of [4, 6] as const) {
      // ip prints no fwmask when it is the full 0xffffffff.
      assert.deepEqual(ourRules(family), [
        { priority: POD_ROUTING_RULE_PRIORITY, src: 'all', fwmark: `0x${MARK.toString(16)}`, table: String(TABLE) },
      ]);
      const routes = tableRoutes(family);
      assert.equal(routes.length, 1, JSON.stringify(routes));
      assert.equal(routes[0].type, 'local');
      assert.equal(routes[0].dst, 'default');
      assert.equal(routes[0].dev, 'lo');
      if (family === 4) assert.equal(routes[0].scope, 'host');
    }
    assert.equal(fwmarkAccept(), '1');
    assert.deepEqual([fwmarkReflect(4), fwmarkReflect(6)], ['1', '1']);
    assert.equal(ipIn(app, ['route', 'show', 'table', 'main']), mainBefore, 'the main table changed');
  });

  test('disable removes rule and route, leaves the sysctl, and twice is once', async () => {
    await configurePodRouting(app.path, enable);
    await configurePodRouting(app.path, disable);
    await configurePodRouting(app.path, disable); // ENOENT / ESRCH are success
    for (const family of [4, 6] as const) {
      assert.deepEqual(ourRules(family), []);
      assert.deepEqual(tableRoutes(family), []);
      assert.ok(
        rules(family).some((rule) => rule.table === 'main'),
        'the main rule went too',
      );
    }
    assert.equal(fwmarkAccept(), '1');
  });

  test('families: [4] leaves IPv6 alone', async (t) => {
    t.after(() => configurePodRouting(app.path, { ...disable, families: [4] }));
    await configurePodRouting(app.path, { ...enable, families: [4] });
    assert.equal(ourRules(4).length, 1);
    assert.deepEqual(ourRules(6), []);
    assert.deepEqual(tableRoutes(6), []);
  });

  test("a refused netlink message is a NativeError naming the message, the route, the namespace and the kernel's reason", async (t) => {
    // IPv6 switched off in a namespace: the kernel refuses a route through its lo.
    const off = createNetns(PREFIX);
    t.after(() => off.remove());
    run('ip', ['netns', 'exec', off.name, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    await assert.rejects(configurePodRouting(off.path, { ...enable, families: [6] }), (error: unknown) => {
      assert.ok(isNativeError(error));
      assert.equal(error.syscall, 'RTM_NEWROUTE');
      assert.equal(error.code, 'EACCES');
      assert.ok(
        error.message.startsWith(`RTM_NEWROUTE: Permission denied (IPv6 route local ::/0 dev lo table ${TABLE} in ${off.path}: `),
        error.message,
      );
      // The kernel's extended-ack text follows the colon.
      assert.match(error.message, /: [^:]*IPv6[^:]*disabled/);
      return true;
    });
  });

  test('a missing namespace is ENOENT from open, naming the path', async () => {
    await assert.rejects(configurePodRouting(`/run/netns/${PREFIX}-does-not-exist`, enable), (error: unknown) => {
      assert.ok(isNativeError(error));
      assert.equal(error.code, 'ENOENT');
      assert.equal(error.syscall, 'open');
      assert.ok(error.message.includes(`/run/netns/${PREFIX}-does-not-exist`), error.message);
      return true;
    });
  });
});

describe('transparent dials into the pod', () => {
  interface Accepted {
    remoteAddress: string | undefined;
    mark: number;
    socket: net.Socket;
  }

  async function appServer(host: string, accepted: Accepted[]): Promise<net.Server> {
    const listener = await listenInNetns(app.path, { host, port: APP_PORT, v6Only: true });
    const server = net.createServer((socket) => {
      accepted.push({ remoteAddress: socket.remoteAddress, mark: socketMark(fdOf(socket)), socket });
      socket.on('data', (chunk: Buffer) => socket.write(`app heard ${chunk.toString()}`));
    });
    server.listen({ fd: listener.fd });
    await once(server, 'listening');
    return server;
  }

  for (const { family, appHost, client } of [
    { family: 4, appHost: '10.1.0.2', client: '10.244.9.9' },
    { family: 6, appHost: 'fd00::2', client: 'fd00:99::9' },
  ] as const) {
    test(`IPv${family}: the app sees ${client} as its peer once the reply route is in place`, async (t) => {
      const accepted: Accepted[] = [];
      const server = await appServer(appHost, accepted);
      t.after(() => {
        for (const { socket } of accepted) socket.destroy();
        server.close();
      });
      const dial = { host: appHost, port: APP_PORT, mark: MARK, transparent: true, sourceHost: client, timeoutMs: 500 };
      const timesOut = (error: unknown): boolean => isNativeError(error) && error.code === 'ETIMEDOUT';

      // Without the rule the app's SYN-ACK to a non-local address has no route: no connection.
      await assert.rejects(connectSocketInNetns(app.path, dial), timesOut);
      assert.equal(accepted.length, 0);

      await configurePodRouting(app.path, { ...enable, families: [family] });
      t.after(() => configurePodRouting(app.path, { ...disable, families: [family] }));
      const socket = await connectSocketInNetns(app.path, { ...dial, timeoutMs: 5000 });
      t.after(() => socket.destroy());
      assert.equal(socket.localAddress, client);
      socket.write('hello');
      const [reply] = (await once(socket, 'data')) as [Buffer];
      assert.equal(reply.toString(), 'app heard hello');
      assert.equal(accepted.length, 1);
      assert.equal(accepted[0].remoteAddress, client);
      // tcp_fwmark_accept: the accepted socket took the SYN's mark, which is what routes its
      // replies into the table.
      assert.equal(accepted[0].mark, MARK);

      // An explicit source port is the one the app sees (the proxy picks it to keep 4-tuples apart).
      const pinned = await connectSocketInNetns(app.path, { ...dial, sourcePort: 40123, timeoutMs: 5000 });
      t.after(() => pinned.destroy());
      await waitFor(() => accepted.length === 2, 'the second accepted connection');
      assert.equal(pinned.localPort, 40123);
      assert.equal(accepted[1].socket.remotePort, 40123);

      // A port the app does not listen on: the kernel's RST carries the mark (fwmark_reflect) and
      // reaches the dial, which fails at once with ECONNREFUSED instead of waiting for its timeout.
      await assert.rejects(
        connectSocketInNetns(app.path, { ...dial, port: APP_PORT + 1, timeoutMs: 5000 }),
        (error: unknown) => isNativeError(error) && error.code === 'ECONNREFUSED',
      );

      // And disabling takes the reply path away again.
      await configurePodRouting(app.path, { ...disable, families: [family] });
      await assert.rejects(connectSocketInNetns(app.path, dial), timesOut);
      assert.equal(accepted.length, 2);
    });
  }
});
