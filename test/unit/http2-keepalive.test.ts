// Fakes: FakeTlsProvider (test/unit/hbone-pki.ts) stands in for src/identity; the "pod" is 127.0.0.1.
// Dead-peer detection: a loopback TCP relay between HbonePool and a real HboneListener stops
// forwarding (the peer's host hung), and the side whose keepalive PING goes unanswered destroys the
// tunnel within keepaliveIntervalMs + keepaliveTimeoutMs, resetting the relayed connection; the pool
// then fails fast for its backoff and dials afresh once the peer is back.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import { HboneDialError, relay } from '../../src/proxy';
import { appPair, closeOf, exchange, hboneServer, poolWith, request, routedDialer, tcpRelay, waitFor } from './hbone-harness';
import { sleep, within } from './helpers';

const INTERVAL_MS = 200;
const TIMEOUT_MS = 300;
/** The bound the task sets (interval + timeout), plus timer and scheduling slack on a busy 2-core machine. */
const DEAD_WITHIN_MS = INTERVAL_MS + TIMEOUT_MS + 250;

/** Echo through `app.far` → tunnel → echo server → back. */
async function echoThrough(far: net.Socket, text: string): Promise<string> {
  const chunks: Buffer[] = [];
  const onData = (c: Buffer): void => {
    chunks.push(c);
  };
  far.on('data', onData);
  far.write(text);
  await waitFor(() => Buffer.concat(chunks).length >= text.length, 'the echo', 3000);
  far.off('data', onData);
  return Buffer.concat(chunks).toString();
}

test('pool keepalive: a peer that stops answering is dropped within interval + timeout, the app gets a reset, opens fail fast, then dial afresh', async (t) => {
  const s = await hboneServer(t);
  const path = await tcpRelay(t, s.port);
  const dials: string[] = [];
  const p = poolWith(t, s, routedDialer({ '127.0.0.1': path.port }, dials), {
    keepaliveIntervalMs: INTERVAL_MS,
    keepaliveTimeoutMs: TIMEOUT_MS,
    backoffInitialMs: 400,
  });
  const app = await appPair(t);
  const stream = await within(p.open(request(s)), 3000, 'a CONNECT');
  void relay(app.near, stream);
  assert.equal(await echoThrough(app.far, 'alive'), 'alive');
  // Several keepalive rounds on a healthy path change nothing.
  await sleep(INTERVAL_MS * 3);
  assert.equal(p.peerStats().counters.keepaliveTimeouts, 0);
  assert.equal(await echoThrough(app.far, 'still alive'), 'still alive');

  path.pause();
  const paused = Date.now();
  await within(app.farClosed, 3000, 'the relayed connection to be closed');
  const tookMs = Date.now() - paused;
  assert.ok(tookMs <= DEAD_WITHIN_MS, `the dead tunnel was noticed after ${tookMs} ms`);
  assert.equal(app.farError(), 'ECONNRESET', 'the app saw a clean close instead of a reset');
  assert.equal(stream.rstCode, http2.constants.NGHTTP2_CANCEL);
  const { counters, backoff } = p.peerStats();
  assert.equal(counters.keepaliveTimeouts, 1);
  assert.deepEqual(p.stats(), [], 'the dead tunnel is still pooled');
  await waitFor(
    () => s.lines.some((l) => l.client === true && l.msg === 'hbone connection closed' && /keepalive-timeout/.test(String(l.reason))),
    'the pool to log why it closed the tunnel',
  );
  assert.equal(backoff.length, 1);
  assert.equal(backoff[0].backingOff, true);
  assert.equal(backoff[0].failures, 1);
  assert.equal(backoff[0].backoffMs, 400);

  // Within the backoff: at once, without a dial, naming the peer and what killed the last tunnel.
  const err = await p.open(request(s)).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(err instanceof HboneDialError, `expected HboneDialError, got ${String(err)}`);
  assert.equal(err.code, 'FERRY_ERR_HBONE_DIAL');
  assert.equal(err.peer, `127.0.0.1:${s.port} (cluster.local/ns/shop/sa/backend)`);
  assert.match(String(err.lastFailure), /no PING ACK within 300 ms/);
  assert.match(err.message, /127\.0\.0\.1:\d+ \(cluster\.local\/ns\/shop\/sa\/backend\) is backing off .* no PING ACK within 300 ms/);
  assert.equal(dials.length, 1, 'a fail-fast open dialled');
  assert.equal(p.peerStats().counters.failedFast, 1);

  // The peer is back and the backoff over: a fresh tunnel, and the backoff forgotten.
  path.resume();
  await sleep(Math.max(0, Date.parse(backoff[0].retryAt) - Date.now() + 20));
  const fresh = await within(p.open(request(s)), 3000, 'a CONNECT once the peer is back');
  assert.equal(await exchange(fresh, 'back'), 'back');
  assert.equal(dials.length, 2);
  assert.deepEqual(p.peerStats().backoff, []);
});

test('server keepalive: a client that stops answering is dropped within interval + timeout and its relayed stream reset; a new tunnel works after', async (t) => {
  const s = await hboneServer(t, { keepaliveIntervalMs: INTERVAL_MS, keepaliveTimeoutMs: TIMEOUT_MS });
  const path = await tcpRelay(t, s.port);
  // The pool's own keepalive is slow here, so only the server can notice.
  const p = poolWith(t, s, routedDialer({ '127.0.0.1': path.port }), { keepaliveIntervalMs: 60_000, keepaliveTimeoutMs: 60_000 });
  const stream = await within(p.open(request(s)), 3000, 'a CONNECT');
  stream.on('data', () => undefined);
  stream.write('x');
  await waitFor(() => s.requests.length === 1, 'the stream to reach the handler');
  const inbound = s.requests[0].stream;
  const inboundClosed = closeOf(inbound);

  path.pause();
  const paused = Date.now();
  await waitFor(() => s.listener.stats().sessions === 0, 'the server to drop the silent session', 3000);
  const tookMs = Date.now() - paused;
  assert.ok(tookMs <= DEAD_WITHIN_MS, `the silent client was noticed after ${tookMs} ms`);
  assert.equal(s.listener.stats().sessionsClosedKeepalive, 1);
  await within(inboundClosed, 1000, 'the relayed stream to close');
  assert.equal(inbound.rstCode, http2.constants.NGHTTP2_CANCEL, 'the relayed stream finished instead of being reset');
  assert.ok(s.lines.some((l) => l.msg === 'hbone session closed by the HTTP/2 guard' && l.violation === 'keepalive-timeout'));

  // Back: the pool sees its old tunnel closed and dials a new one.
  path.resume();
  await waitFor(() => p.stats().length === 0, 'the pool to see the old tunnel closed');
  const fresh = await within(p.open(request(s)), 3000, 'a CONNECT on a new tunnel');
  assert.equal(await exchange(fresh, 'new tunnel'), 'new tunnel');
  assert.equal(s.accepted(), 2);
});
