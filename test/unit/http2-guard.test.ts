// Fakes: FakeTlsProvider (test/unit/hbone-pki.ts) stands in for src/identity; the "pod" is 127.0.0.1.
// HTTP/2 floods and protocol violations from a workload with a valid mesh certificate, against a
// real HboneListener: test/fixtures/tools/h2-flood.js runs as its own process and writes raw frames.
// Each attack must end its session within a second while a well-behaved session keeps relaying.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import * as tls from 'node:tls';
import { RateWindow } from '../../src/proxy/http2-guard';
import { exchange, hboneServer, pemFiles, pool, request, runFlood, waitFor, type FloodResult, type Server } from './hbone-harness';
import { type After, within } from './helpers';

// The tool's frame builders, for the violations it has no attack for.
const frames = require('../../../test/fixtures/tools/h2-flood.js') as {
  PREFACE: Buffer;
  settingsFrame(entries?: Array<[number, number]>, ack?: boolean): Buffer;
  headersFrame(streamId: number, block: Buffer, flags?: { endHeaders?: boolean; endStream?: boolean }): Buffer;
  frame(type: number, flags: number, streamId: number, payload?: Buffer): Buffer;
  connectHeaderBlock(authority: string): Buffer;
  hpackLiteral(name: string, value: string): Buffer;
};

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_SETTINGS_TIMEOUT } = http2.constants;

interface Case {
  attack: string;
  /** Extra tool arguments; `--batch 5 --interval-ms 5` paces a flood to ~1000 frames/s, under nghttp2's own detection. */
  args: string[];
  what: string;
  /** The GOAWAY code the attacker must see (our guard's), when the guard is what acts. */
  goaway?: number;
  /** The listener counter that must have counted it. */
  counter: 'sessionsClosedSettingsFlood' | 'sessionsClosedPingFlood' | 'sessionsClosedProtocolError';
}

const CASES: Case[] = [
  {
    attack: 'continuation',
    args: [],
    what: 'HEADERS without END_HEADERS and up to 100000 CONTINUATION frames: nghttp2 1.61 allows 8',
    counter: 'sessionsClosedProtocolError',
  },
  // In a burst the guard trips at the 11th frame of the first read; nghttp2's own check (more than
  // 1000 ACKs queued within one read) would come later in that read.
  { attack: 'settings', args: [], what: 'a SETTINGS burst, never ACKing ours', counter: 'sessionsClosedSettingsFlood' },
  {
    attack: 'settings',
    args: ['--batch', '5', '--interval-ms', '5'],
    what: "a paced SETTINGS flood: the guard's maxSettingsPerWindow",
    goaway: NGHTTP2_ENHANCE_YOUR_CALM,
    counter: 'sessionsClosedSettingsFlood',
  },
  { attack: 'ping', args: [], what: 'a PING burst', counter: 'sessionsClosedPingFlood' },
  {
    attack: 'ping',
    args: ['--batch', '5', '--interval-ms', '5'],
    what: "a paced PING flood: the guard's maxPingsPerWindow",
    goaway: NGHTTP2_ENHANCE_YOUR_CALM,
    counter: 'sessionsClosedPingFlood',
  },
  {
    attack: 'window-update-zero-conn',
    args: [],
    what: 'WINDOW_UPDATE 0 on stream 0: a connection error (RFC 9113 §6.9)',
    counter: 'sessionsClosedProtocolError',
  },
  {
    attack: 'window-update-zero-stream',
    args: [],
    what: 'WINDOW_UPDATE 0 on an open stream: nghttp2 makes it a connection error too',
    counter: 'sessionsClosedProtocolError',
  },
];

/** A well-behaved tunnel (the pool's) relays before; the attacker runs; the same tunnel relays after, and the attacker's session is gone. */
async function underAttack(t: After, s: Server, args: string[]): Promise<FloodResult> {
  const p = pool(t, s);
  const before = await within(p.open(request(s)), 3000, 'a CONNECT before the attack');
  assert.equal(await exchange(before, 'before'), 'before');
  const held = await within(p.open(request(s)), 3000, 'a CONNECT held across the attack');
  const tunnel = p.stats()[0].connections[0].id;

  const { code, result } = await runFlood([
    ...args,
    ...(await pemFiles(t, s.ca)),
    '--authority',
    `127.0.0.1:${s.appPort}`,
    `127.0.0.1:${s.port}`,
  ]);
  assert.equal(code, 0, JSON.stringify(result));
  assert.equal(
    result.error === undefined || !/SETTINGS within|TLS/.test(result.error),
    true,
    `the attack never started: ${JSON.stringify(result)}`,
  );
  assert.ok(result.closedAfterMs !== null, `the attacker's connection stayed open: ${JSON.stringify(result)}`);
  assert.ok(result.closedAfterMs <= 1000, `closed after ${result.closedAfterMs} ms: ${JSON.stringify(result)}`);
  await waitFor(() => s.listener.stats().sessions === 1, "the attacker's session to be forgotten", 1000);

  assert.equal(await exchange(held, 'held across'), 'held across');
  const after = await within(p.open(request(s)), 3000, 'a CONNECT after the attack');
  assert.equal(await exchange(after, 'after'), 'after');
  assert.deepEqual(
    p.stats()[0].connections.map((c) => c.id),
    [tunnel],
    'the well-behaved tunnel was replaced',
  );
  assert.equal(s.accepted(), 2);
  return result;
}

for (const c of CASES) {
  test(`${c.attack}${c.args.length > 0 ? ' (paced)' : ''}: ${c.what}; the session closes within 1 s, another is unharmed`, async (t) => {
    const s = await hboneServer(t);
    const result = await underAttack(t, s, ['--attack', c.attack, ...c.args]);
    if (c.goaway !== undefined) assert.equal(result.goaway?.errorCode, c.goaway, JSON.stringify(result));
    else assert.ok(result.goaway !== null || result.reset, `neither GOAWAY nor reset: ${JSON.stringify(result)}`);
    assert.ok(result.framesSent >= 1);
    if (c.attack === 'continuation') assert.ok(result.framesSent < 100_000, 'the server read all 100000 CONTINUATION frames');
    assert.equal(s.listener.stats()[c.counter], 1, JSON.stringify(s.listener.stats()));
    assert.equal(s.requests.length, 3, 'an attack stream reached the handler');
  });
}

test('a peer that never ACKs our SETTINGS is closed with SETTINGS_TIMEOUT after keepaliveTimeoutMs', async (t) => {
  const s = await hboneServer(t, { keepaliveTimeoutMs: 300 });
  // One SETTINGS frame only: no flood, just silence about ours.
  const result = await underAttack(t, s, ['--attack', 'settings', '--count', '1', '--wait-ms', '3000']);
  assert.equal(result.goaway?.errorCode, NGHTTP2_SETTINGS_TIMEOUT, JSON.stringify(result));
  assert.equal(s.listener.stats().sessionsClosedSettingsTimeout, 1);
});

/** Authenticated TLS with the raw HTTP/2 preface done; `send` writes frames, `closed` says whether the server closed. */
async function rawFrames(t: After, s: Server): Promise<{ send(buffer: Buffer): void; closed(): boolean }> {
  const contexts = s.provider.contexts(s.provider.principalFor('shop', 'frontend'));
  assert.ok(contexts);
  const socket = tls.connect({
    host: '127.0.0.1',
    port: s.port,
    secureContext: contexts.client,
    ALPNProtocols: ['h2'],
    checkServerIdentity: () => undefined,
  });
  t.after(() => {
    socket.destroy();
  });
  let closed = false;
  socket.on('error', () => undefined);
  socket.on('close', () => {
    closed = true;
  });
  socket.on('data', () => undefined);
  await within(new Promise((resolve) => socket.once('secureConnect', resolve)), 3000, 'TLS');
  socket.write(Buffer.concat([frames.PREFACE, frames.settingsFrame(), frames.settingsFrame([], true)]));
  await waitFor(() => s.listener.stats().sessions >= 1, 'the session to start');
  return { send: (buffer) => socket.write(buffer), closed: () => closed };
}

test('malformed CONNECTs (RFC 9113 §8.5: no :path) end the session at the second, with maxSessionInvalidFrames 0', async (t) => {
  const s = await hboneServer(t);
  const raw = await rawFrames(t, s);
  const malformed = (id: number): Buffer =>
    frames.headersFrame(id, Buffer.concat([frames.connectHeaderBlock(`127.0.0.1:${s.appPort}`), frames.hpackLiteral(':path', '/')]));
  raw.send(Buffer.concat([malformed(1), malformed(3)]));
  await waitFor(() => raw.closed(), 'the session to be closed', 1000);
  assert.equal(s.listener.stats().sessionsClosedProtocolError, 1);
  assert.equal(s.requests.length, 0);
});

test('DATA after END_STREAM: nghttp2 sends GOAWAY without telling Node, and the keepalive closes the stuck session', async (t) => {
  // nghttp2 treats it as a connection error (STREAM_CLOSED) on its fail-fast path: it queues a
  // GOAWAY and stops reading, Node is never told and would keep the session, its socket and the
  // relayed app connection forever, even after the peer disconnects. Our PINGs go unanswered.
  const s = await hboneServer(t, { keepaliveIntervalMs: 200, keepaliveTimeoutMs: 300 });
  const raw = await rawFrames(t, s);
  raw.send(
    Buffer.concat([
      frames.headersFrame(1, frames.connectHeaderBlock(`127.0.0.1:${s.appPort}`), { endStream: true }),
      frames.frame(0, 0, 1, Buffer.from('x')),
    ]),
  );
  const started = Date.now();
  await waitFor(() => s.listener.stats().sessions === 0, 'the stuck session to be closed', 2000);
  // Bound: keepalive interval + timeout (500 ms), plus up to 250 ms of timer and scheduling slack.
  assert.ok(Date.now() - started <= 750, `took ${Date.now() - started} ms`);
  assert.equal(s.listener.stats().sessionsClosedKeepalive, 1);
  await waitFor(() => raw.closed(), 'the socket to be closed', 1000);
});

test('h2-flood.js: bad arguments print one JSON line with the error and exit 2', async () => {
  const bad = await runFlood(['--attack', 'nonsense', '127.0.0.1:1']).catch((err: Error) => err);
  assert.ok(!(bad instanceof Error), String(bad));
  assert.equal(bad.code, 2);
  assert.match(String(bad.result.error), /--attack must be one of continuation, settings, ping/);
  assert.equal(bad.result.closedAfterMs, null);
});

test('RateWindow: more than `limit` events within the window trip it; older ones slide out', () => {
  const w = new RateWindow(3, 1000);
  assert.equal(w.hit(0), false);
  assert.equal(w.hit(100), false);
  assert.equal(w.hit(200), false);
  assert.equal(w.hit(300), true);
  // 0 and 100 slid out at 1100 (window is (now - 1000, now]).
  assert.equal(w.hit(1100), false);
  assert.equal(w.count, 3);
  assert.equal(w.hit(1150), true);
});
