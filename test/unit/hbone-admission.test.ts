// Fakes: FakeTlsProvider (test/unit/hbone-pki.ts) stands in for src/identity; both "pods" are 127.0.0.1.
// The agent-wide caps: two pods' real HboneListeners share one HboneAdmission, as NodeProxy makes
// them. Sessions per peer identity and pending handshakes per source address are counted across
// both; a peer or address over its cap loses, everyone else is untouched.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { HboneAdmission, ProxyOptionsError } from '../../src/proxy';
import { BACKEND, clientSession, exchange, hboneServer, pool, request, waitFor, type Server } from './hbone-harness';
import { type After, sleep, within } from './helpers';

const BACKEND_2 = { ...BACKEND, uid: 'shop/backend-2', name: 'backend-2', netnsCookie: 3n };
const FRONTEND_PRINCIPAL = 'cluster.local/ns/shop/sa/frontend';

/** Two pods' listeners sharing one admission and one PKI. */
async function twoPods(t: After, admission: HboneAdmission): Promise<[Server, Server]> {
  const a = await hboneServer(t, {}, { admission });
  const b = await hboneServer(t, {}, { admission, provider: a.provider, pod: BACKEND_2 });
  return [a, b];
}

/** A CONNECT to the echo app on a raw session: its status, and the echo. */
async function connectOn(session: http2.ClientHttp2Session, s: Server, text: string): Promise<{ status: number; echo: string }> {
  const stream = session.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${s.appPort}` }, { endStream: false });
  stream.on('error', () => undefined);
  const [headers] = (await within(once(stream, 'response'), 3000, 'the CONNECT answer')) as [http2.IncomingHttpHeaders];
  const status = Number(headers[':status']);
  if (status !== 200) return { status, echo: '' };
  return { status, echo: await exchange(stream, text) };
}

test('sessions per peer identity are capped agent-wide: the one over it gets GOAWAY(ENHANCE_YOUR_CALM); other identities are unaffected', async (t) => {
  const admission = new HboneAdmission({ maxSessionsPerPeer: 3 });
  const [a, b] = await twoPods(t, admission);
  // Three sessions as frontend, over both pods.
  const held = [
    await clientSession(t, a.port, a.provider),
    await clientSession(t, a.port, a.provider),
    await clientSession(t, b.port, a.provider),
  ];
  assert.equal(admission.sessionsOf(FRONTEND_PRINCIPAL), 3);

  const over = await clientSession(t, b.port, a.provider);
  await within(over.closed, 1000, 'the session over the cap to be closed');
  assert.equal(over.goaway(), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  assert.equal(b.listener.stats().sessionsRefusedPerPeer, 1);
  assert.equal(a.listener.stats().sessionsRefusedPerPeer, 0);
  assert.equal(admission.stats().sessionsRefused, 1);
  assert.equal(admission.sessionsOf(FRONTEND_PRINCIPAL), 3, 'the refused session took a slot');
  assert.equal(b.accepted(), 1, 'the refused session was served');

  // Another identity on the same pod, and the frontend's own held sessions, carry on.
  const other = await clientSession(t, b.port, a.provider, 'other');
  assert.deepEqual(await connectOn(other.session, b, 'other identity'), { status: 200, echo: 'other identity' });
  assert.deepEqual(await connectOn(held[2].session, b, 'held'), { status: 200, echo: 'held' });
  assert.equal(admission.stats().peers, 2);

  // A closed session gives its slot back.
  held[0].session.close();
  await within(held[0].closed, 2000, 'a held session to close');
  await waitFor(() => admission.sessionsOf(FRONTEND_PRINCIPAL) === 2, 'the slot to be given back');
  const again = await clientSession(t, b.port, a.provider);
  assert.deepEqual(await connectOn(again.session, b, 'a slot again'), { status: 200, echo: 'a slot again' });
  assert.equal(again.goaway(), undefined);
});

/** A TCP connection from `localAddress` that never sends a ClientHello; resolves once the listener counts it as pending. */
async function stall(t: After, s: Server, admission: HboneAdmission, localAddress: string): Promise<{ closed: () => boolean }> {
  const before = admission.stats().pendingHandshakes + admission.stats().handshakesEvicted;
  const socket = net.connect({ host: '127.0.0.1', port: s.port, localAddress });
  let closed = false;
  socket.on('error', () => undefined);
  socket.on('close', () => {
    closed = true;
  });
  t.after(() => {
    socket.destroy();
  });
  // Wait for the listener to take it (pending, or already counted as evicted), so acceptance order is ours.
  await waitFor(
    () => admission.stats().pendingHandshakes + admission.stats().handshakesEvicted > before,
    `a stalled connection from ${localAddress}`,
  );
  return { closed: () => closed };
}

test('pending handshakes per source address are capped agent-wide: the oldest from that address is closed, other addresses keep theirs', async (t) => {
  const admission = new HboneAdmission({ maxPendingHandshakesPerSource: 4 });
  const [a, b] = await twoPods(t, admission);
  const bystanders: Array<{ closed: () => boolean }> = [];
  for (let i = 0; i < 4; i++) bystanders.push(await stall(t, a, admission, '127.0.0.3'));
  // Six from one address, three on each pod: the two oldest (on pod a) make room for the last two (on pod b).
  const flood: Array<{ closed: () => boolean }> = [];
  for (let i = 0; i < 6; i++) flood.push(await stall(t, i < 3 ? a : b, admission, '127.0.0.2'));
  await waitFor(() => flood[0].closed() && flood[1].closed(), 'the two oldest from 127.0.0.2 to be closed');
  await sleep(100);
  assert.deepEqual(
    flood.map((f) => f.closed()),
    [true, true, false, false, false, false],
  );
  assert.deepEqual(
    bystanders.map((f) => f.closed()),
    [false, false, false, false],
    'another address lost a handshake',
  );
  assert.equal(a.listener.stats().handshakesEvictedPerSource, 2);
  assert.equal(b.listener.stats().handshakesEvictedPerSource, 0);
  assert.deepEqual(
    { ...admission.stats(), peers: undefined, sessions: undefined },
    {
      peers: undefined,
      sessions: undefined,
      sources: 2,
      pendingHandshakes: 8,
      sessionsRefused: 0,
      handshakesEvicted: 2,
    },
  );
  assert.equal(a.listener.stats().pendingHandshakes, 5);
  assert.equal(b.listener.stats().pendingHandshakes, 3);

  // A real handshake from a third address is not held up.
  const p = pool(t, b);
  const ok = await within(p.open(request(b)), 3000, 'a real handshake among stalled ones');
  assert.equal(await exchange(ok, 'made it'), 'made it');
  assert.equal(admission.stats().sessions, 1);
});

test('HboneAdmission checks its limits', () => {
  assert.throws(
    () => new HboneAdmission({ maxSessionsPerPeer: 0 }),
    (err: unknown) =>
      err instanceof ProxyOptionsError &&
      /hbone\.admission\.maxSessionsPerPeer: expected an integer in \[1, 1000000\], got 0/.test(err.message),
  );
  assert.deepEqual(new HboneAdmission().limits, { maxSessionsPerPeer: 128, maxPendingHandshakesPerSource: 32 });
});
