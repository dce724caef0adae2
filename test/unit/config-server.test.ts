// Tests for src/controller's config stream: ResourceStore (versions, no-op upserts, validation, the change log)
// and ConfigServer over real TLS on 127.0.0.1 against agents the test scripts (RawAgent), including hostile
// ones. Authentication uses StaticTokenAuthenticator, a real AgentAuthenticator that maps fixed tokens to nodes
// in place of the Kubernetes TokenReview one, which needs an API server.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { ConfigServer, ConfigServerError, ResourceStore } from '../../src/controller';
import { configProtocol } from '../../src/proto';
import {
  RawAgent,
  SERVER_NAME,
  StaticTokenAuthenticator,
  TOKENS,
  pushed,
  quietLog,
  service,
  sleep,
  startConfigServer,
  waitFor,
  workload,
} from './config-harness';

function storeWith(count: number): ResourceStore {
  const store = new ResourceStore();
  for (let i = 0; i < count; i++) store.upsert('workload', `shop/w${i}`, workload(`w${i}`, `10.244.0.${i + 1}`));
  return store;
}

describe('ResourceStore', () => {
  test('versions are content hashes: equal content, equal version, in any store and whatever the label order', () => {
    const a = new ResourceStore();
    const b = new ResourceStore();
    a.upsert('workload', 'shop/w', workload('w', '10.244.0.1', { labels: { app: 'w', version: 'v1' } }));
    b.upsert('workload', 'shop/w', workload('w', '10.244.0.1', { labels: { version: 'v1', app: 'w' } }));
    assert.equal(a.version('workload', 'shop/w'), b.version('workload', 'shop/w'));
    b.upsert('workload', 'shop/w', workload('w', '10.244.0.2'));
    assert.notEqual(a.version('workload', 'shop/w'), b.version('workload', 'shop/w'));
  });

  test('an unchanged upsert changes nothing and notifies no one', () => {
    const store = storeWith(1);
    let notified = 0;
    store.onChange(() => notified++);
    const seq = store.seq;
    assert.equal(store.upsert('workload', 'shop/w0', workload('w0', '10.244.0.1')), false);
    assert.equal(store.seq, seq);
    assert.equal(notified, 0);
    assert.equal(store.remove('workload', 'shop/nope'), false);
    assert.equal(notified, 0);
  });

  test('an invalid resource, or one named differently from its fields, is refused naming the field; the store is unchanged', () => {
    const store = storeWith(1);
    const seq = store.seq;
    assert.throws(
      () => store.upsert('workload', 'shop/bad', workload('bad', '10.244.0.300')),
      (err: unknown) =>
        err instanceof ConfigServerError && err.code === 'FERRY_ERR_CONTROLLER_RESOURCE_INVALID' && /ips\[0\]/.test(err.message),
    );
    assert.throws(() => store.upsert('workload', 'shop/other', workload('w9', '10.244.0.9')), /uid: names "shop\/w9"/);
    assert.throws(
      () => store.upsert('service', 'shop/s', { ...service('s', '10.96.0.1', []), ports: [{ port: 0, endpoints: [] }] }),
      /SERVICE shop\/s: ports\[0\]\.port: 0 is out of range/,
    );
    assert.equal(store.seq, seq);
    assert.equal(store.size(), 1);
  });

  test('a resource larger than maxResourceBytes is refused', () => {
    const store = new ResourceStore({ maxResourceBytes: 512 });
    const big = service(
      'big',
      '10.96.0.1',
      Array.from({ length: 100 }, (_, i) => ({ ip: `10.244.1.${i + 1}` })),
    );
    assert.throws(() => store.upsert('service', 'shop/big', big), { code: 'FERRY_ERR_CONTROLLER_RESOURCE_TOO_LARGE' });
  });

  test('replaceAll upserts the given, removes the rest of the kind only, and notifies once', () => {
    const store = storeWith(3);
    store.upsert('service', 'shop/s', service('s', '10.96.0.1', []));
    let notified = 0;
    store.onChange(() => notified++);
    const changed = store.replaceAll('workload', [workload('w0', '10.244.0.1'), workload('w7', '10.244.0.7')]);
    assert.equal(changed, 3, 'w7 added, w1 and w2 removed; w0 unchanged');
    assert.equal(notified, 1);
    assert.equal(store.size('workload'), 2);
    assert.equal(store.size('service'), 1);
    assert.equal(store.replaceAll('workload', [workload('w0', '10.244.0.1'), workload('w7', '10.244.0.7')]), 0);
    assert.equal(notified, 1);
  });

  test('changesSince lists each resource once, at its latest change, with removals, in change order', () => {
    const store = storeWith(3);
    const mark = store.seq;
    store.upsert('workload', 'shop/w1', workload('w1', '10.244.0.21'));
    store.remove('workload', 'shop/w0');
    store.upsert('workload', 'shop/w1', workload('w1', '10.244.0.22'));
    const seen: string[] = [];
    store.changesSince(mark, (e) => {
      seen.push(`${e.version === '' ? '-' : ''}${e.name}`);
      return true;
    });
    assert.deepEqual(seen, ['-shop/w0', 'shop/w1']);
    const all: string[] = [];
    store.changesSince(0, (e) => {
      all.push(e.name);
      return true;
    });
    assert.deepEqual(all, ['shop/w2', 'shop/w0', 'shop/w1']);
  });

  test('compact forgets tombstones every stream has passed and keeps the log proportional to the resources', () => {
    const store = new ResourceStore();
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 1000; i++) store.upsert('workload', `shop/w${i}`, workload(`w${i}`, `10.244.${round}.${(i % 250) + 1}`));
    }
    for (let i = 500; i < 1000; i++) store.remove('workload', `shop/w${i}`);
    const count = (): number => {
      let n = 0;
      store.changesSince(0, () => {
        n++;
        return true;
      });
      return n;
    };
    assert.equal(count(), 1000, '500 live + 500 tombstones');
    store.compact(store.seq);
    assert.equal(count(), 500);
    assert.equal(store.size(), 500);
  });
});

describe('ConfigServer', () => {
  test('the first push names the node of the token, carries everything, and is synced', async (t) => {
    const { address, pki } = await startConfigServer(t, { store: storeWith(3) });
    const agent = new RawAgent(address, pki.caPem, 'token-b').hello();
    t.after(() => agent.close());
    const [first] = await agent.nextMessages(1);
    assert.equal(first.node, 'node-b');
    assert.equal(first.synced, true);
    assert.deepEqual(pushed(first).sort(), ['WORKLOAD shop/w0', 'WORKLOAD shop/w1', 'WORKLOAD shop/w2']);
  });

  test('a resync sends only what differs: changed versions and removals of what the store no longer has', async (t) => {
    const store = storeWith(3);
    const { address, pki } = await startConfigServer(t, { store });
    const held = [
      { kind: 'WORKLOAD', name: 'shop/w0', version: store.version('workload', 'shop/w0') as string },
      { kind: 'WORKLOAD', name: 'shop/w1', version: 'an-old-version' },
      { kind: 'SERVICE', name: 'shop/gone', version: 'x' },
    ];
    const agent = new RawAgent(address, pki.caPem, 'token-a').hello(held);
    t.after(() => agent.close());
    const [first] = await agent.nextMessages(1);
    assert.deepEqual(pushed(first), ['-SERVICE shop/gone', 'WORKLOAD shop/w1', 'WORKLOAD shop/w2']);
    assert.equal(first.synced, true);
  });

  test('a resync where nothing changed is one empty, synced push', async (t) => {
    const store = storeWith(2);
    const { address, pki } = await startConfigServer(t, { store });
    const held = ['shop/w0', 'shop/w1'].map((name) => ({ kind: 'WORKLOAD', name, version: store.version('workload', name) as string }));
    const agent = new RawAgent(address, pki.caPem, 'token-a').hello(held);
    t.after(() => agent.close());
    const [first] = await agent.nextMessages(1);
    assert.deepEqual(pushed(first), []);
    assert.equal(first.synced, true);
    agent.ackLast();
    await sleep(100);
    assert.equal(agent.messages.length, 1);
  });

  test('a burst of changes is one push', async (t) => {
    const store = storeWith(1);
    const { address, pki, server } = await startConfigServer(t, { store });
    const agent = new RawAgent(address, pki.caPem, 'token-a').hello();
    t.after(() => agent.close());
    await agent.nextMessages(1);
    agent.ackLast();
    for (let i = 0; i < 100; i++) store.upsert('workload', `shop/b${i}`, workload(`b${i}`, `10.244.2.${i + 1}`));
    const messages = await agent.nextMessages(2);
    assert.equal(pushed(messages[1]).length, 100);
    await sleep(100);
    assert.equal(agent.messages.length, 2);
    assert.equal(server.stats().pushes, 2);
  });

  test('one push outstanding per stream: changes meanwhile are coalesced into the next, latest version once', async (t) => {
    const store = storeWith(1);
    const { address, pki, server } = await startConfigServer(t, { store });
    const agent = new RawAgent(address, pki.caPem, 'token-a').hello();
    t.after(() => agent.close());
    await agent.nextMessages(1);
    for (let i = 0; i < 10; i++) {
      store.upsert('workload', 'shop/w0', workload('w0', `10.244.3.${i + 1}`));
      store.upsert('workload', `shop/n${i}`, workload(`n${i}`, `10.244.4.${i + 1}`));
      await sleep(15); // separate bursts
    }
    assert.equal(agent.messages.length, 1, 'nothing more until the first push is acknowledged');
    assert.equal(server.stats().inflightPushes, 1);
    agent.ackLast();
    const messages = await agent.nextMessages(2);
    const second = messages[1];
    assert.equal(pushed(second).filter((n) => n === 'WORKLOAD shop/w0').length, 1);
    assert.equal(second.resources.find((r) => r.name === 'shop/w0')?.workload?.ips[0], '10.244.3.10');
    assert.equal(second.resources.length, 11);
  });

  test('an initial sync larger than maxPushBytes comes in several pushes; only the last is synced', async (t) => {
    const { address, pki } = await startConfigServer(t, { store: storeWith(200), limits: { maxPushBytes: 4096 } });
    const agent = new RawAgent(address, pki.caPem, 'token-a').hello();
    t.after(() => agent.close());
    const names = new Set<string>();
    for (let i = 1; ; i++) {
      const messages = await agent.nextMessages(i);
      const m = messages[i - 1];
      for (const n of pushed(m)) names.add(n);
      assert.ok(configProtocol().encodeControllerMessage(m).length <= 4096 + 200, `push ${i} is within the limit`);
      if (m.synced) break;
      assert.equal(m.node === 'node-a', i === 1, 'only the first push names the node');
      agent.ackLast();
      assert.ok(i < 100, 'sync ends');
    }
    assert.ok(agent.messages.length > 3);
    assert.equal(names.size, 200);
  });

  test('a NACK is counted, the stream goes on, and the agent gets later changes', async (t) => {
    const registry = new Registry();
    const store = storeWith(1);
    const keys = await import('./config-harness').then((h) => h.controllerPki());
    const server = new ConfigServer({
      store,
      authenticator: new StaticTokenAuthenticator(TOKENS),
      log: quietLog,
      registry,
      limits: { batchDelayMs: 5 },
    });
    const { port } = await server.listen({ address: '127.0.0.1:0', keyPem: keys.keyPem, certPem: keys.certPem });
    t.after(() => server.close());
    const agent = new RawAgent(`127.0.0.1:${port}`, keys.caPem, 'token-a').hello();
    t.after(() => agent.close());
    const [first] = await agent.nextMessages(1);
    agent.ack(first.nonce, [{ kind: 'WORKLOAD', name: 'shop/w0', version: first.resources[0].version, field: 'ips[0]', message: 'nope' }]);
    store.upsert('workload', 'shop/w1', workload('w1', '10.244.0.2'));
    await agent.nextMessages(2);
    agent.ackLast();
    await waitFor(() => server.stats().acks === 1, 'the ACK');
    const stats = server.stats();
    assert.equal(stats.nacks, 1);
    assert.equal(stats.rejectedResources, 1);
    const text = await registry.metrics();
    assert.match(text, /ferry_controller_config_nacks_total 1\n/);
    assert.match(text, /ferry_controller_config_acks_total 1\n/);
    assert.match(text, /ferry_controller_config_pushes_total 2\n/);
    assert.match(text, /ferry_controller_config_streams 1\n/);
    assert.match(text, new RegExp(`ferry_controller_config_push_bytes_total ${stats.bytesSent}\\n`));
  });

  test('an agent without a token, or with one nobody knows, is refused with UNAUTHENTICATED', async (t) => {
    const { address, pki, server } = await startConfigServer(t, { store: storeWith(1) });
    for (const token of [undefined, 'token-nobody']) {
      const agent = new RawAgent(address, pki.caPem, token).hello();
      t.after(() => agent.close());
      const status = await agent.ended();
      assert.equal(status.code, grpc.status.UNAUTHENTICATED);
      assert.equal(agent.messages.length, 0);
    }
    assert.equal(server.stats().closed.unauthenticated, 2);
    assert.equal(server.stats().streams, 0);
  });

  test('the first message must be a Hello', async (t) => {
    const { address, pki } = await startConfigServer(t, { store: storeWith(1) });
    const agent = new RawAgent(address, pki.caPem, 'token-a');
    t.after(() => agent.close());
    agent.ack('1');
    assert.equal((await agent.ended()).code, grpc.status.INVALID_ARGUMENT);
  });
});

describe('ConfigServer against hostile agents', () => {
  /** A well-behaved agent of node-b that must keep getting its updates while the others misbehave. */
  async function bystander(t: { after: (fn: () => unknown) => void }, address: string, caPem: string): Promise<RawAgent> {
    const agent = new RawAgent(address, caPem, 'token-b').hello();
    t.after(() => agent.close());
    await agent.nextMessages(1);
    agent.ackLast();
    return agent;
  }

  async function stillServed(agent: RawAgent, store: ResourceStore, name: string): Promise<void> {
    const before = agent.messages.length;
    store.upsert('workload', `shop/${name}`, workload(name, '10.244.9.9'));
    await agent.nextMessages(before + 1, `the bystander's push of ${name}`);
    assert.ok(pushed(agent.messages[before]).includes(`WORKLOAD shop/${name}`));
    agent.ackLast();
  }

  /** A raw HTTP/2 request to the Stream method over TLS, for bytes no gRPC client would send. */
  function rawRequest(port: number, caPem: string, token: string): { session: http2.ClientHttp2Session; stream: http2.ClientHttp2Stream } {
    const session = http2.connect(`https://127.0.0.1:${port}`, { ca: caPem, servername: SERVER_NAME });
    session.on('error', () => {});
    const stream = session.request({
      ':method': 'POST',
      ':path': configProtocol().streamPath,
      'content-type': 'application/grpc',
      te: 'trailers',
      authorization: `Bearer ${token}`,
    });
    stream.on('error', () => {});
    return { session, stream };
  }

  /** The grpc-status the server ends the request with (trailers, or a trailers-only response). */
  function grpcStatusOf(stream: http2.ClientHttp2Stream): Promise<number | undefined> {
    return new Promise((resolve) => {
      const take = (headers: http2.IncomingHttpHeaders): void => {
        if (headers['grpc-status'] !== undefined) resolve(Number(headers['grpc-status']));
      };
      stream.on('response', take);
      stream.on('trailers', take);
      stream.on('data', () => {});
      stream.on('close', () => resolve(undefined));
    });
  }

  test('garbage instead of a message ends that stream with an error status; other agents are unaffected', async (t) => {
    const { port, address, pki, store, server } = await startConfigServer(t, { store: storeWith(1) });
    const good = await bystander(t, address, pki.caPem);
    const { session, stream } = rawRequest(port, pki.caPem, 'token-evil');
    t.after(() => session.destroy());
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34, 0x56, 0x78, 0x9a]);
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, garbage.length]), garbage]);
    stream.write(frame);
    const code = await grpcStatusOf(stream);
    assert.ok(code !== undefined && code !== grpc.status.OK, `status ${code}`);
    await stillServed(good, store, 'after-garbage');
    assert.equal(server.stats().streams, 1);
  });

  test('bytes that are not TLS close the connection and change nothing', async (t) => {
    const { port, address, pki, store } = await startConfigServer(t, { store: storeWith(1) });
    const good = await bystander(t, address, pki.caPem);
    const socket = net.connect(port, '127.0.0.1');
    t.after(() => socket.destroy());
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.on('connect', resolve));
    socket.write(Buffer.alloc(64 * 1024, 0x41));
    await new Promise<void>((resolve) => socket.on('close', () => resolve()));
    await stillServed(good, store, 'after-plaintext');
  });

  test('a first message announced larger than the limit is refused from its length prefix, RESOURCE_EXHAUSTED', async (t) => {
    const { port, address, pki, store, server } = await startConfigServer(t, {
      store: storeWith(1),
      limits: { maxReceiveMessageBytes: 64 * 1024 },
    });
    const good = await bystander(t, address, pki.caPem);
    const { session, stream } = rawRequest(port, pki.caPem, 'token-evil');
    t.after(() => session.destroy());
    // 1 GiB announced, 16 KiB sent: the server must answer without waiting for (or buffering) the rest.
    const prefix = Buffer.from([0, 0x40, 0, 0, 0]);
    stream.write(Buffer.concat([prefix, Buffer.alloc(16 * 1024, 1)]));
    assert.equal(await grpcStatusOf(stream), grpc.status.RESOURCE_EXHAUSTED);
    await stillServed(good, store, 'after-huge');
    assert.equal(server.stats().streams, 1);
  });

  test('a Hello over the message limit from a gRPC client is refused too', async (t) => {
    const { address, pki } = await startConfigServer(t, { store: storeWith(1), limits: { maxReceiveMessageBytes: 64 * 1024 } });
    const agent = new RawAgent(address, pki.caPem, 'token-evil');
    t.after(() => agent.close());
    agent.hello(Array.from({ length: 5000 }, (_, i) => ({ kind: 'WORKLOAD', name: `shop/fake-${i}`, version: 'v' })));
    assert.equal((await agent.ended()).code, grpc.status.RESOURCE_EXHAUSTED);
  });

  test('an ACK flood for unknown nonces ends the stream after maxUnexpectedMessages', async (t) => {
    const { address, pki, store, server } = await startConfigServer(t, { store: storeWith(1), limits: { maxUnexpectedMessages: 16 } });
    const good = await bystander(t, address, pki.caPem);
    const evil = new RawAgent(address, pki.caPem, 'token-evil').hello();
    t.after(() => evil.close());
    await evil.nextMessages(1);
    for (let i = 0; i < 1000 && evil.status === undefined; i++) evil.ack(`forged-${i}`);
    const status = await evil.ended();
    assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
    assert.match(status.details, /unexpected messages/);
    assert.equal(server.stats().closed.unexpected_messages, 1);
    await stillServed(good, store, 'after-flood');
  });

  test('an agent that never ACKs gets no second push and is ended at the ACK deadline; others are unaffected', async (t) => {
    const { address, pki, store, server } = await startConfigServer(t, { store: storeWith(1), limits: { ackTimeoutMs: 700 } });
    const evil = new RawAgent(address, pki.caPem, 'token-evil').hello();
    t.after(() => evil.close());
    await evil.nextMessages(1);
    const good = await bystander(t, address, pki.caPem);
    for (let i = 0; i < 3; i++) await stillServed(good, store, `while-silent-${i}`);
    assert.equal(evil.messages.length, 1, 'coalesced behind the unacknowledged push');
    const status = await evil.ended(5000);
    assert.equal(status.code, grpc.status.DEADLINE_EXCEEDED);
    assert.equal(server.stats().closed.ack_timeout, 1);
    assert.equal(server.stats().streams, 1);
    // The good agent acknowledged each push, so its streams are never in the way of the deadline.
    await stillServed(good, store, 'after-deadline');
  });

  test('an agent that stops reading holds one push at most, and is reset after the ACK deadline', async (t) => {
    // Many resources, so the first push cannot fit the HTTP/2 windows of an agent that does not read.
    const store = new ResourceStore();
    const big = Array.from({ length: 40 }, (_, i) =>
      service(
        `s${i}`,
        `10.96.1.${i + 1}`,
        Array.from({ length: 400 }, (_, j) => ({ ip: `10.${100 + i}.${Math.floor(j / 250)}.${(j % 250) + 1}` })),
      ),
    );
    for (const s of big) store.upsert('service', `shop/${s.name}`, s);
    const { port, pki, server } = await startConfigServer(t, { store, limits: { ackTimeoutMs: 500, maxPushBytes: 1024 * 1024 } });
    // A raw HTTP/2 client that sends its Hello and never reads: its 64 KiB stream window fills and stays full.
    const { session, stream } = rawRequest(port, pki.caPem, 'token-evil');
    t.after(() => session.destroy());
    stream.pause();
    const hello = configProtocol().encodeAgentMessage({ hello: { initialResourceVersions: [] } });
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(hello.length, 1);
    stream.write(Buffer.concat([prefix, hello]));
    const closed = new Promise<number>((resolve) => stream.on('close', () => resolve(stream.rstCode ?? -1)));
    await waitFor(() => server.stats().inflightPushes === 1, 'the first push written');
    const pushedBytes = server.stats().bytesSent;
    assert.ok(pushedBytes <= 1024 * 1024 + 64 * 1024, `one push of at most maxPushBytes (+ one resource): ${pushedBytes}`);
    await waitFor(() => server.stats().streams === 0, 'the silent stream ended', 5000);
    assert.equal(server.stats().closed.ack_timeout, 1);
    assert.equal(server.stats().pushes, 1, 'nothing more was written to it');
    // Its status waits behind the unread push, so the server resets the HTTP/2 stream, freeing what it queued.
    await waitFor(() => server.stats().resets === 1, 'the HTTP/2 stream reset', 5000);
    assert.equal(await closed, http2.constants.NGHTTP2_CANCEL);
  });

  test('1000 streams of one node: at most maxStreamsPerNode are kept, the others end; other agents are served', async (t) => {
    const authenticator = new StaticTokenAuthenticator(TOKENS);
    const { address, pki, store, server } = await startConfigServer(t, { store: storeWith(5), authenticator });
    const good = await bystander(t, address, pki.caPem);
    const evil: RawAgent[] = [];
    t.after(() => {
      for (const a of evil) a.close();
    });
    // 50 connections × 20 streams (more than the 16 a connection may hold at once).
    for (let c = 0; c < 50; c++) {
      const first = new RawAgent(address, pki.caPem, 'token-evil', { channel: { 'grpc.primary_user_agent': `flood-${c}` } }).hello();
      evil.push(first);
      for (let s = 1; s < 20; s++) evil.push(new RawAgent(address, pki.caPem, 'token-evil', { client: first.client }).hello());
    }
    const kept = server.limits.maxStreamsPerNode;
    await waitFor(
      () => evil.filter((a) => a.status !== undefined).length >= evil.length - kept,
      'all but the newest streams to end',
      30_000,
    );
    assert.equal(authenticator.calls, 1000 + 1, 'every stream was authenticated (and the bystander)');
    assert.equal(server.stats().streams, 1 + kept);
    assert.equal(server.stats().closed.replaced, evil.length - kept);
    for (const a of evil.filter((a) => a.status !== undefined)) assert.equal(a.status?.code, grpc.status.ABORTED);
    await stillServed(good, store, 'after-1000');
  });
});
