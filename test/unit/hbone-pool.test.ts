// Fakes: FakeTlsProvider (test/unit/hbone-pki.ts) stands in for src/identity; every tunnel lands on one loopback HboneListener.
// HbonePool's pooling: reuse, the per-connection stream cap, shared dials, idle close, GOAWAY and
// certificate expiry, counted by the TLS sessions the real server accepted; fail-fast backoff for
// peers that failed, tunnels retired when a CONNECT gets no answer, and CONNECTs refused
// unprocessed sent again on another tunnel.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import {
  type HboneInboundStream,
  HboneDialError,
  HboneNoIdentityError,
  HboneStatusError,
  HboneStreamError,
  HboneTlsError,
  relay,
} from '../../src/proxy';
import { exchange, hboneServer, pool, poolWith, request, routedDialer, type Server, waitFor } from './hbone-harness';
import { sleep, within } from './helpers';

test('200 sequential short CONNECTs reuse one TLS connection', async (t) => {
  const s = await hboneServer(t);
  const p = pool(t, s);
  for (let i = 0; i < 200; i++) {
    const stream = await within(p.open(request(s)), 3000, `CONNECT #${i}`);
    assert.equal(await exchange(stream, `message ${i}`), `message ${i}`);
  }
  assert.equal(s.accepted(), 1, 'more than one TLS connection for sequential streams');
  assert.equal(s.lines.filter((l) => l.msg === 'hbone connection established').length, 1);
  const [stats] = p.stats();
  assert.equal(stats.connections.length, 1);
  assert.equal(stats.sourcePod, 'shop/frontend');
  assert.equal(stats.expectedPrincipal, 'cluster.local/ns/shop/sa/backend');
  await waitFor(() => p.stats()[0]?.connections[0]?.streams === 0, 'every stream to be released');
});

test('concurrent opens share one dial, and the stream cap opens a second connection', async (t) => {
  const s = await hboneServer(t);
  const p = pool(t, s, { maxStreamsPerConnection: 5 });
  // Five at once: one dial, all five on it.
  const first = await within(Promise.all(Array.from({ length: 5 }, () => p.open(request(s)))), 5000, 'five CONNECTs');
  assert.equal(s.accepted(), 1, 'concurrent opens dialled separately');
  assert.deepEqual(
    p.stats()[0].connections.map((c) => c.streams),
    [5],
  );
  // The sixth does not fit: a second connection.
  const sixth = await within(p.open(request(s)), 5000, 'the sixth CONNECT');
  assert.equal(s.accepted(), 2);
  assert.deepEqual(
    p.stats()[0].connections.map((c) => c.streams),
    [5, 1],
  );
  for (const [i, stream] of [...first, sixth].entries()) assert.equal(await exchange(stream, `s${i}`), `s${i}`);
  await waitFor(() => p.stats()[0].connections.every((c) => c.streams === 0), 'streams to be released');
  // Freed slots are reused before anything new is dialled.
  const again = await within(p.open(request(s)), 3000, 'a CONNECT after the others finished');
  assert.equal(await exchange(again, 'reuse'), 'reuse');
  assert.equal(s.accepted(), 2);
});

test('a connection without streams is closed after the idle timeout', async (t) => {
  const s = await hboneServer(t);
  const p = pool(t, s, { idleTimeoutMs: 200 });
  const stream = await within(p.open(request(s)), 3000, 'a CONNECT');
  assert.equal(await exchange(stream, 'x'), 'x');
  // Busy connections are not idle: hold one stream past the timeout.
  const held = await within(p.open(request(s)), 3000, 'a held CONNECT');
  await sleep(400);
  assert.equal(p.stats()[0]?.connections.length, 1, 'a connection with an open stream was closed as idle');
  assert.equal(await exchange(held, 'y'), 'y');
  await waitFor(() => p.stats().length === 0, 'the idle connection to be closed', 2000);
  await waitFor(() => s.listener.stats().sessions === 0, 'the server to see it closed', 2000);
  // The pool logs the close when the session's 'close' event fires, which can trail the stats.
  const closedLines = (): typeof s.lines => s.lines.filter((l) => l.msg === 'hbone connection closed' && l.client === true);
  await waitFor(() => closedLines().length > 0, 'the pool to log the close', 2000);
  const closed = closedLines();
  assert.equal(closed.length, 1);
  assert.equal(closed[0].reason, 'idle');
  // The next open dials afresh.
  const next = await within(p.open(request(s)), 3000, 'a CONNECT after the idle close');
  assert.equal(await exchange(next, 'z'), 'z');
  assert.equal(s.accepted(), 2);
});

test('a GOAWAY from the server drops the connection from the pool; open streams finish', async (t) => {
  const s = await hboneServer(t);
  const p = pool(t, s);
  const open = await within(p.open(request(s)), 3000, 'a CONNECT');
  s.listener.drain();
  await waitFor(() => p.stats().length === 0, 'the GOAWAY to retire the connection');
  assert.equal(await exchange(open, 'after goaway'), 'after goaway');
});

test("no new stream goes on a connection past our certificate's notAfter", async (t) => {
  const s = await hboneServer(t);
  // X.509 times have one-second resolution: expire in about two seconds.
  await s.provider.add('shop', 'frontend', { notAfter: new Date(Math.ceil(Date.now() / 1000) * 1000 + 2000) });
  const p = pool(t, s);
  const first = await within(p.open(request(s)), 3000, 'a CONNECT');
  assert.equal(await exchange(first, 'before'), 'before');
  await sleep(Math.max(0, p.stats()[0] ? Date.parse(p.stats()[0].connections[0].notAfter) - Date.now() + 50 : 0));
  // Rotated meanwhile: the next stream needs a new connection with the new certificate.
  await s.provider.add('shop', 'frontend');
  const second = await within(p.open(request(s)), 3000, 'a CONNECT after expiry');
  assert.equal(await exchange(second, 'after'), 'after');
  assert.equal(s.accepted(), 2);
});

test('no certificate for the source identity, or a server that is not HBONE, fails with a typed error', async (t) => {
  const s = await hboneServer(t);
  const p = pool(t, s);
  await assert.rejects(p.open(request(s, { sourcePrincipal: 'cluster.local/ns/shop/sa/nobody' })), HboneNoIdentityError);

  const plain = pool(t, s, { port: s.appPort, handshakeTimeoutMs: 500 });
  const err = await plain.open(request(s)).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(err instanceof HboneTlsError, `expected HboneTlsError, got ${String(err)}`);
  assert.equal(err.code, 'FERRY_ERR_HBONE_TLS');
});

/** A loopback port nothing listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test('a peer whose dial fails is failed fast for 1×, 2×, 4× the initial backoff up to the max; other peers are unaffected; a tunnel resets it', async (t) => {
  const s = await hboneServer(t);
  const dead = await deadPort();
  const dials: string[] = [];
  const routes: Record<string, number> = { '127.0.0.9': dead };
  const p = poolWith(t, s, routedDialer(routes, dials), { backoffInitialMs: 150, backoffMaxMs: 500 });
  const toDead = (): Promise<unknown> =>
    p.open(request(s, { target: { family: 4, ip: '127.0.0.9', port: s.appPort } })).then(
      () => undefined,
      (e: unknown) => e,
    );

  const first = await toDead();
  assert.ok(first instanceof HboneDialError, `expected HboneDialError, got ${String(first)}`);
  assert.match(first.message, /ECONNREFUSED/);
  assert.equal(first.peer, undefined, 'a real dial failure is not a fail-fast one');
  assert.equal(dials.length, 1);

  const fast = await toDead();
  assert.ok(fast instanceof HboneDialError, `expected HboneDialError, got ${String(fast)}`);
  assert.equal(fast.peer, `127.0.0.9:${s.port} (cluster.local/ns/shop/sa/backend)`);
  assert.match(String(fast.lastFailure), /connect 127\.0\.0\.9:\d+: .*ECONNREFUSED/);
  assert.ok(fast.retryAt instanceof Date && fast.retryAt.getTime() > Date.now() - 5);
  assert.equal(dials.length, 1, 'the fail-fast open dialled');

  // Another peer meanwhile: untouched.
  const ok = await within(p.open(request(s)), 3000, 'a CONNECT to a healthy peer');
  assert.equal(await exchange(ok, 'healthy'), 'healthy');

  const backoffs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const [entry] = p.peerStats().backoff;
    backoffs.push(entry.backoffMs);
    await sleep(Math.max(0, Date.parse(entry.retryAt) - Date.now() + 10));
    const again = await toDead();
    assert.ok(again instanceof HboneDialError && again.peer === undefined, `expected a real dial after the window, got ${String(again)}`);
  }
  const [entry] = p.peerStats().backoff;
  backoffs.push(entry.backoffMs);
  assert.deepEqual(backoffs, [150, 300, 500, 500]);
  assert.equal(entry.failures, 4);
  assert.equal(entry.targetIp, '127.0.0.9');
  assert.equal(entry.expectedPrincipal, 'cluster.local/ns/shop/sa/backend');
  assert.equal(dials.filter((ip) => ip === '127.0.0.9').length, 4);
  const { counters } = p.peerStats();
  assert.equal(counters.dialFailures, 4);
  assert.equal(counters.failedFast, 1);

  // The peer comes up: once the window ends the dial succeeds (the listener answers 400, 127.0.0.9
  // not being its pod's address, but the tunnel was made) and the backoff is forgotten.
  routes['127.0.0.9'] = s.port;
  await sleep(Math.max(0, Date.parse(entry.retryAt) - Date.now() + 10));
  const up = await toDead();
  assert.ok(up instanceof HboneStatusError && up.status === 400, `expected the peer's 400, got ${String(up)}`);
  assert.deepEqual(p.peerStats().backoff, []);
});

test('a TLS handshake that times out puts the peer in backoff: the next open fails at once naming the timeout', async (t) => {
  const s = await hboneServer(t);
  // Accepts and never speaks.
  const silent = net.createServer((socket) => {
    socket.on('error', () => undefined);
    t.after(() => {
      socket.destroy();
    });
  });
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.after(() => {
    silent.close();
  });
  const dials: string[] = [];
  const p = poolWith(t, s, routedDialer({ '127.0.0.1': (silent.address() as net.AddressInfo).port }, dials), { handshakeTimeoutMs: 200 });
  const first = await p.open(request(s)).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(first instanceof HboneTlsError && first.reason === 'TIMEOUT', `expected a TLS timeout, got ${String(first)}`);
  const started = Date.now();
  const fast = await p.open(request(s)).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(fast instanceof HboneDialError, `expected HboneDialError, got ${String(fast)}`);
  assert.match(fast.message, /backing off .*TLS handshake with 127\.0\.0\.1:\d+ timed out after 200 ms/);
  assert.equal(dials.length, 1, 'the second open dialled');
  assert.ok(Date.now() - started < 200, 'the second open waited for a handshake timeout');
  assert.equal(p.peerStats().backoff[0].backoffMs, 1000, 'the default initial backoff is 1 s');
});

test('a CONNECT without a response within responseTimeoutMs fails and retires its tunnel; the next open dials a new one', async (t) => {
  let calls = 0;
  const s = await hboneServer(
    t,
    {},
    {
      // The first CONNECT is never answered (a wedged peer); later ones are refused with 503.
      onStream: (r) => {
        calls += 1;
        if (calls > 1) r.reject(503);
      },
    },
  );
  const p = pool(t, s, { responseTimeoutMs: 200 });
  const err = await within(p.open(request(s)), 3000, 'the open to time out').then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(err instanceof HboneStreamError, `expected HboneStreamError, got ${String(err)}`);
  assert.match(err.message, /no response within 200 ms/);
  assert.equal(p.peerStats().counters.responseTimeouts, 1);
  assert.deepEqual(p.stats(), [], 'the tunnel still takes streams');
  await waitFor(() => s.listener.stats().sessions === 0, 'the retired tunnel to close');
  const next = await within(p.open(request(s)), 3000, 'a second CONNECT').then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(next instanceof HboneStatusError && next.status === 503, `expected 503 on a new tunnel, got ${String(next)}`);
  assert.equal(s.accepted(), 2);
  assert.deepEqual(p.peerStats().backoff, [], 'a slow answer is not a dead peer');
});

// ---- CONNECTs refused unprocessed (RFC 9113 §8.7) ----------------------------------------------

/** What the harness does by default: dial the echo app and relay. */
function echoTo(r: HboneInboundStream): void {
  const upstream = net.connect({ host: r.target.ip, port: r.target.port, allowHalfOpen: true });
  upstream.on('error', () => r.reject(503));
  upstream.on('connect', () => {
    r.accept();
    void relay(r.stream, upstream);
  });
}

/** The tunnel ids the server saw streams on, in order, one entry per stream. */
function tunnelsOf(s: Server): string[] {
  return s.requests.map((r) => r.tunnel);
}

test('a CONNECT refused with RST_STREAM(REFUSED_STREAM) retires its tunnel and succeeds on a new one', async (t) => {
  let refused = 0;
  const s = await hboneServer(
    t,
    {},
    {
      onStream: (r) => {
        // The first stream of the first session is refused unprocessed; everything else is relayed.
        if (s.requests.length === 1) {
          refused += 1;
          r.stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
          return;
        }
        echoTo(r);
      },
    },
  );
  const p = pool(t, s);
  const stream = await within(p.open(request(s)), 5000, 'the retried CONNECT');
  assert.equal(await exchange(stream, 'retried'), 'retried');
  assert.equal(refused, 1);
  assert.equal(s.accepted(), 2, 'the retry did not go on a new tunnel');
  const [first, second] = tunnelsOf(s);
  assert.notEqual(first, second);
  assert.equal(p.peerStats().counters.refusedStreamRetries, 1);
  assert.deepEqual(p.peerStats().backoff, [], 'a refused stream is not a failed peer');
  // The refusing tunnel took no new streams and was closed; one tunnel is left in the pool.
  await waitFor(() => s.listener.stats().sessions === 1, 'the refusing tunnel to close');
  assert.equal(p.stats()[0].connections.length, 1);
  const again = await within(p.open(request(s)), 3000, 'a later CONNECT');
  assert.equal(await exchange(again, 'again'), 'again');
  assert.equal(s.accepted(), 2);
});

test('a peer that always refuses fails the open after exactly 3 attempts, each on its own tunnel', async (t) => {
  const s = await hboneServer(t, {}, { onStream: (r) => r.stream.close(http2.constants.NGHTTP2_REFUSED_STREAM) });
  const p = pool(t, s);
  const err = await within(p.open(request(s)), 5000, 'the open to fail').then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(err instanceof HboneStreamError, `expected HboneStreamError, got ${String(err)}`);
  assert.match(err.message, /refused by the peer unprocessed \(REFUSED_STREAM\) on 3 tunnels/);
  assert.equal(s.requests.length, 3, 'CONNECTs the server saw');
  assert.equal(new Set(tunnelsOf(s)).size, 3, 'a retry reused a refusing tunnel');
  assert.equal(s.accepted(), 3);
  assert.equal(p.peerStats().counters.refusedStreamRetries, 2);
  await sleep(100);
  assert.equal(s.requests.length, 3, 'the pool went on sending CONNECTs');
});

test('a 403, or a reset with another code, is not retried', async (t) => {
  const s = await hboneServer(
    t,
    {},
    {
      onStream: (r) => {
        if (r.target.port === 1) r.reject(403);
        else r.stream.close(http2.constants.NGHTTP2_CANCEL);
      },
    },
  );
  const p = pool(t, s);
  const denied = await within(p.open(request(s, { target: { family: 4, ip: '127.0.0.1', port: 1 } })), 3000, 'the 403').then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(denied instanceof HboneStatusError && denied.status === 403, `expected 403, got ${String(denied)}`);
  const reset = await within(p.open(request(s)), 3000, 'the reset').then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(reset instanceof HboneStreamError, `expected HboneStreamError, got ${String(reset)}`);
  assert.match(reset.message, /stream closed before a response \(code 8\)/);
  await sleep(100);
  assert.equal(s.requests.length, 2, 'a failed CONNECT was sent again');
  assert.equal(s.accepted(), 1, 'a failed CONNECT retired its tunnel');
  assert.equal(p.peerStats().counters.refusedStreamRetries, 0);
});
