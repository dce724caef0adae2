// HBONE server for one pod: mutual TLS 1.3 on the pod's 15008 listener, HTTP/2 CONNECT streams to
// one of the pod's own addresses, handed to the proxy once well formed; with abuse limits.
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import * as tls from 'node:tls';
import { PORTS } from '../config';
import type { Logger } from '../telemetry';
import {
  HBONE_ADMISSION_DEFAULTS,
  HBONE_ADMISSION_RANGES,
  HboneAdmission,
  type AdmittedHandshake,
  type HboneAdmissionLimits,
} from './hbone-admission';
import {
  HBONE_FLOW,
  HBONE_MAX_STREAMS,
  hasIp,
  hostPort,
  numericOptions,
  parseAuthority,
  stripMapped,
  validTraceparent,
} from './hbone-protocol';
import {
  GUARD_CODES,
  HTTP2_GUARD_DEFAULTS,
  HTTP2_GUARD_RANGES,
  RateWindow,
  destroySession,
  guardSession,
  tearDown,
  type Http2GuardLimits,
  type Http2GuardViolation,
} from './http2-guard';
import { resetEnd } from './relay';
import type { PeerIdentity, ProxyPod, SocketAddress, TlsProvider } from './types';

/**
 * Limits against misbehaving or hostile peers, per pod listener and per session. A peer must get
 * through mutual TLS before it can send a single HTTP/2 frame, so the TLS limits face everyone
 * who can reach 15008 and the HTTP/2 ones face authenticated workloads. Also here: the session
 * guard's keepalive and SETTINGS/PING limits (Http2GuardLimits: PING every 10 s, dead after 10 s
 * more, 10 SETTINGS and 10 PINGs per second) and the agent-wide caps (HboneAdmissionLimits: 128
 * sessions per peer identity, 32 pending handshakes per source address), which the HboneAdmission
 * enforces: NodeProxy builds its shared one from these limits, a listener given none builds its own.
 */
export interface HboneServerLimits extends Http2GuardLimits, HboneAdmissionLimits {
  /** A connection that has not completed TLS by then is closed. */
  handshakeTimeoutMs: number;
  /**
   * Connections accepted but not yet through TLS, per pod listener. At the cap the OLDEST one is
   * closed to make room: a stalled handshake has had the longest to finish, while refusing new ones
   * would let a few hundred idle sockets shut out every legitimate peer until they time out.
   */
  maxPendingHandshakes: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS we announce (ztunnel's server: 200; our pool uses at most 100). */
  maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: CONNECT carries :method, :authority and three small headers. */
  maxHeaderListSize: number;
  /** Header fields per block; more and Node resets the stream with ENHANCE_YOUR_CALM. */
  maxHeaderListPairs: number;
  /**
   * Invalid frames per session (RFC 9113 §5.4: protocol errors nghttp2 answers with RST_STREAM) that
   * Node tolerates before destroying the session; Node's default is 1000. It counts the first one
   * free, so 0 ends the session at the second (a malformed CONNECT gets its RST_STREAM, another
   * ends the session); frames that are connection errors end it at once whatever this says.
   */
  maxSessionInvalidFrames: number;
  /** Streams refused (e.g. over the concurrency limit) per session before Node destroys it. */
  maxSessionRejectedStreams: number;
  /** Node's credit limit for a session's header tables, queued output and pending frames, in MB. */
  maxSessionMemoryMb: number;
  /**
   * Rapid reset (CVE-2023-44487): streams the peer resets before we answered, per session per
   * window. Over it: GOAWAY(ENHANCE_YOUR_CALM) and the session is destroyed. Node 20's bundled
   * nghttp2 (≥ 1.57) has its own limit — a token bucket of 1000 resets refilled at 33/s, then
   * GOAWAY(INTERNAL_ERROR) — which is too loose here, where every stream we begin to handle may
   * cost a dial to the app.
   */
  maxResetsPerWindow: number;
  resetWindowMs: number;
  /** A session without streams for this long is closed; our pool closes its idle ones sooner. */
  sessionIdleTimeoutMs: number;
  streamWindow: number;
  connectionWindow: number;
  maxFrameSize: number;
}

export const HBONE_SERVER_DEFAULTS: HboneServerLimits = {
  handshakeTimeoutMs: 10_000,
  maxPendingHandshakes: 256,
  maxConcurrentStreams: HBONE_MAX_STREAMS,
  maxHeaderListSize: 16 * 1024,
  maxHeaderListPairs: 32,
  maxSessionInvalidFrames: 0,
  maxSessionRejectedStreams: 100,
  maxSessionMemoryMb: 32,
  maxResetsPerWindow: 200,
  resetWindowMs: 10_000,
  sessionIdleTimeoutMs: 300_000,
  ...HBONE_FLOW,
  ...HTTP2_GUARD_DEFAULTS,
  ...HBONE_ADMISSION_DEFAULTS,
};

const RANGES: { [K in keyof HboneServerLimits]: [number, number] } = {
  handshakeTimeoutMs: [1, 600_000],
  maxPendingHandshakes: [1, 1_000_000],
  maxConcurrentStreams: [1, 10_000],
  maxHeaderListSize: [1024, 1024 * 1024],
  maxHeaderListPairs: [4, 1000],
  maxSessionInvalidFrames: [0, 1_000_000],
  maxSessionRejectedStreams: [0, 1_000_000],
  maxSessionMemoryMb: [1, 4096],
  maxResetsPerWindow: [1, 1_000_000],
  resetWindowMs: [1, 3600_000],
  sessionIdleTimeoutMs: [1, 24 * 3600_000],
  streamWindow: [65_535, 2 ** 31 - 1],
  connectionWindow: [65_535, 2 ** 31 - 1],
  maxFrameSize: [16_384, 2 ** 24 - 1],
  ...HTTP2_GUARD_RANGES,
  ...HBONE_ADMISSION_RANGES,
};

export function hboneServerLimits(overrides?: Partial<HboneServerLimits>): HboneServerLimits {
  return numericOptions('hbone.server', HBONE_SERVER_DEFAULTS, overrides, RANGES);
}

/** A well-formed CONNECT from an authenticated peer to one of the pod's addresses. */
export interface HboneInboundStream {
  pod: ProxyPod;
  peer: PeerIdentity;
  /** The tunnel's TCP peer: the source pod's address (the peer agent dials from inside it). */
  source: SocketAddress;
  target: SocketAddress;
  traceparent?: string;
  forwarded?: string;
  /** Id of the tunnel (TLS connection) the stream came on. */
  tunnel: string;
  stream: http2.ServerHttp2Stream;
  /** Answer 200: from now on the stream's DATA is the connection's bytes. */
  accept(): void;
  /** Answer `status` and end the stream (a reset if an answer went out already). */
  reject(status: number): void;
}

export interface HboneListenerDeps {
  tls: TlsProvider;
  log: Logger;
  limits: HboneServerLimits;
  onStream(request: HboneInboundStream): void;
  /**
   * The agent-wide caps (sessions per peer identity, pending handshakes per source address), one
   * object shared by every pod's listener. Absent: a private one from `limits`, so the caps hold for
   * this listener alone.
   */
  admission?: HboneAdmission;
}

export interface HboneListenerStats {
  pendingHandshakes: number;
  sessions: number;
  streams: number;
  /** Since the listener started: handshakes closed at the timeout, closed to make room at the cap, and completed but refused. */
  handshakesTimedOut: number;
  handshakesEvicted: number;
  handshakesRejected: number;
  /** Handshakes of this listener closed to make room at the agent-wide maxPendingHandshakesPerSource. */
  handshakesEvictedPerSource: number;
  /** Sessions refused (GOAWAY ENHANCE_YOUR_CALM) because their peer identity held maxSessionsPerPeer already. */
  sessionsRefusedPerPeer: number;
  /** Sessions closed by the HTTP/2 guard: over maxResetsPerWindow, maxSettingsPerWindow or maxPingsPerWindow. */
  sessionsClosedResetFlood: number;
  sessionsClosedSettingsFlood: number;
  sessionsClosedPingFlood: number;
  /** Sessions closed because the peer did not ACK a keepalive PING, or our SETTINGS, within keepaliveTimeoutMs. */
  sessionsClosedKeepalive: number;
  sessionsClosedSettingsTimeout: number;
  /** Sessions nghttp2 ended for a protocol violation (CONTINUATION or ACK flood, zero WINDOW_UPDATE, invalid frames…). */
  sessionsClosedProtocolError: number;
}

const GUARD_COUNTER: Record<Http2GuardViolation, keyof ListenerCounters> = {
  'settings-flood': 'sessionsClosedSettingsFlood',
  'ping-flood': 'sessionsClosedPingFlood',
  'keepalive-timeout': 'sessionsClosedKeepalive',
  'settings-timeout': 'sessionsClosedSettingsTimeout',
  'protocol-error': 'sessionsClosedProtocolError',
};

type ListenerCounters = Omit<HboneListenerStats, 'pendingHandshakes' | 'sessions' | 'streams'>;

interface PendingHandshake {
  socket: tls.TLSSocket;
  timer: NodeJS.Timeout;
  admitted: AdmittedHandshake;
}

interface SessionState {
  id: string;
  /** The TLS socket under the session (session.socket is a proxy that refuses destroy()). */
  socket: tls.TLSSocket;
  peer: PeerIdentity;
  source: SocketAddress;
  streams: number;
  /** Streams the peer reset before we answered, within resetWindowMs. */
  resets: RateWindow;
  /** Over the reset limit: being torn down (the rest of the read that tripped it is still processed). */
  resetLimited: boolean;
  idleTimer?: NodeJS.Timeout;
}

/** Ferry's own ports inside the pod: a CONNECT to them would loop back into the agent. */
const RESERVED_PORTS = new Set<number>([PORTS.outbound, PORTS.inbound, PORTS.hbone]);

let tunnelCounter = 0;

/**
 * What tls.Server does when a server socket's handshake finishes (onServerSocketSecure in Node's
 * lib/_tls_wrap.js), done here because our sockets are made with `new TLSSocket(…, { isServer })`
 * so the pod's context can be looked up per connection. Node's OpenSSL verify callback always lets
 * the handshake finish, so a client certificate that does not chain to the bundle gets this far:
 * the verification result must be read (`verifyError`). Then the socket is marked connected
 * (`secureConnecting`), which an HTTP/2 session waits for before it starts. Neither field is in
 * Node's typings; a missing native handle counts as unverified (fail closed).
 */
function completeServerHandshake(socket: tls.TLSSocket): string | undefined {
  const internals = socket as unknown as {
    ssl?: { verifyError(): (Error & { code?: string }) | null } | null;
    secureConnecting: boolean;
  };
  if (!internals.ssl) return 'TLS handle closed';
  const err = internals.ssl.verifyError();
  if (err) return `client certificate not trusted: ${err.code ?? err.message}`;
  internals.secureConnecting = false;
  socket.authorized = true;
  return undefined;
}

export class HboneListener {
  private readonly log: Logger;
  private readonly principal: string;
  private readonly h2: http2.Http2Server;
  /** Insertion order is acceptance order: the first entry is the oldest. */
  private readonly pending = new Set<PendingHandshake>();
  private readonly sessions = new Map<http2.ServerHttp2Session, SessionState>();
  private readonly counts: ListenerCounters = {
    handshakesTimedOut: 0,
    handshakesEvicted: 0,
    handshakesRejected: 0,
    handshakesEvictedPerSource: 0,
    sessionsRefusedPerPeer: 0,
    sessionsClosedResetFlood: 0,
    sessionsClosedSettingsFlood: 0,
    sessionsClosedPingFlood: 0,
    sessionsClosedKeepalive: 0,
    sessionsClosedSettingsTimeout: 0,
    sessionsClosedProtocolError: 0,
  };
  private readonly admission: HboneAdmission;
  /**
   * Set by drain() or handOff(): no new connections. 'drain' also refuses handshakes in progress;
   * 'hand-off' lets them finish and sends their sessions GOAWAY at once.
   */
  private closing: 'drain' | 'hand-off' | undefined;

  constructor(
    private readonly pod: ProxyPod,
    private readonly deps: HboneListenerDeps,
  ) {
    this.log = deps.log.child({ component: 'hbone', pod: pod.uid });
    this.principal = deps.tls.principalFor(pod.namespace, pod.serviceAccount);
    this.admission = deps.admission ?? new HboneAdmission(deps.limits);
    const l = deps.limits;
    // Never listens: TLS sockets are handed to it with emit('connection') once verified.
    this.h2 = http2.createServer({
      settings: {
        enablePush: false,
        initialWindowSize: l.streamWindow,
        maxFrameSize: l.maxFrameSize,
        maxConcurrentStreams: l.maxConcurrentStreams,
        maxHeaderListSize: l.maxHeaderListSize,
      },
      maxHeaderListPairs: l.maxHeaderListPairs,
      maxSessionInvalidFrames: l.maxSessionInvalidFrames,
      maxSessionRejectedStreams: l.maxSessionRejectedStreams,
      maxSessionMemory: l.maxSessionMemoryMb,
    });
    this.h2.on('sessionError', (err: Error) => this.log.debug({ err }, 'hbone session error'));
  }

  /**
   * A TCP connection accepted on the pod's HBONE listener. The server side of TLS uses the pod's
   * current context, looked up per connection so a rotated certificate applies at once.
   */
  accept(raw: net.Socket): void {
    raw.on('error', () => {
      /* surfaces on the TLS socket */
    });
    const remote = hostPort(stripMapped(raw.remoteAddress ?? '?'), raw.remotePort ?? 0);
    const contexts = this.closing ? undefined : this.deps.tls.contexts(this.principal);
    if (!contexts) {
      this.log.debug({ remote, principal: this.principal, closing: this.closing }, 'hbone connection refused: no certificate or closing');
      raw.destroy();
      return;
    }
    if (this.pending.size >= this.deps.limits.maxPendingHandshakes) {
      const [oldest] = this.pending;
      this.settle(oldest);
      oldest.socket.destroy();
      this.counts.handshakesEvicted += 1;
    }
    const socket = new tls.TLSSocket(raw, {
      isServer: true,
      secureContext: contexts.server,
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
    });
    const entry: PendingHandshake = {
      socket,
      timer: setTimeout(() => {
        this.counts.handshakesTimedOut += 1;
        socket.destroy();
      }, this.deps.limits.handshakeTimeoutMs),
      admitted: {
        source: stripMapped(raw.remoteAddress ?? '?'),
        evict: () => {
          this.settle(entry);
          this.counts.handshakesEvictedPerSource += 1;
          socket.destroy();
        },
      },
    };
    this.pending.add(entry);
    // After this listener's own cap: the agent-wide one may evict a handshake of any listener,
    // this new one included if the cap is 1.
    this.admission.handshakeStarted(entry.admitted);
    socket.on('error', (err: NodeJS.ErrnoException) =>
      this.log.debug({ remote, code: err.code, reason: err.message }, 'hbone connection error'),
    );
    socket.once('close', () => this.settle(entry));
    socket.once('secure', () => {
      if (!this.pending.has(entry)) return;
      this.settle(entry);
      this.onSecure(socket, raw, remote);
    });
  }

  private settle(entry: PendingHandshake): void {
    if (this.pending.delete(entry)) clearTimeout(entry.timer);
    this.admission.handshakeSettled(entry.admitted);
  }

  /** TLS is up: require a trusted chain, ALPN h2, TLS 1.3 and a SPIFFE identity of our trust domain. */
  private onSecure(socket: tls.TLSSocket, raw: net.Socket, remote: string): void {
    let peer: PeerIdentity | undefined;
    let reason = completeServerHandshake(socket);
    if (!reason && socket.alpnProtocol !== 'h2') reason = `ALPN h2 not negotiated (${String(socket.alpnProtocol)})`;
    if (!reason && socket.getProtocol() !== 'TLSv1.3') reason = `${String(socket.getProtocol())} is not TLS 1.3`;
    if (!reason) {
      const certificate = socket.getPeerX509Certificate();
      if (!certificate) reason = 'no client certificate';
      else {
        try {
          peer = this.deps.tls.peerIdentity(certificate);
        } catch (err) {
          reason = `client identity rejected: ${(err as Error).message}`;
        }
      }
    }
    if (reason || !peer || this.closing === 'drain') {
      this.counts.handshakesRejected += 1;
      // debug, not info: anyone who can reach 15008 could otherwise fill the log.
      this.log.debug({ remote, reason: reason ?? 'closing' }, 'hbone handshake rejected');
      socket.destroy();
      return;
    }
    const source: SocketAddress = {
      family: raw.remoteFamily === 'IPv6' && !(raw.remoteAddress ?? '').startsWith('::ffff:') ? 6 : 4,
      ip: stripMapped(raw.remoteAddress ?? ''),
      port: raw.remotePort ?? 0,
    };
    const verified = peer;
    const onSession = (session: http2.ServerHttp2Session): void => this.serve(session, socket, verified, source);
    this.h2.once('session', onSession);
    this.h2.emit('connection', socket);
    this.h2.off('session', onSession);
  }

  private serve(session: http2.ServerHttp2Session, socket: tls.TLSSocket, peer: PeerIdentity, source: SocketAddress): void {
    tunnelCounter += 1;
    const l = this.deps.limits;
    const state: SessionState = {
      id: `h${tunnelCounter}`,
      socket,
      peer,
      source,
      streams: 0,
      resets: new RateWindow(l.maxResetsPerWindow, l.resetWindowMs),
      resetLimited: false,
    };
    const fields = {
      tunnel: state.id,
      side: 'server',
      peer: peer.principal,
      local: hostPort(stripMapped(socket.localAddress ?? '?'), socket.localPort ?? 0),
      remote: hostPort(source.ip, source.port),
    };
    session.on('error', () => {
      /* logged through the close reason, or by the server's 'sessionError' */
    });
    // The agent-wide cap per peer identity. GOAWAY(ENHANCE_YOUR_CALM), not REFUSED_STREAM:
    // REFUSED_STREAM is a stream error code that tells a client it may retry at once (RFC 9113
    // §8.7), while a peer holding this many sessions to one agent is generating excessive load,
    // which is what ENHANCE_YOUR_CALM says (§7). Either way the peer retries nothing it sent: the
    // GOAWAY's last stream id is 0.
    if (!this.admission.sessionOpened(peer.principal)) {
      this.counts.sessionsRefusedPerPeer += 1;
      this.log.warn(
        { ...fields, sessions: this.admission.sessionsOf(peer.principal), max: this.admission.limits.maxSessionsPerPeer },
        'hbone session refused: the peer identity holds the most sessions allowed',
      );
      tearDown(session, socket, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 'peer identity at maxSessionsPerPeer');
      return;
    }
    this.sessions.set(session, state);
    let closeReason: string | undefined;
    session.on('error', (err: Error) => {
      closeReason ??= err.message;
    });
    session.on('frameError', (type: number, code: number) => this.log.debug({ tunnel: state.id, type, code }, 'hbone frame error'));
    session.on('goaway', (code: number) => {
      closeReason ??= `GOAWAY from peer (code ${code})`;
    });
    session.on('close', () => {
      if (state.idleTimer) clearTimeout(state.idleTimer);
      this.sessions.delete(session);
      this.admission.sessionClosed(peer.principal);
      this.log.info({ ...fields, reason: closeReason ?? 'closed' }, 'hbone connection closed');
    });
    session.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) =>
      this.onStream(session, state, stream, headers),
    );
    guardSession(session, socket, l, (kind, detail) => {
      closeReason ??= `${kind}: ${detail}`;
      this.counts[GUARD_COUNTER[kind]] += 1;
      this.log.warn(
        { tunnel: state.id, peer: peer.principal, remote: fields.remote, violation: kind, code: GUARD_CODES[kind], detail },
        'hbone session closed by the HTTP/2 guard',
      );
    });
    if (!session.destroyed && !session.connecting) session.setLocalWindowSize(l.connectionWindow);
    this.armIdle(session, state);
    this.log.info(fields, 'hbone connection accepted');
    if (this.closing === 'hand-off') {
      // Its handshake was under way at handOff(): served, but told at once to go elsewhere. The
      // GOAWAY's last-stream-id is 0, so a CONNECT its client sent meanwhile is refused
      // unprocessed (REFUSED_STREAM on the client's side, RFC 9113 §6.8) and safe to retry.
      this.log.debug({ tunnel: state.id }, 'hbone session established during a hand-off; sending GOAWAY');
      session.close();
    }
  }

  /** An idle session gets GOAWAY; its socket is destroyed if the peer has not closed within 5 s. */
  private armIdle(session: http2.ServerHttp2Session, state: SessionState): void {
    if (state.streams > 0 || session.closed) return;
    state.idleTimer = setTimeout(() => {
      session.close();
      setTimeout(() => state.socket.destroy(), 5000).unref();
    }, this.deps.limits.sessionIdleTimeoutMs);
    state.idleTimer.unref();
  }

  /**
   * One stream. Only CONNECT (RFC 9113 §8.5) to `ip:port` of this pod, not one of Ferry's ports;
   * anything else is answered here. The proxy gets the stream a turn later, so a stream reset in
   * the same read (a rapid-reset flood) is dropped before it costs a dial.
   */
  private onStream(
    session: http2.ServerHttp2Session,
    state: SessionState,
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
  ): void {
    stream.on('error', (err: Error) => this.log.debug({ tunnel: state.id, stream: stream.id, err: err.message }, 'hbone stream error'));
    state.streams += 1;
    if (state.idleTimer) clearTimeout(state.idleTimer);
    state.idleTimer = undefined;
    stream.once('close', () => {
      state.streams -= 1;
      this.armIdle(session, state);
    });
    let answered = false;
    stream.once('aborted', () => {
      if (!answered) this.countReset(session, state);
    });
    const answer = (status: number, endStream: boolean): void => {
      if (answered && status !== 200) {
        resetEnd(stream);
        return;
      }
      answered = true;
      if (!stream.destroyed && !stream.closed && !stream.headersSent) stream.respond({ ':status': status }, { endStream });
    };

    const authority = headers[':authority'];
    if (headers[':method'] !== 'CONNECT') {
      answer(405, true);
      return;
    }
    const target = parseAuthority(authority);
    if (!target || RESERVED_PORTS.has(target.port) || !hasIp(this.pod.ips, target.ip)) {
      this.log.debug({ tunnel: state.id, authority }, 'hbone CONNECT target is not this pod');
      answer(400, true);
      return;
    }
    const forwarded = headers.forwarded;
    const request: HboneInboundStream = {
      pod: this.pod,
      peer: state.peer,
      source: state.source,
      target,
      traceparent: validTraceparent(headers.traceparent),
      forwarded: typeof forwarded === 'string' ? forwarded : undefined,
      tunnel: state.id,
      stream,
      accept: () => answer(200, false),
      reject: (status) => answer(status, true),
    };
    this.log.debug({ tunnel: state.id, stream: stream.id, authority }, 'hbone stream');
    setImmediate(() => {
      if (stream.destroyed || stream.closed) return;
      this.deps.onStream(request);
    });
  }

  /** Rapid-reset accounting; see HboneServerLimits.maxResetsPerWindow. */
  private countReset(session: http2.ServerHttp2Session, state: SessionState): void {
    if (!state.resets.hit() || session.destroyed || state.resetLimited) return;
    state.resetLimited = true;
    this.counts.sessionsClosedResetFlood += 1;
    this.log.warn(
      { tunnel: state.id, peer: state.peer.principal, resets: state.resets.count, windowMs: this.deps.limits.resetWindowMs },
      'hbone session exceeded the stream reset limit; closing it',
    );
    tearDown(session, state.socket, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 'over maxResetsPerWindow');
  }

  stats(): HboneListenerStats {
    let streams = 0;
    for (const state of this.sessions.values()) streams += state.streams;
    return { pendingHandshakes: this.pending.size, sessions: this.sessions.size, streams, ...this.counts };
  }

  /**
   * Drain: refuse new connections and handshakes, and send every session GOAWAY (RFC 9113 §6.8)
   * so peers open no new streams while open ones finish. close() ends what is left.
   */
  drain(): void {
    this.closing = 'drain';
    for (const entry of [...this.pending]) {
      this.settle(entry);
      entry.socket.destroy();
    }
    for (const session of this.sessions.keys()) if (!session.closed) session.close();
  }

  /**
   * Hand-off: another process (the agent's successor) accepts on the same listening socket from
   * now on. As drain(), no new connections come through this listener and every session gets
   * GOAWAY so its open streams finish and its client opens new ones on the successor; but
   * handshakes already in progress complete — their clients would otherwise see a failed dial
   * rather than a retryable refusal — and each such session gets GOAWAY as soon as it is served.
   * A later drain() refuses the handshakes still pending; close() ends what is left.
   */
  handOff(): void {
    this.closing ??= 'hand-off';
    for (const session of this.sessions.keys()) if (!session.closed) session.close();
  }

  /**
   * Close everything now: pending handshakes and sessions. Sessions are destroyed with a code, not
   * NO_ERROR, so open streams close as aborted rather than as if finished; the TLS socket is
   * destroyed right after, because Node leaves a session that was already closing (GOAWAY sent by
   * drain()) waiting for the peer to close the connection.
   */
  close(): void {
    this.drain();
    for (const [session, state] of [...this.sessions]) {
      destroySession(session, http2.constants.NGHTTP2_CANCEL, 'listener closed');
      setImmediate(() => state.socket.destroy());
    }
  }
}
