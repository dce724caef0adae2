// Tests for src/proxy/relay.ts over real loopback TCP: client -> proxy (relay) -> far server, on
// ephemeral ports, the far side a TCP socket or an HTTP/2 CONNECT stream. Byte counts, half-close,
// backpressure and resets.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { once, type EventEmitter } from 'node:events';
import { StreamResetError } from '../../src/proxy';
import { relay, resetEnd, type RelayResult } from '../../src/proxy/relay';
import { type After, sleep, within } from './helpers';

async function listen(t: After, server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  // Not awaiting close(): its callback waits for every accepted socket, which later hooks destroy.
  t.after(() => {
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

function track(t: After, socket: net.Socket): net.Socket {
  socket.on('error', () => {
    /* each test asserts the errors it expects */
  });
  t.after(() => {
    socket.destroy();
  });
  return socket;
}

interface Harness {
  /** The test's client, connected to the proxy. */
  client: net.Socket;
  /** The far server's side of the relayed connection. */
  far: net.Socket;
  /** The proxy's two sockets, as relay got them. */
  downstream: net.Socket;
  upstream: net.Socket;
  result: Promise<RelayResult>;
}

/**
 * client --> [downstream | relay | upstream] --> far server. All four sockets allow half-open,
 * as the node proxy's do. `farServerOptions` lets a test pause the far side on connect.
 */
async function harness(t: After, farServerOptions: net.ServerOpts = {}): Promise<Harness> {
  const farSockets: net.Socket[] = [];
  const far = net.createServer({ allowHalfOpen: true, ...farServerOptions }, (s) => farSockets.push(track(t, s)));
  const farPort = await listen(t, far);

  let resolveProxied!: (v: { downstream: net.Socket; upstream: net.Socket; result: Promise<RelayResult> }) => void;
  const proxied = new Promise<{ downstream: net.Socket; upstream: net.Socket; result: Promise<RelayResult> }>((resolve) => {
    resolveProxied = resolve;
  });
  const proxy = net.createServer({ allowHalfOpen: true }, (downstream) => {
    track(t, downstream);
    const upstream = track(t, net.connect({ host: '127.0.0.1', port: farPort, allowHalfOpen: true }));
    resolveProxied({ downstream, upstream, result: relay(downstream, upstream) });
  });
  const proxyPort = await listen(t, proxy);

  const client = track(t, net.connect({ host: '127.0.0.1', port: proxyPort, allowHalfOpen: true }));
  await within(once(client, 'connect'), 2000, 'the client to connect');
  const { downstream, upstream, result } = await within(proxied, 2000, 'the proxy to accept');
  await within(once(upstream, 'connect'), 2000, 'the upstream to connect');
  await within(
    (async () => {
      while (farSockets.length === 0) await sleep(5);
    })(),
    2000,
    'the far server to accept',
  );
  return { client, far: farSockets[0], downstream, upstream, result };
}

function collect(socket: net.Socket): { data: () => Buffer; ended: Promise<void> } {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  return { data: () => Buffer.concat(chunks), ended: once(socket, 'end').then(() => undefined) };
}

test('counts the bytes relayed in each direction exactly', async (t) => {
  const h = await harness(t);
  const atFar = collect(h.far);
  const atClient = collect(h.client);
  const request = Buffer.alloc(300_001, 'q');
  const response = Buffer.alloc(123_457, 'r');

  h.client.end(request);
  await within(atFar.ended, 5000, 'the request to arrive');
  h.far.end(response);
  await within(atClient.ended, 5000, 'the response to arrive');

  const result = await within(h.result, 5000, 'relay to resolve');
  assert.equal(result.sent, request.length);
  assert.equal(result.received, response.length);
  assert.equal(result.error, undefined);
  assert.ok(atFar.data().equals(request), 'request bytes changed on the way');
  assert.ok(atClient.data().equals(response), 'response bytes changed on the way');
});

test("half-close: the client's FIN reaches the far server, which can still answer", async (t) => {
  const h = await harness(t);
  const atFar = collect(h.far);
  const atClient = collect(h.client);
  let clientClosed = false;
  h.client.on('close', () => {
    clientClosed = true;
  });

  h.client.end('question');
  await within(atFar.ended, 2000, "the far server to see the client's FIN");
  assert.equal(atFar.data().toString(), 'question');

  // The other direction is still open: nothing has closed yet.
  await sleep(50);
  assert.equal(clientClosed, false, 'the client was closed while the far side could still send');
  assert.equal(h.downstream.destroyed, false);
  assert.equal(h.upstream.destroyed, false);

  h.far.write('answer, part one; ');
  await sleep(20);
  h.far.end('part two');
  await within(atClient.ended, 2000, "the far server's FIN to reach the client");
  assert.equal(atClient.data().toString(), 'answer, part one; part two');

  const result = await within(h.result, 2000, 'relay to resolve after both FINs');
  assert.deepEqual(result, { sent: 'question'.length, received: 'answer, part one; part two'.length });
  await within(once(h.client, 'close'), 2000, 'the client to close');
  assert.ok(h.downstream.destroyed && h.upstream.destroyed, 'relay resolved with a socket still open');
});

test('half-close the other way: the far server finishes first, the client still sends', async (t) => {
  const h = await harness(t);
  const atFar = collect(h.far);
  const atClient = collect(h.client);

  h.far.end('banner');
  await within(atClient.ended, 2000, "the far server's FIN to reach the client");
  h.client.write('late ');
  h.client.end('request');
  await within(atFar.ended, 2000, "the client's FIN to reach the far server");
  assert.equal(atFar.data().toString(), 'late request');
  assert.equal(atClient.data().toString(), 'banner');
  const result = await within(h.result, 2000, 'relay to resolve');
  assert.deepEqual(result, { sent: 'late request'.length, received: 'banner'.length });
});

test('backpressure: a paused far reader does not make the proxy buffer without bound', async (t) => {
  // The far server does not read for a while (pauseOnConnect): the kernel buffers fill, then the
  // proxy must stop reading from the client instead of queueing the rest in user space.
  const h = await harness(t, { pauseOnConnect: true });
  const result = await assertBoundedUnderPausedReader(t, h, 'the far server');
  assert.equal(result.received, 0);
});

test('a reset from the far side resets the client and relay reports the error', async (t) => {
  const h = await harness(t);
  const clientError = within(once(h.client, 'error'), 2000, 'the client to see an error');
  let clientEnded = false;
  h.client.on('end', () => {
    clientEnded = true;
  });

  h.client.write('hello');
  const [first] = (await within(once(h.far, 'data'), 2000, 'the far server to get data')) as [Buffer];
  assert.equal(first.toString(), 'hello');
  h.far.resetAndDestroy();

  const [err] = (await clientError) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
  assert.equal(clientEnded, false, 'the client saw a clean FIN instead of a reset');

  const result = await within(h.result, 2000, 'relay to resolve after the reset');
  assert.ok(result.error instanceof Error, 'relay resolved without an error');
  assert.equal((result.error as NodeJS.ErrnoException).code, 'ECONNRESET');
  assert.equal(result.sent, 5);
  assert.ok(h.downstream.destroyed && h.upstream.destroyed);
});

test('a reset from the client resets the far side and relay reports the error', async (t) => {
  const h = await harness(t);
  const farError = within(once(h.far, 'error'), 2000, 'the far server to see an error');

  h.far.write('welcome');
  await within(once(h.client, 'data'), 2000, 'the client to get data');
  h.client.resetAndDestroy();

  const [err] = (await farError) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
  const result = await within(h.result, 2000, 'relay to resolve after the reset');
  assert.equal((result.error as NodeJS.ErrnoException | undefined)?.code, 'ECONNRESET');
  assert.equal(result.received, 'welcome'.length);
});

// ---- one side an HTTP/2 stream (an HBONE tunnel) ---------------------------------------------

interface H2Harness {
  client: net.Socket;
  /** The far server's side: the stream it accepted (CONNECT answered 200). */
  far: http2.ServerHttp2Stream;
  downstream: net.Socket;
  upstream: http2.ClientHttp2Stream;
  result: Promise<RelayResult>;
}

/**
 * client --> [downstream | relay | upstream stream] ==HTTP/2==> far server stream. The far server
 * announces `windows` as its initial stream and connection windows.
 */
async function h2Harness(t: After, windows = 65_535): Promise<H2Harness> {
  const farStreams: http2.ServerHttp2Stream[] = [];
  const farServer = http2.createServer({ settings: { initialWindowSize: windows } });
  const farSessions: http2.ServerHttp2Session[] = [];
  farServer.on('session', (session) => {
    farSessions.push(session);
    session.on('error', () => undefined);
  });
  farServer.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.respond({ ':status': 200 });
    farStreams.push(stream);
  });
  farServer.listen(0, '127.0.0.1');
  await once(farServer, 'listening');
  t.after(() => {
    for (const session of farSessions) session.destroy();
    farServer.close();
  });
  const session = http2.connect(`http://127.0.0.1:${(farServer.address() as net.AddressInfo).port}`);
  session.on('error', () => undefined);
  t.after(() => {
    session.destroy();
  });

  let resolveProxied!: (v: { downstream: net.Socket; upstream: http2.ClientHttp2Stream; result: Promise<RelayResult> }) => void;
  const proxied = new Promise<{ downstream: net.Socket; upstream: http2.ClientHttp2Stream; result: Promise<RelayResult> }>((resolve) => {
    resolveProxied = resolve;
  });
  const proxy = net.createServer({ allowHalfOpen: true }, (downstream) => {
    track(t, downstream);
    const upstream = session.request({ ':method': 'CONNECT', ':authority': '127.0.0.1:1' }, { endStream: false });
    upstream.on('error', () => undefined);
    upstream.once('response', () => resolveProxied({ downstream, upstream, result: relay(downstream, upstream) }));
  });
  const proxyPort = await listen(t, proxy);
  const client = track(t, net.connect({ host: '127.0.0.1', port: proxyPort, allowHalfOpen: true }));
  await within(once(client, 'connect'), 2000, 'the client to connect');
  const { downstream, upstream, result } = await within(proxied, 2000, 'the CONNECT to be answered');
  await within(
    (async () => {
      while (farStreams.length === 0) await sleep(5);
    })(),
    2000,
    'the far stream',
  );
  return { client, far: farStreams[0], downstream, upstream, result };
}

test('http2: bytes are counted and half-close is END_STREAM both ways', async (t) => {
  const h = await h2Harness(t);
  const atFar = collect(h.far as unknown as net.Socket);
  const atClient = collect(h.client);
  const request = Buffer.alloc(300_001, 'q');
  const response = Buffer.alloc(123_457, 'r');

  h.client.end(request);
  await within(atFar.ended, 5000, 'the request and END_STREAM to arrive');
  // The reverse direction is still open after the client's FIN.
  await sleep(50);
  assert.equal(h.client.destroyed, false);
  h.far.end(response);
  await within(atClient.ended, 5000, 'the response and FIN to arrive');

  const result = await within(h.result, 5000, 'relay to resolve');
  assert.deepEqual(result, { sent: request.length, received: response.length });
  assert.ok(atFar.data().equals(request));
  assert.ok(atClient.data().equals(response));
  assert.equal(h.upstream.rstCode, http2.constants.NGHTTP2_NO_ERROR);
});

test('http2: a stream reset by the far side resets the client (no FIN first)', async (t) => {
  const h = await h2Harness(t);
  const clientError = within(once(h.client, 'error'), 2000, 'the client to be reset');
  let clientEnded = false;
  h.client.on('end', () => {
    clientEnded = true;
  });
  h.client.write('hello');
  await within(once(h.far, 'data'), 2000, 'the far stream to get data');
  // RST_STREAM alone, as a peer agent sends it (resetEnd), not Node's END_STREAM-then-RST close().
  resetEnd(h.far);
  const [err] = (await clientError) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
  assert.equal(clientEnded, false, 'the client saw a clean FIN before the reset');
  const result = await within(h.result, 2000, 'relay to resolve');
  assert.ok(result.error instanceof StreamResetError, `expected StreamResetError, got ${String(result.error)}`);
  assert.equal(result.error.rstCode, http2.constants.NGHTTP2_CANCEL);
  assert.equal(result.sent, 5);
});

test('http2: a client reset becomes RST_STREAM(CANCEL) on the tunnel, without END_STREAM', async (t) => {
  const h = await h2Harness(t);
  let aborted = false;
  let farEnded = false;
  h.far.on('aborted', () => {
    aborted = true;
    farEnded = h.far.readableEnded;
  });
  h.far.write('welcome');
  await within(once(h.client, 'data'), 2000, 'the client to get data');
  h.client.resetAndDestroy();
  await within(new Promise<void>((resolve) => h.far.once('close', () => resolve())), 2000, 'the far stream to close');
  assert.ok(aborted, 'the far stream ended cleanly instead of being aborted');
  assert.equal(farEnded, false, 'END_STREAM arrived before the RST_STREAM');
  assert.equal(h.far.rstCode, http2.constants.NGHTTP2_CANCEL);
  const result = await within(h.result, 2000, 'relay to resolve');
  assert.equal((result.error as NodeJS.ErrnoException | undefined)?.code, 'ECONNRESET');
  assert.equal(result.received, 'welcome'.length);
});

test('http2: a far stream that does not read stops the client through flow control', async (t) => {
  // 1 MiB windows: the sender may have at most that much unacknowledged; the relay must then stop
  // reading the client instead of queueing in user space.
  const h = await h2Harness(t, 1024 * 1024);
  h.far.pause();
  await assertBoundedUnderPausedReader(t, h, 'the far stream');
});

/** What the paused-reader scenario needs of either harness (plain sockets or an HTTP/2 stream far side). */
interface Flooded {
  client: net.Socket;
  far: NodeJS.ReadableStream & { end(): void };
  upstream: { writableLength: number };
  downstream: { writableLength: number };
  result: Promise<RelayResult>;
}

/**
 * Write 32 MiB through the relay as fast as it lets us while the far reader is paused (the caller
 * paused it): once every buffer on the way is full the relay must stop reading the client rather
 * than queue in user space. Then resume the reader and check that everything arrives.
 */
async function assertBoundedUnderPausedReader(t: After, h: Flooded, far: string): Promise<RelayResult> {
  const TOTAL = 32 * 1024 * 1024;
  const BOUND = 4 * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024, 7);
  let maxBuffered = 0;
  const sample = (): void => {
    maxBuffered = Math.max(maxBuffered, h.upstream.writableLength, h.downstream.writableLength);
  };
  const sampler = setInterval(sample, 5);
  t.after(() => clearInterval(sampler));
  // The client writes as fast as the relay lets it, honouring its own backpressure.
  let written = 0;
  const writer = (async () => {
    while (written < TOTAL) {
      written += chunk.length;
      let more = true;
      if (written < TOTAL) more = h.client.write(chunk);
      else h.client.end(chunk);
      sample();
      if (!more) await once(h.client, 'drain');
    }
  })();
  // Hold the far reader paused long enough for every buffer on the way to fill.
  await sleep(700);
  sample();
  assert.ok(written < TOTAL, `the whole 32 MiB went into ${far} while it did not read: nothing pushed back`);
  assert.ok(maxBuffered < BOUND, `relay buffered ${maxBuffered} bytes in user space (bound ${BOUND})`);

  let receivedAtFar = 0;
  h.far.on('data', (c: Buffer) => {
    receivedAtFar += c.length;
    sample();
  });
  h.far.resume();
  await within(once(h.far as unknown as EventEmitter, 'end'), 20_000, `all 32 MiB to reach ${far}`);
  await writer;
  h.far.end();
  clearInterval(sampler);
  assert.equal(receivedAtFar, TOTAL);
  assert.ok(maxBuffered < BOUND, `relay buffered ${maxBuffered} bytes in user space (bound ${BOUND})`);
  const result = await within(h.result, 5000, 'relay to resolve');
  assert.equal(result.sent, TOTAL);
  return result;
}
