// What every HBONE HTTP/2 session gets, client (pool) and server side alike: limits on the peer's
// SETTINGS and PING frames, the SETTINGS acknowledgement deadline, and a PING keepalive that ends
// the session when the peer stops answering.
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import { StreamResetError } from './errors';

export interface Http2GuardLimits {
  /**
   * A PING goes out this often (RFC 9113 §6.7) while the session lives; it also carries the
   * SETTINGS acknowledgement deadline (keepaliveTimeoutMs after the session starts).
   */
  keepaliveIntervalMs: number;
  /** No PING ACK (or, at the start, no SETTINGS ACK) this long after sending: the peer is dead. */
  keepaliveTimeoutMs: number;
  /**
   * Non-ACK SETTINGS and PING frames the peer may send per controlFrameWindowMs. nghttp2 answers
   * each with an ACK and only notices a flood when more than 1000 ACKs queue up within one read
   * (its max_outbound_ack), so a paced flood would be answered forever. A tunnel needs its initial
   * SETTINGS and a keepalive PING every few seconds; more than a few per second is an attack.
   */
  maxSettingsPerWindow: number;
  maxPingsPerWindow: number;
  controlFrameWindowMs: number;
}

/**
 * What ended a session: a flood over the limits, a peer that stopped answering, or a protocol
 * violation nghttp2 itself ended the session for (too many CONTINUATION frames, its own flood
 * detection, a zero WINDOW_UPDATE, too many invalid frames…), which the guard only records.
 */
export type Http2GuardViolation = 'settings-flood' | 'ping-flood' | 'keepalive-timeout' | 'settings-timeout' | 'protocol-error';

const { NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_SETTINGS_TIMEOUT } = http2.constants;

/**
 * GOAWAY code per violation. Floods: ENHANCE_YOUR_CALM (RFC 9113 §7: "excessive load"). No SETTINGS
 * ACK: SETTINGS_TIMEOUT (§6.5.3). No PING ACK: CANCEL, like every other session we tear down with
 * streams open, so they close as aborted and the relay resets the app's connection (the peer is
 * unlikely to read the GOAWAY anyway). Protocol errors: Node has destroyed the session already and
 * sent its own GOAWAY (INTERNAL_ERROR); the code is what the violation is.
 */
export const GUARD_CODES: Record<Http2GuardViolation, number> = {
  'settings-flood': NGHTTP2_ENHANCE_YOUR_CALM,
  'ping-flood': NGHTTP2_ENHANCE_YOUR_CALM,
  'keepalive-timeout': NGHTTP2_CANCEL,
  'settings-timeout': NGHTTP2_SETTINGS_TIMEOUT,
  'protocol-error': NGHTTP2_PROTOCOL_ERROR,
};

/**
 * A session 'error' that is nghttp2 ending the session because of what the peer sent (Node's
 * NghttpError), not a socket error: ERR_HTTP2_ERROR carries nghttp2's own error (e.g. "Too many
 * CONTINUATION frames", "Flooding was detected"), ERR_HTTP2_TOO_MANY_INVALID_FRAMES is
 * maxSessionInvalidFrames.
 */
export function isProtocolViolation(err: Error & { code?: unknown }): boolean {
  return err.code === 'ERR_HTTP2_ERROR' || err.code === 'ERR_HTTP2_TOO_MANY_INVALID_FRAMES';
}

/**
 * After a session is destroyed with a GOAWAY, how long its socket stays so the GOAWAY can leave.
 * Node half-closes a server session's socket and stops reading it, so a peer that never sends its
 * FIN would otherwise keep the file descriptor forever.
 */
export const GOAWAY_FLUSH_MS = 100;

/** Events in a sliding window: hit() records one and says whether the window now holds more than `limit`. */
export class RateWindow {
  /** Times of recent events, oldest first; never more than limit + 1 entries. */
  private readonly times: number[] = [];

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  hit(now = Date.now()): boolean {
    this.times.push(now);
    while (this.times.length > 0 && this.times[0] <= now - this.windowMs) this.times.shift();
    if (this.times.length > this.limit + 1) this.times.shift();
    return this.times.length > this.limit;
  }

  get count(): number {
    return this.times.length;
  }
}

/**
 * Destroy a session with `code` now: Node sends GOAWAY with it and destroys every open stream with
 * a StreamResetError, so relays see an abort. Never `destroy(undefined, code)`: that hits the
 * default parameter of Node's `destroy(error = NO_ERROR, code)`, which then sends NO_ERROR and
 * closes the streams as if they had finished.
 */
export function destroySession(session: http2.Http2Session, code: number, reason: string): void {
  if (!session.destroyed) session.destroy(new StreamResetError(`HTTP/2 session closed (code ${code}): ${reason}`, code), code);
}

/**
 * End a session for cause: GOAWAY now, destroySession() on the next turn, the socket once the
 * GOAWAY had its moment to leave. Destroying from inside one of Node's frame events (as a flood
 * check does) often loses the GOAWAY: Node is mid-read and drops what nghttp2 had queued. The
 * GOAWAY's last stream id is the last stream we processed (RFC 9113 §6.8), so the peer knows the
 * streams it opened since were never seen.
 */
export function tearDown(session: http2.Http2Session, socket: net.Socket, code: number, reason: string): void {
  if (!session.destroyed) {
    try {
      session.goaway(code, session.state.lastProcStreamID ?? 0);
    } catch {
      // Already closing: destroySession() below still sends its GOAWAY.
    }
  }
  setImmediate(() => destroySession(session, code, reason));
  setTimeout(() => socket.destroy(), GOAWAY_FLUSH_MS).unref();
}

/**
 * Watch one session until it closes; attach it right after the session starts (its SETTINGS are
 * what the acknowledgement deadline times). On a violation `onViolation` runs first (for the owner's log,
 * counters and pool bookkeeping), then the session and its socket are torn down with the code from
 * GUARD_CODES. Concurrency: every check runs on Node's session events and this guard's own timers,
 * all on the event loop; the first violation wins and the rest are ignored.
 */
export function guardSession(
  session: http2.Http2Session,
  socket: net.Socket,
  limits: Http2GuardLimits,
  onViolation: (kind: Http2GuardViolation, detail: string) => void,
): void {
  const settings = new RateWindow(limits.maxSettingsPerWindow, limits.controlFrameWindowMs);
  const pings = new RateWindow(limits.maxPingsPerWindow, limits.controlFrameWindowMs);
  let done = false;
  let pingTimer: NodeJS.Timeout | undefined;
  let settingsTimer: NodeJS.Timeout | undefined;
  let sent = 0;

  const stop = (): void => {
    done = true;
    clearInterval(interval);
    clearTimeout(pingTimer);
    clearTimeout(settingsTimer);
  };
  const violate = (kind: Http2GuardViolation, detail: string): void => {
    if (done) return;
    stop();
    onViolation(kind, detail);
    tearDown(session, socket, GUARD_CODES[kind], `${kind}: ${detail}`);
  };

  // Node emits these once per received frame (non-ACK SETTINGS, non-ACK PING), and only while a
  // listener is attached.
  session.on('remoteSettings', () => {
    if (settings.hit())
      violate('settings-flood', `more than ${limits.maxSettingsPerWindow} SETTINGS frames within ${limits.controlFrameWindowMs} ms`);
  });
  session.on('ping', () => {
    if (pings.hit()) violate('ping-flood', `more than ${limits.maxPingsPerWindow} PING frames within ${limits.controlFrameWindowMs} ms`);
  });
  // Node destroys the session before emitting this; recording it here also makes sure the socket
  // goes (see GOAWAY_FLUSH_MS), which Node would only half-close.
  session.on('error', (err: Error) => {
    if (isProtocolViolation(err)) violate('protocol-error', err.message);
  });

  // Our SETTINGS went out when the session started; RFC 9113 §6.5.3 lets us end a session whose
  // peer does not acknowledge them "within a reasonable time". Node emits 'localSettings' on the ACK.
  if (session.pendingSettingsAck) {
    settingsTimer = setTimeout(() => {
      if (session.pendingSettingsAck) violate('settings-timeout', `no SETTINGS ACK within ${limits.keepaliveTimeoutMs} ms`);
    }, limits.keepaliveTimeoutMs);
    settingsTimer.unref();
    session.once('localSettings', () => clearTimeout(settingsTimer));
  }

  // One PING outstanding at a time. Its ACK clears the deadline; a session nghttp2 has terminated on
  // its own (some connection errors send GOAWAY without telling Node, which then stops reading the
  // socket and never sees it close) sends no more frames, so the deadline ends it too.
  const interval = setInterval(() => {
    if (done || pingTimer !== undefined || session.destroyed) return;
    sent += 1;
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(sent, 4);
    let accepted = false;
    try {
      accepted = session.ping(payload, (err) => {
        if (err || done) return;
        clearTimeout(pingTimer);
        pingTimer = undefined;
      });
    } catch {
      accepted = false;
    }
    if (!accepted) return;
    pingTimer = setTimeout(
      () => violate('keepalive-timeout', `no PING ACK within ${limits.keepaliveTimeoutMs} ms`),
      limits.keepaliveTimeoutMs,
    );
    pingTimer.unref();
  }, limits.keepaliveIntervalMs);
  interval.unref();
  session.once('close', stop);
}

/**
 * Defaults for both ends: a PING every 10 s and 10 s for its ACK, so a dead peer is noticed within
 * 20 s (ztunnel's pool: keepalive every 10 s, dead after 10 s more); at most 10 SETTINGS and 10
 * PINGs per second from the peer.
 */
export const HTTP2_GUARD_DEFAULTS: Http2GuardLimits = {
  keepaliveIntervalMs: 10_000,
  keepaliveTimeoutMs: 10_000,
  maxSettingsPerWindow: 10,
  maxPingsPerWindow: 10,
  controlFrameWindowMs: 1000,
};

export const HTTP2_GUARD_RANGES: { [K in keyof Http2GuardLimits]: [number, number] } = {
  keepaliveIntervalMs: [10, 3600_000],
  keepaliveTimeoutMs: [10, 600_000],
  maxSettingsPerWindow: [1, 100_000],
  maxPingsPerWindow: [1, 100_000],
  controlFrameWindowMs: [1, 3600_000],
};
