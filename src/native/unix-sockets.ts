// Unix sockets that carry file descriptors (SCM_RIGHTS, unix(7)) — what Node's net module cannot do
// outside its own child-process IPC channel — and what a received descriptor really is. The agent's
// hand-over of its listening sockets to its successor is built on these.
import type { PeerCredentials, ReceivedFrame, SocketInfo } from './binding';
import { MAX_INT32, requireFd, requireInteger, requirePath } from './arguments';
import { awaitNative, callNative, nativeBinding, NativeArgumentError } from './errors';

/** The largest frame payload either side accepts; a larger length prefix is garbage. */
export const MAX_FRAME_BYTES = 64 * 1024;
/** Descriptors one frame may carry. */
export const MAX_FRAME_FDS = 16;
/** sockaddr_un.sun_path holds 108 bytes, the terminating NUL included. */
const MAX_UNIX_PATH_BYTES = 107;

function requireUnixPath(call: string, path: unknown): string {
  requirePath(call, 'path', path);
  const text = path as string;
  if (!text.startsWith('/')) throw new NativeArgumentError(call, 'path', 'an absolute path', text);
  if (Buffer.byteLength(text) > MAX_UNIX_PATH_BYTES) {
    throw new NativeArgumentError(call, 'path', `at most ${MAX_UNIX_PATH_BYTES} bytes (a Unix socket address)`, text);
  }
  return text;
}

function requireTimeout(call: string, value: unknown): number {
  return requireInteger(call, 'timeoutMs', value, 1, 600_000);
}

/**
 * A listening Unix stream socket bound at `path` with exactly `mode` (0o600: its owner only), for
 * `net.Server.listen({ fd })`. The path must not exist (remove a stale socket first); its directory
 * decides who can reach it at all.
 */
export function unixListen(path: string, mode: number): number {
  const call = 'unixListen';
  requireUnixPath(call, path);
  requireInteger(call, 'mode', mode, 0, 0o777);
  const binding = nativeBinding();
  return callNative(() => binding.unixListen(path, mode));
}

/**
 * Connect to the Unix stream socket at `path`: the fd (non-blocking, close-on-exec) and the
 * listener's credentials as the kernel recorded them. Fails at once with ENOENT (nothing there),
 * ECONNREFUSED (a socket file nobody listens on) or EAGAIN (its backlog is full).
 */
export function unixConnect(path: string): PeerCredentials & { fd: number } {
  requireUnixPath('unixConnect', path);
  const binding = nativeBinding();
  return callNative(() => binding.unixConnect(path));
}

/** SO_PEERCRED of a connected Unix socket: the peer's pid, uid and gid when it connected. */
export function peerCredentials(fd: number): PeerCredentials {
  requireFd('peerCredentials', 'fd', fd);
  const binding = nativeBinding();
  return callNative(() => binding.peerCredentials(fd));
}

/**
 * Send one frame (a 4-byte big-endian length, then `payload`) with `fds` attached to its first
 * byte, on a libuv pool thread that waits at most `timeoutMs` for room in the socket buffer. The
 * fds stay open here (the receiver gets duplicates); `fd` and `fds` must stay open until the
 * promise settles — pass a dup of a socket Node owns, so a close by Node cannot hand the number to
 * another file meanwhile.
 */
export async function sendFrame(fd: number, payload: Buffer, fds: readonly number[], timeoutMs: number): Promise<void> {
  const call = 'sendFrame';
  requireFd(call, 'fd', fd);
  if (!Buffer.isBuffer(payload) || payload.length > MAX_FRAME_BYTES) {
    throw new NativeArgumentError(call, 'payload', `a Buffer of at most ${MAX_FRAME_BYTES} bytes`, payload);
  }
  if (!Array.isArray(fds) || fds.length > MAX_FRAME_FDS) {
    throw new NativeArgumentError(call, 'fds', `an array of at most ${MAX_FRAME_FDS} fds`, fds);
  }
  fds.forEach((value, i) => {
    requireInteger(call, `fds[${i}]`, value, 0, MAX_INT32);
  });
  requireTimeout(call, timeoutMs);
  const binding = nativeBinding();
  return awaitNative(binding.sendFrame(fd, payload, [...fds], timeoutMs));
}

/**
 * The next frame on `fd` and the descriptors that came with it (close-on-exec, now the caller's to
 * adopt or close), or null when the peer closed at a frame boundary. Waits at most `timeoutMs`
 * (ETIMEDOUT). A frame over MAX_FRAME_BYTES (EMSGSIZE), over MAX_FRAME_FDS descriptors (EMSGSIZE)
 * or cut short by the peer (EPROTO) fails, its descriptors closed.
 */
export async function receiveFrame(fd: number, timeoutMs: number): Promise<ReceivedFrame | null> {
  const call = 'receiveFrame';
  requireFd(call, 'fd', fd);
  requireTimeout(call, timeoutMs);
  const binding = nativeBinding();
  return awaitNative(binding.receiveFrame(fd, timeoutMs));
}

/** What the kernel says `fd` is: family, TCP or not, listening or not, bound address, network namespace. */
export function socketInfo(fd: number): SocketInfo {
  requireFd('socketInfo', 'fd', fd);
  const binding = nativeBinding();
  return callNative(() => binding.socketInfo(fd));
}

/** fcntl(F_DUPFD_CLOEXEC): a second fd on the same open file. */
export function dupFd(fd: number): number {
  requireFd('dupFd', 'fd', fd);
  const binding = nativeBinding();
  return callNative(() => binding.dupFd(fd));
}
