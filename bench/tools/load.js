// Load generator run inside a sandbox client pod (node built-ins only): keep-alive requests/s, new
// connections/s, open-loop latency and bulk TCP throughput against bench/tools/server.js.
//   node load.js --host IP --http-port 80 --sink-port 9000 [--connections 16 --rps-seconds 5 ...]
// Writes one JSON line per event on stdout: {"event":"phase","phase":P,"state":"start"|"end"} at the
// edges of each measured phase (the driver samples the agents' CPU there), then {"event":"result",...}.
// Every loop is bounded by a count and a deadline, and the whole process by a hard timeout.
'use strict';
const net = require('node:net');
const { performance } = require('node:perf_hooks');
const { parseArgs } = require('node:util');
const { Worker } = require('node:worker_threads');

const { values: opt } = parseArgs({
  options: {
    host: { type: 'string' },
    'http-port': { type: 'string', default: '80' },
    'sink-port': { type: 'string', default: '9000' },
    connections: { type: 'string', default: '16' },
    'rps-seconds': { type: 'string', default: '4' },
    'cps-seconds': { type: 'string', default: '3' },
    'cps-concurrency': { type: 'string', default: '8' },
    rate: { type: 'string', default: '500' },
    'latency-seconds': { type: 'string', default: '4' },
    'latency-connections': { type: 'string', default: '32' },
    'bulk-mib': { type: 'string', default: '256' },
    'bulk-runs': { type: 'string', default: '3' },
    'warmup-seconds': { type: 'string', default: '1' },
  },
});
if (!opt.host) fail(new Error('--host is required'));
const HOST = opt.host;
const HTTP_PORT = Number(opt['http-port']);
const SINK_PORT = Number(opt['sink-port']);
const CONNECTIONS = Number(opt.connections);
const RPS_MS = Number(opt['rps-seconds']) * 1000;
const CPS_MS = Number(opt['cps-seconds']) * 1000;
const CPS_CONCURRENCY = Number(opt['cps-concurrency']);
const RATE = Number(opt.rate);
const LATENCY_MS = Number(opt['latency-seconds']) * 1000;
const LATENCY_CONNECTIONS = Number(opt['latency-connections']);
const BULK_BYTES = Number(opt['bulk-mib']) * 1024 * 1024;
const BULK_RUNS = Number(opt['bulk-runs']);
const WARMUP_MS = Number(opt['warmup-seconds']) * 1000;

/** Upper bounds on top of the deadlines, so that no loop can run away even if the clock misbehaves. */
const MAX_REQUESTS_PER_PHASE = 5_000_000;
const MAX_RECONNECTS_PER_PHASE = 200;
const CONNECT_TIMEOUT_MS = 5000;
/** How long a phase waits for requests still in flight at its end before calling them timed out. */
const DRAIN_MS = 5000;
const BULK_TIMEOUT_MS = 60_000;
const READY_TIMEOUT_MS = 15_000;
const HARD_TIMEOUT_MS = 150_000;

const hardTimer = setTimeout(() => fail(new Error(`load tool timed out after ${HARD_TIMEOUT_MS} ms`)), HARD_TIMEOUT_MS);
hardTimer.unref();

const KEEPALIVE_REQUEST = Buffer.from('GET / HTTP/1.1\r\nHost: bench\r\n\r\n', 'latin1');
const CLOSE_REQUEST = Buffer.from('GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n', 'latin1');
const HEADER_END = Buffer.from('\r\n\r\n', 'latin1');
const MAX_HEADER_BYTES = 16 * 1024;

function emit(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}
function fail(err) {
  emit({ event: 'error', error: err.message, code: err.code });
  process.exit(2);
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Error tallies by code, so that resets and refusals show up in the result rather than vanish. */
class ErrorCounter {
  constructor() {
    this.byCode = {};
    this.total = 0;
    this.samples = [];
  }
  add(err) {
    const code = err.code || err.message.slice(0, 60);
    this.byCode[code] = (this.byCode[code] || 0) + 1;
    this.total += 1;
    if (this.samples.length < 3) this.samples.push(err.message);
  }
  toJSON() {
    return { total: this.total, byCode: this.byCode, samples: this.samples };
  }
}

/**
 * Incremental HTTP/1.1 response reader for our own server's answers: status line must be 200 and
 * the body is framed by Content-Length (RFC 9112 §6.3). One request is outstanding at a time, so a
 * completed response is always the answer to the last request sent.
 */
function responseReader(onResponse, onError) {
  let pending = null;
  let bodyLeft = -1;
  return (chunk) => {
    const buf = pending ? Buffer.concat([pending, chunk]) : chunk;
    pending = null;
    let off = 0;
    while (off < buf.length) {
      if (bodyLeft > 0) {
        const take = Math.min(bodyLeft, buf.length - off);
        bodyLeft -= take;
        off += take;
        if (bodyLeft === 0) {
          bodyLeft = -1;
          onResponse();
        }
        continue;
      }
      const end = buf.indexOf(HEADER_END, off);
      if (end < 0) {
        pending = buf.subarray(off);
        if (pending.length > MAX_HEADER_BYTES) onError(new Error('response header too long'));
        return;
      }
      const head = buf.toString('latin1', off, end);
      off = end + HEADER_END.length;
      if (!head.startsWith('HTTP/1.1 200 ')) {
        onError(Object.assign(new Error(`unexpected status: ${head.split('\r\n')[0]}`), { code: 'BAD_STATUS' }));
        return;
      }
      const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
      if (!length) {
        onError(new Error('response without content-length'));
        return;
      }
      bodyLeft = Number(length[1]);
      if (bodyLeft === 0) {
        bodyLeft = -1;
        onResponse();
      }
    }
  };
}

/** One HTTP/1.1 connection; `request(buf, cb)` sends and calls cb(err) when the response is complete. */
class HttpConnection {
  constructor(socket) {
    this.socket = socket;
    this.callback = null;
    this.dead = false;
    socket.setNoDelay(true);
    socket.on(
      'data',
      responseReader(
        () => this.settle(null),
        (err) => {
          this.settle(err);
          socket.destroy();
        },
      ),
    );
    socket.on('error', (err) => this.settle(err));
    socket.on('close', () => {
      this.dead = true;
      this.settle(Object.assign(new Error('connection closed before the response'), { code: 'EARLY_CLOSE' }));
    });
  }
  request(buf, callback) {
    this.callback = callback;
    this.socket.write(buf);
  }
  settle(err) {
    if (err) this.dead = true;
    const callback = this.callback;
    this.callback = null;
    if (callback) callback(err);
  }
  close() {
    this.dead = true;
    this.socket.destroy();
  }
}

function connectSocket(port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error(`connect ${HOST}:${port} timed out`), { code: 'CONNECT_TIMEOUT' }));
    }, CONNECT_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', reject);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function openHttp() {
  return new HttpConnection(await connectSocket(HTTP_PORT));
}

function requestOnce(conn, buf) {
  return new Promise((resolve, reject) => conn.request(buf, (err) => (err ? reject(err) : resolve())));
}

/** The servers start with the sandbox; wait (bounded) until a request on each port goes through. */
async function waitReady() {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last;
  while (Date.now() < deadline) {
    try {
      const conn = await openHttp();
      await requestOnce(conn, KEEPALIVE_REQUEST);
      conn.close();
      await bulk(1024);
      return;
    } catch (err) {
      last = err;
      await sleep(100);
    }
  }
  throw new Error(`server ${HOST} not ready after ${READY_TIMEOUT_MS} ms: ${last?.message}`);
}

/**
 * Closed loop: `connections` keep-alive connections, each sending its next request as soon as the
 * previous response is complete, for `durationMs`. A connection that fails is counted and replaced
 * (at most MAX_RECONNECTS_PER_PHASE times). Only responses completed inside the window count.
 */
async function closedLoop(connections, durationMs) {
  const errors = new ErrorCounter();
  let completed = 0;
  let sent = 0;
  let reconnects = 0;
  const start = performance.now();
  const end = start + durationMs;
  const open = new Set();
  // One watchdog for the phase rather than a timer per request: whatever is still waiting for a
  // response DRAIN_MS after the window is closed, which fails its request and ends its worker.
  const watchdog = setTimeout(() => {
    for (const conn of open) conn.close();
  }, durationMs + DRAIN_MS);
  const worker = async () => {
    let conn = null;
    while (performance.now() < end && sent < MAX_REQUESTS_PER_PHASE) {
      if (conn === null || conn.dead) {
        if (conn !== null) open.delete(conn);
        if (conn !== null && ++reconnects > MAX_RECONNECTS_PER_PHASE) return;
        try {
          conn = await openHttp();
        } catch (err) {
          errors.add(err);
          conn = null;
          await sleep(10);
          continue;
        }
        open.add(conn);
      }
      sent += 1;
      await new Promise((resolve) => {
        conn.request(KEEPALIVE_REQUEST, (err) => {
          if (err) errors.add(err);
          else if (performance.now() <= end) completed += 1;
          resolve();
        });
      });
    }
    if (conn) {
      open.delete(conn);
      conn.close();
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  clearTimeout(watchdog);
  const seconds = Math.min(performance.now(), end) - start;
  return { connections, seconds: seconds / 1000, requests: completed, perSecond: completed / (seconds / 1000), errors };
}

/**
 * New connection per request: connect, send one request with `Connection: close`, read the
 * response, wait for the server's FIN and the socket's close. The server closes first, so
 * TIME_WAIT stays on its side (RFC 9293 §3.6) and the client never runs out of ephemeral ports.
 */
async function connectionLoop(concurrency, durationMs) {
  const errors = new ErrorCounter();
  let completed = 0;
  let attempts = 0;
  const start = performance.now();
  const end = start + durationMs;
  const once = async () => {
    const socket = await connectSocket(HTTP_PORT);
    const conn = new HttpConnection(socket);
    const closed = new Promise((resolve) => socket.once('close', resolve));
    const timer = setTimeout(() => conn.close(), DRAIN_MS);
    try {
      await requestOnce(conn, CLOSE_REQUEST);
      socket.end();
      await closed;
    } finally {
      clearTimeout(timer);
      conn.close();
    }
  };
  const worker = async () => {
    while (performance.now() < end && attempts < MAX_REQUESTS_PER_PHASE) {
      attempts += 1;
      try {
        await once();
        if (performance.now() <= end) completed += 1;
      } catch (err) {
        errors.add(err);
        await sleep(1);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = Math.min(performance.now(), end) - start;
  return { concurrency, seconds: seconds / 1000, connections: completed, perSecond: completed / (seconds / 1000), errors };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/**
 * Wakes the main thread when open-loop requests fall due. libuv timers have 1 ms resolution, so a
 * setTimeout schedule would send most requests up to a millisecond late and charge that to the
 * data path; a worker sleeping in Atomics.wait (fractional ms, a futex underneath) wakes on time
 * and posts the index up to which requests are due. Waking the main thread through postMessage
 * takes ~0.1 ms, so the worker posts TICK_LEAD_MS early. It owns no sockets; it posts 'ready',
 * receives the start time, and stops after `total` requests or when terminated.
 */
const TICK_LEAD_MS = 0.15;
const TICKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { performance } = require('node:perf_hooks');
const { interval, total, lead } = workerData;
const cell = new Int32Array(new SharedArrayBuffer(4));
parentPort.once('message', (startAbs) => {
  const base = startAbs - performance.timeOrigin - lead;
  let i = 0;
  while (i < total) {
    const wait = base + i * interval - performance.now();
    if (wait > 0.005) { Atomics.wait(cell, 0, 0, wait); continue; }
    const now = performance.now();
    let j = i + 1;
    while (j < total && base + j * interval <= now) j += 1;
    parentPort.postMessage(j);
    i = j;
  }
});
parentPort.postMessage('ready');
`;

function summarize(values, count) {
  const sorted = values.subarray(0, count).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  const ms = (v) => (v === null || v === undefined ? null : Math.round(v * 1000) / 1000);
  return {
    p50: ms(percentile(sorted, 0.5)),
    p90: ms(percentile(sorted, 0.9)),
    p99: ms(percentile(sorted, 0.99)),
    p999: ms(percentile(sorted, 0.999)),
    max: ms(sorted.length ? sorted[sorted.length - 1] : null),
    mean: ms(count ? sum / count : null),
  };
}

/**
 * Open loop at a fixed rate over a pool of keep-alive connections. Request i is due at
 * start + i/rate; its latency runs from that due time, not from when it was sent, so a stall
 * that delays later sends is charged to them (no coordinated omission, as in wrk2). A request
 * due while every connection is busy waits in a queue, and that wait counts too. A request the
 * ticker released a little early is timed from its actual send instead. Also reported: the send
 * lag (due to write, the tool's own share) and the service time (write to response).
 */
async function openLoop(rate, durationMs, poolSize) {
  const errors = new ErrorCounter();
  const total = Math.min(Math.floor((rate * durationMs) / 1000), MAX_REQUESTS_PER_PHASE);
  const latencies = new Float64Array(total);
  const lags = new Float64Array(total);
  const services = new Float64Array(total);
  let done = 0;
  let measured = 0;
  let sentCount = 0;
  const idle = [];
  for (let i = 0; i < poolSize; i++) idle.push(await openHttp());
  const queue = [];
  const interval = 1000 / rate;
  let next = 0;
  let finish;
  const finished = new Promise((resolve) => {
    finish = resolve;
  });
  if (total === 0) finish();
  const ticker = new Worker(TICKER_SOURCE, { eval: true, workerData: { interval, total, lead: TICK_LEAD_MS } });
  await new Promise((resolve, reject) => {
    ticker.once('message', resolve);
    ticker.once('error', reject);
  });
  // A few ms ahead, so that request 0 is not already late when the worker reads its start time.
  const start = performance.now() + 5;
  ticker.postMessage(performance.timeOrigin + start);

  const send = (conn, due) => {
    const sentAt = performance.now();
    lags[sentCount++] = sentAt - due;
    const from = Math.min(due, sentAt);
    conn.request(KEEPALIVE_REQUEST, (err) => {
      done += 1;
      if (err) errors.add(err);
      else {
        const now = performance.now();
        services[measured] = now - sentAt;
        latencies[measured++] = now - from;
      }
      if (!conn.dead) {
        if (queue.length > 0) send(conn, queue.shift());
        else idle.push(conn);
      } else if (queue.length > 0) {
        // Replace the failed connection so that the queue keeps draining.
        openHttp().then(
          (c) => send(c, queue.shift()),
          (e) => {
            errors.add(e);
            done += queue.length;
            queue.length = 0;
          },
        );
      }
      if (done >= total) finish();
    });
  };
  ticker.on('message', (upTo) => {
    while (next < upTo) {
      const due = start + next * interval;
      next += 1;
      const conn = idle.pop();
      if (conn) send(conn, due);
      else queue.push(due);
    }
  });
  ticker.on('error', (err) => errors.add(err));
  const timeout = sleep(durationMs + DRAIN_MS).then(() => 'timeout');
  await Promise.race([finished, timeout]);
  await ticker.terminate();
  for (const conn of idle) conn.close();
  return {
    rate,
    seconds: durationMs / 1000,
    connections: poolSize,
    scheduled: total,
    answered: measured,
    unanswered: total - measured - errors.total,
    latencyMs: summarize(latencies, measured),
    sendLagMs: summarize(lags, sentCount),
    serviceMs: summarize(services, measured),
    errors,
  };
}

/**
 * One TCP connection sends `bytes` to the sink and half-closes; the sink replies with the count it
 * received only after our FIN, so the time runs until every byte has crossed every hop.
 */
function bulk(bytes) {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(256 * 1024, 0x5a);
    let socket;
    const timer = setTimeout(() => {
      if (socket) socket.destroy();
      reject(Object.assign(new Error(`bulk of ${bytes} bytes timed out after ${BULK_TIMEOUT_MS} ms`), { code: 'BULK_TIMEOUT' }));
    }, BULK_TIMEOUT_MS);
    connectSocket(SINK_PORT).then(
      (s) => {
        socket = s;
        const start = performance.now();
        let reply = '';
        s.setEncoding('latin1');
        s.on('data', (d) => {
          reply += d;
        });
        s.on('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        s.on('end', () => {
          clearTimeout(timer);
          const seconds = (performance.now() - start) / 1000;
          s.destroy();
          const received = Number(reply.trim());
          if (received !== bytes) {
            reject(Object.assign(new Error(`sink received ${reply.trim() || 'nothing'} of ${bytes} bytes`), { code: 'SHORT_BULK' }));
            return;
          }
          resolve({ bytes, seconds, mibPerSecond: bytes / 1048576 / seconds });
        });
        let offset = 0;
        const pump = () => {
          while (offset < bytes) {
            const piece = offset + chunk.length <= bytes ? chunk : chunk.subarray(0, bytes - offset);
            offset += piece.length;
            if (!s.write(piece)) {
              s.once('drain', pump);
              return;
            }
          }
          s.end();
        };
        pump();
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

async function bulkRuns(bytes, runs) {
  const errors = new ErrorCounter();
  const results = [];
  for (let i = 0; i < runs; i++) {
    try {
      results.push(await bulk(bytes));
    } catch (err) {
      errors.add(err);
    }
  }
  const rates = results.map((r) => r.mibPerSecond).sort((a, b) => a - b);
  return { bytes, runs, mibPerSecond: rates.length ? rates[Math.floor((rates.length - 1) / 2)] : null, all: rates, errors };
}

async function phase(name, run) {
  emit({ event: 'phase', phase: name, state: 'start' });
  const result = await run();
  emit({ event: 'phase', phase: name, state: 'end' });
  return result;
}

async function main() {
  await waitReady();
  // Warm-up: JIT in the client, the servers and the agents, TCP buffers, the agents' pools.
  const warmup = {
    closed: await closedLoop(CONNECTIONS, WARMUP_MS),
    connections: await connectionLoop(CPS_CONCURRENCY, WARMUP_MS / 2),
    bulk: await bulkRuns(Math.min(BULK_BYTES, 32 * 1024 * 1024), 1),
  };
  const rps = await phase('rps', () => closedLoop(CONNECTIONS, RPS_MS));
  const cps = await phase('cps', () => connectionLoop(CPS_CONCURRENCY, CPS_MS));
  const latency = await phase('latency', () => openLoop(RATE, LATENCY_MS, LATENCY_CONNECTIONS));
  const bulkResult = await phase('bulk', () => bulkRuns(BULK_BYTES, BULK_RUNS));
  emit({
    event: 'result',
    host: HOST,
    warmupErrors: warmup.closed.errors.total + warmup.connections.errors.total + warmup.bulk.errors.total,
    rps,
    cps,
    latency,
    bulk: bulkResult,
  });
  process.exit(0);
}

main().catch(fail);
