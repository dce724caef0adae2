// Sockets in other network namespaces and options of sockets Node owns: listeners, dials that wait
// on the event loop rather than on a pool thread, keepalive / user timeout / linger, cookies, marks.
import * as net from 'node:net';
import { getSystemErrorMap } from 'node:util';

import type { ListenOptions, SocketOptionValues, SocketSpec, SocketTuning } from './binding';
import {
  MAX_INT32,
  MAX_UINT32,
  requireAddress,
  requireAddressOf,
  requireBoolean,
  requireFd,
  requireInteger,
  requireObject,
  requirePath,
  requirePort,
} from './arguments';
import { awaitNative, callNative, nativeBinding, NativeArgumentError, NativeError } from './errors';

/** libuv's default listen backlog (and Node's), used when listenInNetns is not given one. */
const DEFAULT_BACKLOG = 511;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** errno of ETIMEDOUT on Linux (asm-generic/errno.h). */
const ETIMEDOUT = 110;

// ---- fds under Node sockets ------------------------------------------------------------------

/** The part of a net.Socket / net.Server libuv handle we read: its fd (Linux, -1 when none). */
interface HandleWithFd {
  _handle?: { fd?: unknown } | null;
}

/**
 * The OS fd under a net.Socket or net.Server. Node keeps it on the undocumented `_handle.fd`
 * (libuv's uv_fileno); the cast is narrowed to exactly that field. Throws when the object has no
 * open handle (not yet connected/listening, or destroyed).
 */
export function fdOf(socket: net.Socket | net.Server): number {
  const fd = (socket as unknown as HandleWithFd)._handle?.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    throw new NativeArgumentError(
      'fdOf',
      'socket._handle.fd',
      'a non-negative integer fd (the socket must be open: connected, or listening for a server)',
      fd,
    );
  }
  return fd;
}

// ---- sockets in other network namespaces ----------------------------------------------------

/** listenInNetns options; family is inferred from host when omitted. */
export interface ListenInNetnsOptions {
  host: string;
  port: number;
  family?: 4 | 6;
  /** Default 511, as Node's server.listen. */
  backlog?: number;
  /** SO_MARK; 0 (the default) leaves the socket unmarked. */
  mark?: number;
  /** IPV6_V6ONLY, set explicitly either way for IPv6 sockets. Default false. */
  v6Only?: boolean;
}

/** socketInNetns options. */
export interface SocketInNetnsOptions {
  family: 4 | 6;
  /** SO_MARK; 0 (the default) leaves the socket unmarked. */
  mark?: number;
  /**
   * IP_TRANSPARENT / IPV6_TRANSPARENT, so bindHost may be an address that is not local to the
   * namespace (the real client's). Needs CAP_NET_ADMIN or CAP_NET_RAW and bindHost. Default false.
   */
  transparent?: boolean;
  /** Source address: bind(bindHost, 0) with IP_BIND_ADDRESS_NO_PORT. Omitted: not bound. */
  bindHost?: string;
  /** With bindHost: this source port instead of the kernel's choice (SO_REUSEADDR, not IP_BIND_ADDRESS_NO_PORT). */
  bindPort?: number;
}

/** connectSocketInNetns / connectInNetns options; family is inferred from host when omitted. */
export interface ConnectSocketInNetnsOptions {
  host: string;
  port: number;
  family?: 4 | 6;
  /** SO_MARK, set before connect so the first SYN carries it; default 0 (unmarked). */
  mark?: number;
  /** Bound on the connect; default 10 s. Expiry destroys the socket and rejects with ETIMEDOUT. */
  timeoutMs?: number;
  /** Connect from sourceHost even though it is not local to the namespace (see SocketInNetnsOptions). */
  transparent?: boolean;
  /** Source address to bind (port 0); required when transparent. */
  sourceHost?: string;
  /** With sourceHost: the source port (the caller's choice of 4-tuple); default: the kernel's. */
  sourcePort?: number;
}

/** The former name of connectSocketInNetns's options, for connectInNetns callers. */
export type ConnectInNetnsOptions = ConnectSocketInNetnsOptions;

/** What listenInNetns and the dials both take: the namespace, an address, a port and a mark. */
function socketTarget(
  call: string,
  netnsPath: string,
  given: Record<string, unknown>,
): { family: 4 | 6; host: string; port: number; mark: number } {
  requirePath(call, 'netnsPath', netnsPath);
  return {
    ...requireAddress(call, given),
    port: requirePort(call, 'options.port', given.port),
    mark: requireInteger(call, 'options.mark', given.mark ?? 0, 0, MAX_UINT32),
  };
}

/** transparent and its source address, checked together: a transparent socket must be bound. */
function sourceSpec(
  call: string,
  given: Record<string, unknown>,
  family: 4 | 6,
  hostField: 'bindHost' | 'sourceHost',
): Pick<SocketSpec, 'transparent' | 'bindHost' | 'bindPort'> {
  const transparent = requireBoolean(call, 'options.transparent', given.transparent ?? false);
  const host = given[hostField];
  const portField = hostField === 'bindHost' ? 'bindPort' : 'sourcePort';
  const bindPort = requireInteger(call, `options.${portField}`, given[portField] ?? 0, 0, 65535);
  if (bindPort !== 0 && host === undefined) {
    throw new NativeArgumentError(call, `options.${hostField}`, `an IPv${family} address (options.${portField} needs one)`, host);
  }
  if (host === undefined) {
    if (transparent) {
      throw new NativeArgumentError(
        call,
        `options.${hostField}`,
        `an IPv${family} address (the source to bind; required when options.transparent is true)`,
        host,
      );
    }
    return { transparent, bindPort };
  }
  return { transparent, bindHost: requireAddressOf(call, `options.${hostField}`, host, family), bindPort };
}

/**
 * A listening TCP socket created inside the network namespace at netnsPath (/run/netns/NAME or
 * /proc/PID/ns/net), for `net.Server.listen({ fd })`, with that namespace's SO_NETNS_COOKIE.
 * Node calls listen(2) again when adopting the fd, with its own backlog (511 unless
 * `server.listen({ fd, backlog })` is given), which replaces the one set here.
 * Sockets accepted from it inherit its SO_MARK (the kernel clones the listener).
 */
export async function listenInNetns(netnsPath: string, options: ListenInNetnsOptions): Promise<{ fd: number; netnsCookie: bigint }> {
  const call = 'listenInNetns';
  const given = requireObject(call, 'options', options);
  const filled: ListenOptions = {
    ...socketTarget(call, netnsPath, given),
    backlog: requireInteger(call, 'options.backlog', given.backlog ?? DEFAULT_BACKLOG, 0, 65535),
    v6Only: requireBoolean(call, 'options.v6Only', given.v6Only ?? false),
  };
  const binding = nativeBinding();
  return awaitNative(binding.listenInNetns(netnsPath, filled));
}

/**
 * An unconnected TCP socket (O_NONBLOCK, O_CLOEXEC) created inside the namespace at netnsPath on
 * a pool thread that enters it only for socket(2): marked, and when transparent bound to bindHost,
 * which may belong to no interface there. Adopt it with `new net.Socket({ fd, allowHalfOpen: true })`
 * and call `socket.connect(port, host)` in the same tick: libuv then waits for the connect on the
 * event loop, so a destination that drops SYNs holds no thread. connectSocketInNetns does all that.
 */
export async function socketInNetns(netnsPath: string, options: SocketInNetnsOptions): Promise<number> {
  const call = 'socketInNetns';
  requirePath(call, 'netnsPath', netnsPath);
  const given = requireObject(call, 'options', options);
  if (given.family !== 4 && given.family !== 6) throw new NativeArgumentError(call, 'options.family', '4 or 6', given.family);
  const family = given.family;
  const spec: SocketSpec = {
    family,
    mark: requireInteger(call, 'options.mark', given.mark ?? 0, 0, MAX_UINT32),
    ...sourceSpec(call, given, family, 'bindHost'),
  };
  const binding = nativeBinding();
  return awaitNative(binding.socketInNetns(netnsPath, spec));
}

/**
 * A TCP connection made from inside the namespace at netnsPath: socketInNetns, adopted by a
 * net.Socket (allowHalfOpen, as a relay needs) and connected by libuv, so no pool thread waits
 * on the network. Resolves once connected. Rejects with a NativeError (syscall 'connect'):
 * ETIMEDOUT after timeoutMs, naming the destination and the namespace (the socket is destroyed);
 * the kernel's code otherwise (ECONNREFUSED, EHOSTUNREACH, ENETUNREACH...).
 */
export async function connectSocketInNetns(netnsPath: string, options: ConnectSocketInNetnsOptions): Promise<net.Socket> {
  return dial('connectSocketInNetns', netnsPath, options);
}

/**
 * connectSocketInNetns for callers that want the fd: a duplicate (F_DUPFD_CLOEXEC) of the
 * connected socket's fd, for `new net.Socket({ fd, readable: true, writable: true })`; the
 * socket that made the connection is destroyed, which closes only its own fd. Failures as
 * connectSocketInNetns.
 */
export async function connectInNetns(netnsPath: string, options: ConnectInNetnsOptions): Promise<number> {
  const socket = await dial('connectInNetns', netnsPath, options);
  try {
    // Synchronous with the resolution: nothing has been read from the socket yet (libuv reads on
    // a later loop iteration), so no byte the peer sent first is lost to the discarded socket.
    const fd = fdOf(socket);
    const binding = nativeBinding();
    return callNative(() => binding.dupFd(fd));
  } finally {
    socket.destroy();
  }
}

async function dial(call: string, netnsPath: string, options: ConnectSocketInNetnsOptions): Promise<net.Socket> {
  const given = requireObject(call, 'options', options);
  const target = socketTarget(call, netnsPath, given);
  const timeoutMs = requireInteger(call, 'options.timeoutMs', given.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, 1, MAX_INT32);
  const spec: SocketSpec = { family: target.family, mark: target.mark, ...sourceSpec(call, given, target.family, 'sourceHost') };
  const binding = nativeBinding();
  const fd = await awaitNative(binding.socketInNetns(netnsPath, spec));
  const authority = target.family === 6 ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
  return connectAdopted(fd, target.host, target.port, timeoutMs, `${authority} in ${netnsPath}`);
}

/**
 * Adopts the unconnected fd and connects it. Construction and connect() happen in one tick: an
 * adopted socket that is neither connected nor connecting would report EPOLLHUP to libuv.
 */
function connectAdopted(fd: number, host: string, port: number, timeoutMs: number, where: string): Promise<net.Socket> {
  let socket: net.Socket;
  try {
    socket = new net.Socket({ fd, allowHalfOpen: true });
  } catch (error) {
    nativeBinding().closeFd(fd);
    throw error;
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      fail(
        new NativeError(`connect: ${systemMessage(ETIMEDOUT)} (${where}: no answer within ${timeoutMs} ms)`, {
          errno: ETIMEDOUT,
          code: 'ETIMEDOUT',
          syscall: 'connect',
        }),
      );
    }, timeoutMs);
    function onConnect(): void {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    }
    function onError(error: NodeJS.ErrnoException): void {
      fail(fromConnectError(error, where));
    }
    // A failed socket keeps a no-op 'error' listener: it is destroyed and never handed out, and a
    // late error must not become an uncaught exception.
    function fail(error: NativeError): void {
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.off('error', onError);
      socket.on('error', () => undefined);
      socket.destroy();
      reject(error);
    }
    socket.once('connect', onConnect);
    socket.once('error', onError);
    socket.connect(port, host);
  });
}

/** Node's connect error (negative errno, libuv message) in the addon's NativeError shape. */
function fromConnectError(error: NodeJS.ErrnoException, where: string): NativeError {
  const errno = typeof error.errno === 'number' ? Math.abs(error.errno) : 0;
  const code = error.code ?? 'EIO';
  const syscall = error.syscall ?? 'connect';
  const text = errno !== 0 ? systemMessage(errno) : error.message;
  return new NativeError(`${syscall}: ${text} (${where})`, { errno, code, syscall }, { cause: error });
}

/** libuv's text for an errno ("connection refused"), capitalised like strerror(3). */
function systemMessage(errno: number): string {
  const text = getSystemErrorMap().get(-errno)?.[1] ?? `errno ${errno}`;
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** SO_NETNS_COOKIE of the network namespace at netnsPath: the id BPF programs see for it. */
export async function netnsCookie(netnsPath: string): Promise<bigint> {
  requirePath('netnsCookie', 'netnsPath', netnsPath);
  const binding = nativeBinding();
  return awaitNative(binding.netnsCookie(netnsPath));
}

// ---- options of sockets Node owns -----------------------------------------------------------

/**
 * Sets the TCP keepalive, user timeout and linger options given (see SocketTuning), leaving the
 * others untouched; synchronous (setsockopt is quick). A failing setsockopt throws a NativeError
 * and leaves the options before it applied.
 */
export function tuneSocket(fd: number, tuning: SocketTuning): void {
  const call = 'tuneSocket';
  requireFd(call, 'fd', fd);
  const given = requireObject(call, 'options', tuning);
  const filled: SocketTuning = {};
  const integer = (field: keyof SocketTuning, min: number, max: number): void => {
    if (given[field] !== undefined)
      (filled as Record<string, number>)[field] = requireInteger(call, `options.${field}`, given[field], min, max);
  };
  // The kernel's limits (tcp(7)): MAX_TCP_KEEPIDLE / MAX_TCP_KEEPINTVL 32767 s, MAX_TCP_KEEPCNT 127.
  integer('keepAliveIdleSeconds', 1, 32767);
  integer('keepAliveIntervalSeconds', 1, 32767);
  integer('keepAliveCount', 1, 127);
  integer('userTimeoutMs', 0, MAX_INT32);
  if (given.lingerZero !== undefined) filled.lingerZero = requireBoolean(call, 'options.lingerZero', given.lingerZero);
  const binding = nativeBinding();
  callNative(() => binding.tuneSocket(fd, filled));
}

/** What getsockopt(2) reports for every option tuneSocket sets. */
export function socketOptions(fd: number): SocketOptionValues {
  requireFd('socketOptions', 'fd', fd);
  const binding = nativeBinding();
  return callNative(() => binding.socketOptions(fd));
}

/** SO_COOKIE of a socket fd (see fdOf for a net.Socket). */
export function socketCookie(fd: number): bigint {
  requireFd('socketCookie', 'fd', fd);
  const binding = nativeBinding();
  return callNative(() => binding.socketCookie(fd));
}

/** SO_MARK of a socket fd. */
export function socketMark(fd: number): number {
  requireFd('socketMark', 'fd', fd);
  const binding = nativeBinding();
  return callNative(() => binding.socketMark(fd));
}

/** close(2) an fd nothing in Node has adopted (e.g. after a failed net.Server.listen({ fd })). */
export function closeFd(fd: number): void {
  requireFd('closeFd', 'fd', fd);
  const binding = nativeBinding();
  callNative(() => binding.closeFd(fd));
}
