// HBONE client: opens HTTP/2 CONNECT streams to other agents over mutual TLS 1.3, multiplexing
// many streams on one pooled connection per (source pod, source identity, peer, peer identity).
import { X509Certificate } from 'node:crypto';
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import * as tls from 'node:tls';
import { PORTS } from '../config';
import type { Logger } from '../telemetry';
import {
  HboneDialError,
  HboneError,
  HboneIdentityError,
  HboneNoIdentityError,
  HbonePoolClosedError,
  HboneStatusError,
  HboneStreamError,
  HboneTlsError,
} from './errors';
import { HBONE_FLOW, HBONE_MAX_STREAMS, hostPort, numericOptions } from './hbone-protocol';
import {
  GUARD_CODES,
  HTTP2_GUARD_DEFAULTS,
  HTTP2_GUARD_RANGES,
  destroySession,
  guardSession,
  type Http2GuardLimits,
  type Http2GuardViolation,
} from './http2-guard';
import { resetEnd } from './relay';
import type { Dialer, IdentityContexts, ProxyPod, SocketAddress, TlsProvider } from './types';

export interface HboneRequestHeaders {
  /** RFC 7239 `for=<source pod ip>`; see forwardedFor(). */
  forwarded: string;
  /** W3C baggage naming the source workload; see sourceBaggage(). */
  baggage?: string;
  /** W3C trace context; see newTraceparent(). */
  traceparent: string;
}

export interface HboneOpenRequest {
  sourcePod: ProxyPod;
  /** The identity the tunnel is opened as (our certificate). */
  sourcePrincipal: string;
  /** The pod address to CONNECT to; the tunnel itself goes to `<target.ip>:<port option>`. */
  target: SocketAddress;
  /** The peer's certificate must carry exactly this identity. */
  expectedPrincipal: string;
  headers: HboneRequestHeaders;
}

/**
 * The keepalive and flood limits (Http2GuardLimits) apply to every pooled session as they do on the
 * server: a hostile peer agent can flood its clients too.
 */
export interface HbonePoolOptions extends Http2GuardLimits {
  /** The peer agents' HBONE port. */
  port: number;
  /** Streams per connection before another connection is opened (ztunnel: pool_max_streams_per_conn = 100). */
  maxStreamsPerConnection: number;
  /** A connection without streams for this long is closed (ztunnel waits 5 min; connections are cheap to redo). */
  idleTimeoutMs: number;
  /** TCP connect to the end of the HTTP/2 preface exchange (first SETTINGS from the peer). */
  handshakeTimeoutMs: number;
  /**
   * From sending CONNECT to the peer's response: the peer authorizes and dials its app meanwhile.
   * Past it the open fails and the tunnel takes no new streams (a peer this slow may be wedged).
   */
  responseTimeoutMs: number;
  /**
   * After a dial, TLS handshake or session start to a peer (target IP and expected identity) failed,
   * or a tunnel to it died of keepalive timeout, opens that would dial it fail at once for this
   * long, doubling with each further failure up to backoffMaxMs; a tunnel established resets it.
   */
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** As HboneServerLimits.maxSessionInvalidFrames, for our client sessions. */
  maxSessionInvalidFrames: number;
  streamWindow: number;
  connectionWindow: number;
  maxFrameSize: number;
}

export const HBONE_POOL_DEFAULTS: HbonePoolOptions = {
  port: PORTS.hbone,
  maxStreamsPerConnection: HBONE_MAX_STREAMS,
  idleTimeoutMs: 60_000,
  handshakeTimeoutMs: 10_000,
  responseTimeoutMs: 15_000,
  backoffInitialMs: 1000,
  backoffMaxMs: 10_000,
  maxSessionInvalidFrames: 0,
  ...HBONE_FLOW,
  ...HTTP2_GUARD_DEFAULTS,
};

const RANGES: { [K in keyof HbonePoolOptions]: [number, number] } = {
  port: [1, 65535],
  maxStreamsPerConnection: [1, 10_000],
  idleTimeoutMs: [1, 24 * 3600_000],
  handshakeTimeoutMs: [1, 600_000],
  responseTimeoutMs: [1, 600_000],
  backoffInitialMs: [1, 600_000],
  backoffMaxMs: [1, 3600_000],
  maxSessionInvalidFrames: [0, 1_000_000],
  ...HTTP2_GUARD_RANGES,
  // RFC 9113 §6.5.2: windows up to 2^31-1, frames from 2^14 to 2^24-1.
  streamWindow: [65_535, 2 ** 31 - 1],
  connectionWindow: [65_535, 2 ** 31 - 1],
  maxFrameSize: [16_384, 2 ** 24 - 1],
};

/** The client's own header list limit (ztunnel: 16 KiB): responses to CONNECT carry a status and little else. */
const MAX_HEADER_LIST_SIZE = 16 * 1024;

/**
 * Code for sessions we tear down with streams still open: their streams close with it, so relays
 * see an abort (with NO_ERROR Node would end them like a clean END_STREAM).
 */
const ABORT = http2.constants.NGHTTP2_CANCEL;

/** After our GOAWAY on an idle tunnel, how long the peer has to close its side. */
const CLOSE_GRACE_MS = 5000;

/** Opens that find only fresh-but-unusable connections give up after this many dials. */
const MAX_DIALS_PER_OPEN = 3;

/** Tunnels an open sends its CONNECT on while the peer refuses it unprocessed (see open()). */
const MAX_OPEN_ATTEMPTS = 3;

export interface HbonePoolDeps {
  tls: TlsProvider;
  dialer: Dialer;
  log: Logger;
}

export interface HboneConnectionStats {
  id: string;
  streams: number;
  local: string;
  remote: string;
  notAfter: string;
}

export interface HbonePoolStats {
  sourcePod: string;
  sourcePrincipal: string;
  targetIp: string;
  expectedPrincipal: string;
  connections: HboneConnectionStats[];
}

/** A peer opens fail fast for, and why. */
export interface HbonePeerBackoff {
  targetIp: string;
  expectedPrincipal: string;
  /** Consecutive failures since the last tunnel established to this peer. */
  failures: number;
  lastFailure: string;
  /** The current window, and when it ends (ISO 8601); `backingOff` is whether that is still ahead. */
  backoffMs: number;
  retryAt: string;
  backingOff: boolean;
}

export interface HbonePoolCounters {
  /** Dials, TLS handshakes or session starts that failed (each one extends its peer's backoff). */
  dialFailures: number;
  /** Opens refused at once because their peer was backing off. */
  failedFast: number;
  /** Tunnels destroyed because the peer did not ACK a keepalive PING, or our SETTINGS, in time. */
  keepaliveTimeouts: number;
  settingsTimeouts: number;
  /** Tunnels destroyed because the peer sent SETTINGS or PING frames over the limits. */
  settingsFloods: number;
  pingFloods: number;
  /** Tunnels nghttp2 ended for the peer's protocol violation (CONTINUATION or ACK flood, zero WINDOW_UPDATE…). */
  protocolErrors: number;
  /** CONNECTs that got no response within responseTimeoutMs (their tunnels were retired). */
  responseTimeouts: number;
  /** CONNECTs the peer refused unprocessed (REFUSED_STREAM) that were sent again on another tunnel. */
  refusedStreamRetries: number;
}

/** What the pool knows of its peers beyond its tunnels: backoffs and event counts since it started. */
export interface HbonePeerStats {
  backoff: HbonePeerBackoff[];
  counters: HbonePoolCounters;
}

const GUARD_COUNTER: Record<Http2GuardViolation, keyof HbonePoolCounters> = {
  'settings-flood': 'settingsFloods',
  'ping-flood': 'pingFloods',
  'keepalive-timeout': 'keepaliveTimeouts',
  'settings-timeout': 'settingsTimeouts',
  'protocol-error': 'protocolErrors',
};

interface PeerState {
  targetIp: string;
  expectedPrincipal: string;
  failures: number;
  lastFailure: string;
  backoffMs: number;
  /** Opens fail fast until then (ms since the epoch). */
  until: number;
}

interface Tunnel {
  id: string;
  key: string;
  request: HboneOpenRequest;
  session: http2.ClientHttp2Session;
  /** The TLS socket under the session (session.socket is a proxy that refuses destroy()). */
  socket: tls.TLSSocket;
  /** The earlier of our certificate's and the peer's notAfter (ms). */
  notAfter: number;
  local: string;
  remote: string;
  streams: number;
  /** No new streams: GOAWAY received, idle, past notAfter, or the pool is closing. */
  retired: boolean;
  closeReason?: string;
  idleTimer?: NodeJS.Timeout;
}

function poolKey(r: HboneOpenRequest): string {
  return [r.sourcePod.uid, r.sourcePrincipal, r.target.ip, r.expectedPrincipal].join('|');
}

/** Backoff is per peer, whichever source pod dials it: a dead agent is dead for every pod. */
function peerKey(r: HboneOpenRequest): string {
  return `${r.target.ip}|${r.expectedPrincipal}`;
}

function addressOf(socket: net.Socket, side: 'local' | 'remote'): string {
  const ip = side === 'local' ? socket.localAddress : socket.remoteAddress;
  const port = side === 'local' ? socket.localPort : socket.remotePort;
  return ip === undefined || port === undefined ? 'unknown' : hostPort(ip, port);
}

export class HbonePool {
  private readonly options: HbonePoolOptions;
  private readonly log: Logger;
  private readonly tunnels = new Map<string, Tunnel[]>();
  /** One dial in flight per key; concurrent opens wait for it instead of dialling their own. */
  private readonly dialing = new Map<string, Promise<void>>();
  /** Peers with failures since their last tunnel was established, by peerKey(). */
  private readonly peers = new Map<string, PeerState>();
  private readonly counts: HbonePoolCounters = {
    dialFailures: 0,
    failedFast: 0,
    keepaliveTimeouts: 0,
    settingsTimeouts: 0,
    settingsFloods: 0,
    pingFloods: 0,
    protocolErrors: 0,
    responseTimeouts: 0,
    refusedStreamRetries: 0,
  };
  private counter = 0;
  private closed = false;

  constructor(
    private readonly deps: HbonePoolDeps,
    options?: Partial<HbonePoolOptions>,
  ) {
    this.options = numericOptions('hbone.pool', HBONE_POOL_DEFAULTS, options, RANGES);
    this.log = deps.log.child({ component: 'hbone' });
  }

  /**
   * Open a CONNECT stream to `target` through a pooled tunnel. Resolves once the peer answered
   * 200 with the stream (a Duplex: write = to the peer's app, end() = FIN, resetEnd() = RST);
   * rejects with an HboneError (HboneStatusError carries the status).
   *
   * Retry: a stream the peer closed with REFUSED_STREAM before answering was not processed
   * (RFC 9113 §8.7), so it is safe to send again. nghttp2 closes streams above a GOAWAY's
   * last-stream-id with that code too (§6.8), which is how a CONNECT racing a peer's drain or
   * hand-off ends. Its tunnel takes no new streams and the open checks out another, which may
   * dial, up to MAX_OPEN_ATTEMPTS in all. Nothing else is retried: a status, a response timeout
   * or another reset code may mean the peer acted on the CONNECT.
   */
  async open(request: HboneOpenRequest): Promise<http2.ClientHttp2Stream> {
    const key = poolKey(request);
    for (let attempt = 1; ; attempt += 1) {
      const tunnel = await this.checkout(key, request);
      const outcome = await this.connect(tunnel, request);
      if ('stream' in outcome) return outcome.stream;
      if (attempt === MAX_OPEN_ATTEMPTS) throw new HboneStreamError(`${outcome.refused} on ${attempt} tunnels`);
      this.counts.refusedStreamRetries += 1;
      this.log.debug(
        { tunnel: tunnel.id, peer: request.target.ip, attempt },
        'hbone CONNECT refused unprocessed; retrying on another tunnel',
      );
    }
  }

  /**
   * A tunnel with a free stream slot, the slot already taken. Concurrency: everything between
   * finding a tunnel and counting the stream happens in one turn of the event loop, so two opens
   * never take the same last slot; while a key has a dial in flight, opens wait for it and then look
   * again (a full new tunnel makes the next waiter dial another, one at a time).
   */
  private async checkout(key: string, request: HboneOpenRequest): Promise<Tunnel> {
    for (let dials = 0; ; ) {
      if (this.closed) throw new HbonePoolClosedError();
      const now = Date.now();
      for (const tunnel of this.tunnels.get(key) ?? []) {
        if (now >= tunnel.notAfter) this.retire(tunnel, 'certificate expiry');
        else if (tunnel.session.closed || tunnel.session.destroyed) this.retire(tunnel, 'session closed');
        else if (!tunnel.retired && tunnel.streams < this.capacity(tunnel)) {
          tunnel.streams += 1;
          if (tunnel.idleTimer) clearTimeout(tunnel.idleTimer);
          tunnel.idleTimer = undefined;
          return tunnel;
        }
      }
      let pending = this.dialing.get(key);
      if (!pending) {
        if (dials === MAX_DIALS_PER_OPEN)
          throw new HboneStreamError(`no usable HBONE connection to ${request.target.ip} after ${dials} dials`);
        this.failFast(request, now);
        dials += 1;
        pending = this.dialPeer(key, request).then(
          (tunnel) => {
            this.dialing.delete(key);
            this.add(tunnel);
          },
          (err: unknown) => {
            this.dialing.delete(key);
            throw err;
          },
        );
        this.dialing.set(key, pending);
      }
      await pending;
    }
  }

  /** Throw at once while the peer is backing off; see HbonePoolOptions.backoffInitialMs. */
  private failFast(request: HboneOpenRequest, now: number): void {
    const peer = this.peers.get(peerKey(request));
    if (!peer || now >= peer.until) return;
    this.counts.failedFast += 1;
    const name = `${hostPort(peer.targetIp, this.options.port)} (${peer.expectedPrincipal})`;
    throw new HboneDialError(
      `HBONE peer ${name} is backing off for ${peer.until - now} ms more after ${peer.failures} failure${peer.failures === 1 ? '' : 's'}; ` +
        `last: ${peer.lastFailure}`,
      { peer: name, lastFailure: peer.lastFailure, retryAt: new Date(peer.until) },
    );
  }

  /** A dial, handshake or tunnel to this peer failed: start or extend its backoff (1 s, 2 s, 4 s… up to the max). */
  private peerFailed(request: HboneOpenRequest, reason: string): void {
    const now = Date.now();
    this.prunePeers(now);
    const key = peerKey(request);
    const peer = this.peers.get(key) ?? {
      targetIp: request.target.ip,
      expectedPrincipal: request.expectedPrincipal,
      failures: 0,
      lastFailure: '',
      backoffMs: 0,
      until: 0,
    };
    peer.failures += 1;
    peer.lastFailure = reason;
    peer.backoffMs = Math.min(this.options.backoffMaxMs, this.options.backoffInitialMs * 2 ** Math.min(peer.failures - 1, 30));
    peer.until = now + peer.backoffMs;
    this.peers.set(key, peer);
    this.log.info(
      { peer: request.target.ip, principal: request.expectedPrincipal, failures: peer.failures, backoffMs: peer.backoffMs, reason },
      'hbone peer backing off',
    );
  }

  /**
   * Forget peers whose window ended longer than backoffMaxMs ago: nobody tried them since, and the
   * map must not grow with every address that ever failed.
   */
  private prunePeers(now: number): void {
    for (const [key, peer] of this.peers) if (now >= peer.until + this.options.backoffMaxMs) this.peers.delete(key);
  }

  private capacity(tunnel: Tunnel): number {
    const peer = tunnel.session.remoteSettings.maxConcurrentStreams ?? this.options.maxStreamsPerConnection;
    return Math.min(this.options.maxStreamsPerConnection, peer);
  }

  private add(tunnel: Tunnel): void {
    if (this.closed) {
      this.destroy(tunnel);
      return;
    }
    const list = this.tunnels.get(tunnel.key) ?? [];
    list.push(tunnel);
    this.tunnels.set(tunnel.key, list);
    this.armIdle(tunnel);
  }

  private forget(tunnel: Tunnel): void {
    const list = this.tunnels.get(tunnel.key);
    if (!list) return;
    const rest = list.filter((t) => t !== tunnel);
    if (rest.length > 0) this.tunnels.set(tunnel.key, rest);
    else this.tunnels.delete(tunnel.key);
  }

  /**
   * No new streams on `tunnel`; once its last stream is done it closes with GOAWAY (RFC 9113 §6.8),
   * and its socket is destroyed if the peer has not closed its side within CLOSE_GRACE_MS.
   */
  private retire(tunnel: Tunnel, reason: string): void {
    if (!tunnel.retired) {
      tunnel.retired = true;
      tunnel.closeReason ??= reason;
      this.forget(tunnel);
    }
    if (tunnel.streams > 0 || tunnel.session.closed) return;
    tunnel.session.close();
    setTimeout(() => tunnel.socket.destroy(), CLOSE_GRACE_MS).unref();
  }

  private armIdle(tunnel: Tunnel): void {
    if (tunnel.streams > 0 || tunnel.retired) return;
    tunnel.idleTimer = setTimeout(() => this.retire(tunnel, 'idle'), this.options.idleTimeoutMs);
    tunnel.idleTimer.unref();
  }

  private release(tunnel: Tunnel): void {
    tunnel.streams -= 1;
    if (tunnel.streams > 0) return;
    if (tunnel.retired) this.retire(tunnel, 'retired');
    else if (Date.now() >= tunnel.notAfter) this.retire(tunnel, 'certificate expiry');
    else this.armIdle(tunnel);
  }

  /**
   * dial() with the peer's backoff kept: a failure that is the peer's (connect, TLS, identity,
   * HTTP/2 start) extends it, an established tunnel clears it. Not the peer's: no certificate of
   * our own yet, the pool closing.
   */
  private async dialPeer(key: string, request: HboneOpenRequest): Promise<Tunnel> {
    try {
      const tunnel = await this.dial(key, request);
      this.peers.delete(peerKey(request));
      return tunnel;
    } catch (err) {
      if (!(err instanceof HboneNoIdentityError || err instanceof HbonePoolClosedError)) {
        this.counts.dialFailures += 1;
        this.peerFailed(request, (err as Error).message);
      }
      throw err;
    }
  }

  /** TCP from inside the source pod, then mutual TLS, then the HTTP/2 preface and SETTINGS. */
  private async dial(key: string, request: HboneOpenRequest): Promise<Tunnel> {
    const contexts = this.deps.tls.contexts(request.sourcePrincipal);
    if (!contexts) throw new HboneNoIdentityError(request.sourcePrincipal);
    const to: SocketAddress = { family: request.target.family, ip: request.target.ip, port: this.options.port };
    const peer = hostPort(to.ip, to.port);
    let raw: net.Socket;
    try {
      raw = await this.deps.dialer.dial(request.sourcePod.netnsPath, to);
    } catch (err) {
      throw new HboneDialError(`connect ${peer}: ${(err as Error).message}`, { cause: err });
    }
    raw.on('error', () => {
      /* reported by the TLS socket wrapping it */
    });
    // The Dialer makes half-open sockets for relaying; under TLS and HTTP/2 a half-open socket
    // keeps the session from noticing the peer's FIN, so it would never see a dropped tunnel.
    raw.allowHalfOpen = false;
    if (this.closed) {
      raw.destroy();
      throw new HbonePoolClosedError();
    }
    const deadline = Date.now() + this.options.handshakeTimeoutMs;
    const socket = await this.handshake(raw, contexts, request, peer);
    const peerCertificate = socket.getPeerX509Certificate();
    const notAfter = Math.min(contexts.notAfter.getTime(), peerCertificate ? Date.parse(peerCertificate.validTo) : 0);
    const session = await this.startSession(socket, peer, deadline - Date.now());

    this.counter += 1;
    const tunnel: Tunnel = {
      id: `t${this.counter}`,
      key,
      request,
      session,
      socket,
      notAfter,
      local: addressOf(socket, 'local'),
      remote: addressOf(socket, 'remote'),
      streams: 0,
      retired: false,
    };
    const fields = {
      tunnel: tunnel.id,
      sourcePod: request.sourcePod.uid,
      sourcePrincipal: request.sourcePrincipal,
      peer: request.expectedPrincipal,
      local: tunnel.local,
      remote: tunnel.remote,
    };
    session.on('goaway', (code: number) => this.retire(tunnel, `GOAWAY (code ${code})`));
    session.on('error', (err: Error) => {
      tunnel.closeReason ??= err.message;
    });
    session.on('close', () => {
      if (tunnel.idleTimer) clearTimeout(tunnel.idleTimer);
      tunnel.retired = true;
      this.forget(tunnel);
      this.log.info({ ...fields, reason: tunnel.closeReason ?? 'closed by peer' }, 'hbone connection closed');
    });
    // A violation destroys the session (its streams close with the code, so relays reset their
    // apps' connections); the tunnel leaves the pool first so no open picks it meanwhile.
    guardSession(session, socket, this.options, (kind, detail) => {
      tunnel.closeReason ??= `${kind}: ${detail}`;
      tunnel.retired = true;
      this.forget(tunnel);
      this.counts[GUARD_COUNTER[kind]] += 1;
      this.log.warn(
        { ...fields, violation: kind, code: GUARD_CODES[kind], detail, streams: tunnel.streams },
        'hbone tunnel closed by the HTTP/2 guard',
      );
      if (kind === 'keepalive-timeout' || kind === 'settings-timeout') this.peerFailed(request, `tunnel ${tunnel.id} ${detail}`);
    });
    this.log.info(fields, 'hbone connection established');
    return tunnel;
  }

  /**
   * Mutual TLS 1.3 with ALPN h2 and no SNI (the peer is addressed by IP, which SNI cannot carry,
   * RFC 6066 §3). The server certificate must chain to the bundle (rejectUnauthorized) and carry
   * exactly the expected identity: checkServerIdentity runs before 'secureConnect', so a wrong peer
   * fails the handshake before a byte of payload is written.
   */
  private handshake(raw: net.Socket, contexts: IdentityContexts, request: HboneOpenRequest, peer: string): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err?: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          socket.destroy();
          reject(err);
        } else {
          resolve(socket);
        }
      };
      const socket = tls.connect({
        socket: raw,
        secureContext: contexts.client,
        ALPNProtocols: ['h2'],
        rejectUnauthorized: true,
        checkServerIdentity: (_host, certificate) => {
          try {
            const identity = this.deps.tls.peerIdentity(new X509Certificate(certificate.raw));
            if (identity.principal === request.expectedPrincipal) return undefined;
            return new HboneIdentityError(`${peer} presented ${identity.principal}, expected ${request.expectedPrincipal}`);
          } catch (err) {
            return new HboneIdentityError(`${peer} presented an unusable certificate: ${(err as Error).message}`, { cause: err });
          }
        },
      });
      const timer = setTimeout(
        () => settle(new HboneTlsError('TIMEOUT', `TLS handshake with ${peer} timed out after ${this.options.handshakeTimeoutMs} ms`)),
        this.options.handshakeTimeoutMs,
      );
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (err instanceof HboneError) settle(err);
        else settle(new HboneTlsError(err.code ?? 'TLS', `TLS handshake with ${peer}: ${err.message}`, { cause: err }));
      });
      socket.once('close', () => settle(new HboneTlsError('CLOSED', `${peer} closed the connection during the TLS handshake`)));
      socket.once('secureConnect', () => {
        // min/maxVersion do not apply to a given secureContext; the identity module builds it for
        // TLS 1.3 only, and this makes sure of it.
        if (socket.getProtocol() !== 'TLSv1.3') {
          settle(new HboneTlsError('VERSION', `${peer} negotiated ${String(socket.getProtocol())}, not TLS 1.3`));
        } else if (socket.alpnProtocol !== 'h2') {
          settle(new HboneTlsError('ALPN', `${peer} did not negotiate ALPN h2 (got ${String(socket.alpnProtocol)})`));
        } else {
          settle();
        }
      });
    });
  }

  /** The HTTP/2 client session over the TLS socket, resolved once the peer's SETTINGS arrived. */
  private startSession(socket: tls.TLSSocket, peer: string, timeoutMs: number): Promise<http2.ClientHttp2Session> {
    // Node's Http2Session reads maxSessionInvalidFrames for client sessions too; @types/node
    // declares it on server options only.
    const options: http2.ClientSessionOptions & { maxSessionInvalidFrames: number } = {
      createConnection: () => socket,
      settings: {
        enablePush: false,
        initialWindowSize: this.options.streamWindow,
        maxFrameSize: this.options.maxFrameSize,
        maxHeaderListSize: MAX_HEADER_LIST_SIZE,
      },
      peerMaxConcurrentStreams: this.options.maxStreamsPerConnection,
      maxSessionInvalidFrames: this.options.maxSessionInvalidFrames,
    };
    const session = http2.connect(`https://${peer}`, options);
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        session.destroy();
        reject(err);
      };
      const timer = setTimeout(
        () => fail(new HboneStreamError(`no HTTP/2 SETTINGS from ${peer} within the handshake timeout`)),
        Math.max(1, timeoutMs),
      );
      // Stays attached: later errors close the session, which the pool sees as 'close'.
      session.on('error', (err: Error) => fail(new HboneStreamError(`HTTP/2 session with ${peer}: ${err.message}`, { cause: err })));
      session.once('close', () => fail(new HboneStreamError(`${peer} closed the HTTP/2 session before its SETTINGS`)));
      session.once('remoteSettings', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        // The connection window is not a SETTINGS parameter: only WINDOW_UPDATE on stream 0 raises it (RFC 9113 §6.9.2).
        session.setLocalWindowSize(this.options.connectionWindow);
        resolve(session);
      });
    });
  }

  /**
   * Send CONNECT on a slot checkout() reserved; the slot is given back when the stream closes.
   * Resolves with the answered stream, or with `refused` (why) when the peer refused it unprocessed,
   * having retired the tunnel; rejects on any other failure.
   */
  private connect(tunnel: Tunnel, request: HboneOpenRequest): Promise<{ stream: http2.ClientHttp2Stream } | { refused: string }> {
    const authority = hostPort(request.target.ip, request.target.port);
    const headers: http2.OutgoingHttpHeaders = {
      ':method': 'CONNECT',
      ':authority': authority,
      forwarded: request.headers.forwarded,
      traceparent: request.headers.traceparent,
    };
    if (request.headers.baggage !== undefined) headers.baggage = request.headers.baggage;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = tunnel.session.request(headers, { endStream: false });
    } catch (err) {
      this.release(tunnel);
      this.retire(tunnel, (err as Error).message);
      return Promise.reject(new HboneStreamError(`CONNECT ${authority}: ${(err as Error).message}`, { cause: err }));
    }
    stream.on('close', () => this.release(tunnel));
    // Errors after the response belong to whoever relays the stream; this keeps none unhandled.
    stream.on('error', () => undefined);
    this.log.debug({ tunnel: tunnel.id, authority }, 'hbone stream opened');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        stream.off('close', closed);
        this.counts.responseTimeouts += 1;
        const reason = `CONNECT ${authority}: no response within ${this.options.responseTimeoutMs} ms`;
        this.log.warn({ tunnel: tunnel.id, authority, streams: tunnel.streams }, 'hbone CONNECT response timed out; retiring the tunnel');
        this.retire(tunnel, reason);
        resetEnd(stream);
        reject(new HboneStreamError(reason));
      }, this.options.responseTimeoutMs);
      const closed = (): void => {
        clearTimeout(timer);
        if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) {
          this.retire(tunnel, 'stream refused (REFUSED_STREAM)');
          resolve({ refused: `CONNECT ${authority}: refused by the peer unprocessed (REFUSED_STREAM)` });
          return;
        }
        reject(new HboneStreamError(`CONNECT ${authority}: stream closed before a response (code ${stream.rstCode ?? 'none'})`));
      };
      stream.once('close', closed);
      stream.once('response', (response: http2.IncomingHttpHeaders) => {
        clearTimeout(timer);
        stream.off('close', closed);
        const status = Number(response[':status']);
        if (status === 200) {
          resolve({ stream });
          return;
        }
        resetEnd(stream);
        reject(new HboneStatusError(status, authority));
      });
    });
  }

  /**
   * Tear a tunnel down now. The TLS socket goes too: a session that was already closing (after a
   * GOAWAY) would otherwise wait for the peer to close the connection.
   */
  private destroy(tunnel: Tunnel): void {
    tunnel.retired = true;
    destroySession(tunnel.session, ABORT, tunnel.closeReason ?? 'tunnel destroyed');
    setImmediate(() => tunnel.socket.destroy());
  }

  stats(): HbonePoolStats[] {
    const out: HbonePoolStats[] = [];
    for (const list of this.tunnels.values()) {
      const { request } = list[0];
      out.push({
        sourcePod: request.sourcePod.uid,
        sourcePrincipal: request.sourcePrincipal,
        targetIp: request.target.ip,
        expectedPrincipal: request.expectedPrincipal,
        connections: list.map((t) => ({
          id: t.id,
          streams: t.streams,
          local: t.local,
          remote: t.remote,
          notAfter: new Date(t.notAfter).toISOString(),
        })),
      });
    }
    return out;
  }

  /** Backoffs of peers that failed since their last tunnel, and the pool's event counters. */
  peerStats(): HbonePeerStats {
    const now = Date.now();
    this.prunePeers(now);
    return {
      backoff: [...this.peers.values()].map((p) => ({
        targetIp: p.targetIp,
        expectedPrincipal: p.expectedPrincipal,
        failures: p.failures,
        lastFailure: p.lastFailure,
        backoffMs: p.backoffMs,
        retryAt: new Date(p.until).toISOString(),
        backingOff: now < p.until,
      })),
      counters: { ...this.counts },
    };
  }

  /** Close the tunnels of one source pod now (it was released: its namespace is going away). */
  closeSource(podUid: string): void {
    for (const list of [...this.tunnels.values()]) {
      for (const tunnel of list) {
        if (tunnel.request.sourcePod.uid !== podUid) continue;
        tunnel.closeReason ??= 'source pod removed';
        this.forget(tunnel);
        this.destroy(tunnel);
      }
    }
  }

  /**
   * Stop: no new opens, every tunnel destroyed now (their streams are reset, so relays see an
   * abort), dials in flight are destroyed when they land. Call after the proxy's drain so open
   * connections had their chance to finish.
   */
  close(): void {
    this.closed = true;
    for (const list of [...this.tunnels.values()]) {
      for (const tunnel of list) {
        tunnel.closeReason ??= 'pool closed';
        this.destroy(tunnel);
      }
    }
    this.tunnels.clear();
  }
}
