// Fakes: FakeTlsProvider (test/unit/hbone-pki.ts) stands in for src/identity; "pods" are loopback addresses.
// The same floods from the other side: a hostile peer agent (a TLS server with the destination's
// real mesh certificate, writing raw frames with h2-flood.js's builders) answers HbonePool's
// CONNECT and then attacks. The pool's session must end within a second, the relayed stream must
// reach the app as a TCP reset, and the pool's tunnel to a well-behaved peer must keep relaying.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { HboneStreamError, relay } from '../../src/proxy';
import { appPair, exchange, hboneServer, poolWith, request, routedDialer, type Server } from './hbone-harness';
import { type After, sleep, within } from './helpers';

interface Frame {
  type: number;
  flags: number;
  streamId: number;
  length: number;
  payload: Buffer;
}
const h2 = require('../../../test/fixtures/tools/h2-flood.js') as {
  TYPE: Record<string, number>;
  FLAG: Record<string, number>;
  frame(type: number, flags: number, streamId: number, payload?: Buffer): Buffer;
  settingsFrame(entries?: Array<[number, number]>, ack?: boolean): Buffer;
  pingFrame(data?: Buffer, ack?: boolean): Buffer;
  windowUpdateFrame(streamId: number, increment: number): Buffer;
  headersFrame(streamId: number, block: Buffer, flags?: { endHeaders?: boolean; endStream?: boolean }): Buffer;
  continuationFrame(streamId: number, block: Buffer, endHeaders?: boolean): Buffer;
  hpackLiteral(name: string, value: string): Buffer;
  FrameParser: new () => { push(chunk: Buffer): Frame[] };
};

const PREFACE_LENGTH = 24;
const HOSTILE_IP = '127.0.0.2';

interface Hostile {
  port: number;
  /** When the first attack frame went out, and when the pool's connection closed. */
  attackStartedAt?: number;
  closedAt?: number;
  /** The first GOAWAY code the pool sent. */
  goaway?: number;
  framesSent: number;
}

/**
 * A peer agent that behaves until the first CONNECT (it answers 200, or in the continuation attack
 * starts a response it never finishes), then attacks that session: floods paced at ~1000 frames/s
 * so the guard, not nghttp2's per-read ACK check, is what acts; bounded to 3000 frames and 3 s.
 */
async function hostilePeer(t: After, s: Server, attack: string): Promise<Hostile> {
  const contexts = s.provider.contexts(s.provider.principalFor('shop', 'backend'));
  assert.ok(contexts);
  const state: Hostile = { port: 0, framesSent: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.on('error', () => undefined);
    const socket = new tls.TLSSocket(raw, { isServer: true, secureContext: contexts.server, ALPNProtocols: ['h2'] });
    socket.on('error', () => undefined);
    socket.once('close', () => {
      state.closedAt ??= Date.now();
    });
    let preface = Buffer.alloc(0);
    const parser = new h2.FrameParser();
    let timer: NodeJS.Timeout | undefined;
    socket.once('close', () => clearInterval(timer));
    const write = (buffer: Buffer): void => {
      if (!socket.destroyed) socket.write(buffer);
    };
    const flood = (make: (i: number) => Buffer, perTick: number, tickMs: number, max: number): void => {
      const deadline = Date.now() + 3000;
      timer = setInterval(() => {
        if (socket.destroyed || state.framesSent >= max || Date.now() > deadline) {
          clearInterval(timer);
          return;
        }
        const batch: Buffer[] = [];
        for (let i = 0; i < perTick; i++) batch.push(make(state.framesSent + i));
        state.framesSent += perTick;
        write(Buffer.concat(batch));
      }, tickMs);
    };
    const startAttack = (streamId: number): void => {
      state.attackStartedAt = Date.now();
      const status = h2.hpackLiteral(':status', '200');
      switch (attack) {
        case 'continuation':
          write(h2.headersFrame(streamId, status, { endHeaders: false }));
          state.framesSent = 1;
          flood(() => h2.continuationFrame(streamId, h2.hpackLiteral('x-c', 'v')), 100, 1, 100_000);
          return;
        case 'settings':
          write(h2.headersFrame(streamId, status));
          flood(() => h2.settingsFrame([[2, 0]]), 5, 5, 3000);
          return;
        case 'ping':
          write(h2.headersFrame(streamId, status));
          flood(
            (i) => {
              const d = Buffer.alloc(8);
              d.writeUInt32BE(i, 4);
              return h2.pingFrame(d);
            },
            5,
            5,
            3000,
          );
          return;
        case 'window-update-zero-conn':
          write(Buffer.concat([h2.headersFrame(streamId, status), h2.windowUpdateFrame(0, 0)]));
          state.framesSent = 1;
          return;
        case 'window-update-zero-stream':
          write(Buffer.concat([h2.headersFrame(streamId, status), h2.windowUpdateFrame(streamId, 0)]));
          state.framesSent = 1;
          return;
        default:
          throw new Error(`unknown attack ${attack}`);
      }
    };
    socket.once('secure', () => write(h2.settingsFrame([[3, 100]])));
    socket.on('data', (chunk: Buffer) => {
      if (preface.length < PREFACE_LENGTH) {
        preface = Buffer.concat([preface, chunk]);
        if (preface.length < PREFACE_LENGTH) return;
        chunk = preface.subarray(PREFACE_LENGTH);
      }
      for (const f of parser.push(chunk)) {
        if (f.type === h2.TYPE.SETTINGS && !(f.flags & h2.FLAG.ACK)) {
          // The settings attack never acknowledges the pool's SETTINGS.
          if (attack !== 'settings') write(h2.settingsFrame([], true));
        } else if (f.type === h2.TYPE.PING && !(f.flags & h2.FLAG.ACK)) {
          write(h2.pingFrame(Buffer.from(f.payload), true));
        } else if (f.type === h2.TYPE.GOAWAY) {
          state.goaway ??= f.payload.readUInt32BE(4);
        } else if (f.type === h2.TYPE.HEADERS && state.attackStartedAt === undefined) {
          startAttack(f.streamId);
        }
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.close();
    for (const raw of sockets) raw.destroy();
  });
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}

const CASES: Array<{ attack: string; counter: 'settingsFloods' | 'pingFloods' | 'protocolErrors'; goaway?: number; answered: boolean }> = [
  { attack: 'continuation', counter: 'protocolErrors', answered: false },
  { attack: 'settings', counter: 'settingsFloods', goaway: http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, answered: true },
  { attack: 'ping', counter: 'pingFloods', goaway: http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, answered: true },
  { attack: 'window-update-zero-conn', counter: 'protocolErrors', answered: true },
  { attack: 'window-update-zero-stream', counter: 'protocolErrors', answered: true },
];

for (const c of CASES) {
  test(`pool: a hostile peer's ${c.attack} attack ends that tunnel within 1 s; the tunnel to a good peer keeps relaying`, async (t) => {
    const s = await hboneServer(t);
    const hostile = await hostilePeer(t, s, c.attack);
    const p = poolWith(t, s, routedDialer({ [HOSTILE_IP]: hostile.port }));
    const good = await within(p.open(request(s)), 3000, 'a CONNECT to the good peer');
    assert.equal(await exchange(good, 'before'), 'before');
    const held = await within(p.open(request(s)), 3000, 'a CONNECT to the good peer held across the attack');

    // Made first: the relay must be in place the moment the open resolves, before the flood lands.
    const app = await appPair(t);
    const toHostile = p.open(request(s, { target: { family: 4, ip: HOSTILE_IP, port: 7000 } }));
    if (!c.answered) {
      // The response never completes: the open fails when nghttp2 ends the session.
      const err = await within(toHostile, 3000, 'the open to fail').then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof HboneStreamError, `expected HboneStreamError, got ${String(err)}`);
    } else {
      const stream = await within(toHostile, 3000, 'the hostile peer to answer');
      void relay(app.near, stream);
      await within(app.farClosed, 3000, "the app's connection to be closed");
      assert.equal(app.farError(), 'ECONNRESET', 'the app saw a clean close instead of a reset');
    }
    assert.ok(hostile.attackStartedAt !== undefined, 'the attack never started');
    await within(
      (async () => {
        while (hostile.closedAt === undefined) await sleep(5);
      })(),
      3000,
      'the pool to close the hostile tunnel',
    );
    const tookMs = (hostile.closedAt ?? 0) - hostile.attackStartedAt;
    assert.ok(tookMs <= 1000, `the pool closed the tunnel after ${tookMs} ms (${hostile.framesSent} frames)`);
    if (c.goaway !== undefined) assert.equal(hostile.goaway, c.goaway);
    if (c.attack === 'continuation') assert.ok(hostile.framesSent < 100_000);
    assert.equal(p.peerStats().counters[c.counter], 1, JSON.stringify(p.peerStats().counters));
    assert.deepEqual(
      p.stats().map((e) => e.targetIp),
      ['127.0.0.1'],
      'the hostile tunnel is still pooled',
    );

    assert.equal(await exchange(held, 'held across'), 'held across');
    const after = await within(p.open(request(s)), 3000, 'a CONNECT to the good peer after the attack');
    assert.equal(await exchange(after, 'after'), 'after');
    assert.equal(s.accepted(), 1, 'the good tunnel was replaced');
  });
}
