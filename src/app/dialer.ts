// The proxy's Dialer and SocketOptions over the native addon: marked sockets made inside a pod's
// namespace and connected on the event loop, deliveries from the real client's address, and the
// keepalive and linger settings the proxy gives each socket by its role.
import type * as net from 'node:net';
import * as native from '../native';
import { DELIVERY, SOCKET_MARK } from '../config';
import type { Dialer, DialOptions, SocketAddress, SocketOptions } from '../proxy';
import type { Logger } from '../telemetry';

export interface KeepaliveSettings {
  /** Idle seconds before the first probe. */
  idleSeconds: number;
  intervalSeconds: number;
  count: number;
}

/** Probes 10 s apart, 6 of them: a peer that vanished is noticed idle + 60 s later. */
export function keepaliveSettings(idleSeconds: number): KeepaliveSettings {
  return { idleSeconds, intervalSeconds: 10, count: 6 };
}

/**
 * Only the socket is made on a libuv pool thread (setns + socket(2) + bind take microseconds); the
 * connect waits on the event loop, so a destination that drops SYNs holds no thread, and however
 * many of them there are, other pods' dials go on.
 */
export function netnsDialer(timeoutMs: number): Dialer {
  return {
    async dial(netnsPath: string, to: SocketAddress, options?: DialOptions): Promise<net.Socket> {
      const socket = await native.connectSocketInNetns(netnsPath, {
        family: to.family,
        host: to.ip,
        port: to.port,
        timeoutMs,
        ...(options?.sourceIp !== undefined
          ? { mark: DELIVERY.mark, transparent: true, sourceHost: options.sourceIp, sourcePort: options.sourcePort ?? 0 }
          : { mark: SOCKET_MARK }),
      });
      return socket;
    },
  };
}

type Tune = (socket: net.Socket, options: { keepalive: boolean; lingerZero?: boolean }) => void;

/**
 * keepalive + TCP_USER_TIMEOUT. The user timeout bounds how long sent data may go unacknowledged
 * before the kernel drops the connection (tcp(7)) — keepalive alone never fires while data is in
 * flight — and, set to the keepalive budget, also ends a connection whose probes go unanswered.
 */
function keepaliveTuner(k: KeepaliveSettings, log: Logger): Tune {
  const userTimeoutMs = (k.idleSeconds + k.intervalSeconds * k.count) * 1000;
  return (socket, { keepalive, lingerZero }) => {
    try {
      native.tuneSocket(native.fdOf(socket), {
        ...(keepalive
          ? { keepAliveIdleSeconds: k.idleSeconds, keepAliveIntervalSeconds: k.intervalSeconds, keepAliveCount: k.count, userTimeoutMs }
          : {}),
        ...(lingerZero === undefined ? {} : { lingerZero }),
      });
    } catch (err) {
      // A socket closed meanwhile has no fd; anything else is worth a line.
      if (!socket.destroyed) log.debug({ err }, 'could not set socket options');
    }
  };
}

export function socketOptions(keepalive: KeepaliveSettings, log: Logger): SocketOptions {
  const tune = keepaliveTuner(keepalive, log);
  return {
    relayed: (socket) => tune(socket, { keepalive: true, lingerZero: true }),
    finished: (socket) => tune(socket, { keepalive: false, lingerZero: false }),
    tunnel: (socket) => tune(socket, { keepalive: true }),
  };
}
