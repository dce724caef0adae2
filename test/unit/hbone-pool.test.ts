// Fakes: FakeTlsProvider (test/unit/hbone-pki.ts) stands in for src/identity; every tunnel lands on one loopback HboneListener.
// HbonePool's pooling: reuse, the per-connection stream cap, shared dials, idle close, GOAWAY and
// certificate expiry, counted by the TLS sessions the real server accepted.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { HboneNoIdentityError, HboneTlsError } from '../../src/proxy';
import { exchange, hboneServer, pool, request, waitFor } from './hbone-harness';
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
  assert.deepEqual(p.stats()[0].connections.map((c) => c.streams), [5]);
  // The sixth does not fit: a second connection.
  const sixth = await within(p.open(request(s)), 5000, 'the sixth CONNECT');
  assert.equal(s.accepted(), 2);
  assert.deepEqual(p.stats()[0].connections.map((c) => c.streams), [5, 1]);
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

test('no new stream goes on a connection past our certificate\'s notAfter', async (t) => {
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
  const err = await plain.open(request(s)).then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof HboneTlsError, `expected HboneTlsError, got ${String(err)}`);
  assert.equal(err.code, 'FERRY_ERR_HBONE_TLS');
});
