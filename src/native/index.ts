// Public surface of src/native: argument-checking wrappers over ferry.node (BPF objects, maps,
// links, namespace-aware sockets), its types, its error registry and the kernel probe.
// Arguments are validated here, before crossing into C++, so a mistake reads as a TypeError naming
// the argument rather than an EINVAL from the kernel.
import * as net from 'node:net';

import type {
  BpfLinkHandle,
  BpfMapHandle,
  BpfObjectHandle,
  ConnectOptions,
  LinkInfo,
  ListenOptions,
  MapInfo,
} from './binding';
import { awaitNative, callNative, nativeBinding, NativeArgumentError } from './errors';

export type {
  BpfLinkHandle,
  BpfMapHandle,
  BpfObjectHandle,
  ConnectOptions,
  LinkInfo,
  ListenOptions,
  MapInfo,
  NativeBinding,
  NativeErrorShape,
  ProbeCheck,
  ProbeReport,
} from './binding';
export {
  NATIVE_ERROR_CODES,
  NativeArgumentError,
  NativeError,
  NativeLoadError,
  NativeUnsupportedError,
  isNativeError,
  type NativeErrorCode,
} from './errors';
export { assertKernelReady, probeKernel } from './probe';

/** bpf_map_update_elem flags (include/uapi/linux/bpf.h). */
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

/** libuv's default listen backlog (and Node's), used when listenInNetns is not given one. */
const DEFAULT_BACKLOG = 511;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const MAX_UINT32 = 0xffff_ffff;
const MAX_INT32 = 0x7fff_ffff;

// ---- argument checks ------------------------------------------------------------------------

function requirePath(call: string, argument: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.includes('\0')) {
    throw new NativeArgumentError(call, argument, 'a non-empty path string without NUL bytes', value);
  }
  return value;
}

function requireName(call: string, argument: string, value: unknown, known: readonly string[], owner: string): string {
  if (typeof value !== 'string' || !known.includes(value)) {
    throw new NativeArgumentError(call, argument, `one of the ${owner} [${known.join(', ')}]`, value);
  }
  return value;
}

function requireInteger(call: string, argument: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new NativeArgumentError(call, argument, `an integer in ${min}..${max}`, value);
  }
  return value;
}

function requirePort(call: string, argument: string, value: unknown): number {
  return requireInteger(call, argument, value, 1, 65535);
}

function requireFd(call: string, argument: string, value: unknown): number {
  return requireInteger(call, argument, value, 0, MAX_INT32);
}

function requireBoolean(call: string, argument: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new NativeArgumentError(call, argument, 'a boolean', value);
  return value;
}

function requireBuffer(call: string, argument: string, value: unknown, size: number, map: string): Buffer {
  if (!Buffer.isBuffer(value) || value.length !== size) {
    throw new NativeArgumentError(call, argument, `a Buffer of exactly ${size} bytes (${argument}Size of map ${map})`, value);
  }
  return value;
}

function requireObject(call: string, argument: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null) throw new NativeArgumentError(call, argument, 'an object', value);
  return value as Record<string, unknown>;
}

/** family given or inferred from host; host must be an address of that family (no DNS here). */
function requireAddress(call: string, options: Record<string, unknown>): { family: 4 | 6; host: string } {
  const host = options.host;
  const detected = typeof host === 'string' ? net.isIP(host) : 0;
  if (options.family !== undefined && options.family !== 4 && options.family !== 6) {
    throw new NativeArgumentError(call, 'options.family', '4 or 6', options.family);
  }
  const family = options.family ?? detected;
  // A zone index (fe80::1%eth0) names an interface of the caller's namespace, not the target's.
  if (typeof host !== 'string' || detected === 0 || detected !== family || host.includes('%')) {
    const expected =
      family === 4 || family === 6
        ? `an IPv${family} address string without a zone index`
        : 'an IPv4 or IPv6 address string without a zone index';
    throw new NativeArgumentError(call, 'options.host', expected, host);
  }
  return { family: family as 4 | 6, host };
}

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

// ---- BPF objects, maps, links ---------------------------------------------------------------

/** Native handles behind our wrappers, so BpfLink.updateProgram can find a BpfObject's handle. */
const objectHandles = new WeakMap<BpfObject, BpfObjectHandle>();

/** A BPF map fd. Keys and values are checked against the map's keySize/valueSize before each call. */
export class BpfMap implements BpfMapHandle {
  readonly info: MapInfo;
  readonly #handle: BpfMapHandle;

  /** Use BpfObject.map() or openPinnedMap(). */
  constructor(handle: BpfMapHandle) {
    this.#handle = handle;
    this.info = callNative(() => handle.info);
  }

  lookup(key: Buffer): Buffer | null {
    this.#key('BpfMap.lookup', key);
    return callNative(() => this.#handle.lookup(key));
  }

  update(key: Buffer, value: Buffer, flags: number = BPF_ANY): void {
    const call = 'BpfMap.update';
    this.#key(call, key);
    requireBuffer(call, 'value', value, this.info.valueSize, this.info.name);
    if (flags !== BPF_ANY && flags !== BPF_NOEXIST && flags !== BPF_EXIST) {
      throw new NativeArgumentError(call, 'flags', '0 (BPF_ANY), 1 (BPF_NOEXIST) or 2 (BPF_EXIST)', flags);
    }
    callNative(() => this.#handle.update(key, value, flags));
  }

  updateSocket(key: Buffer, fd: number): void {
    const call = 'BpfMap.updateSocket';
    this.#key(call, key);
    requireFd(call, 'fd', fd);
    callNative(() => this.#handle.updateSocket(key, fd));
  }

  delete(key: Buffer): boolean {
    this.#key('BpfMap.delete', key);
    return callNative(() => this.#handle.delete(key));
  }

  keys(): Buffer[] {
    return callNative(() => this.#handle.keys());
  }

  pin(path: string): void {
    requirePath('BpfMap.pin', 'path', path);
    callNative(() => this.#handle.pin(path));
  }

  /** Closes this handle's fd; the map lives on while pinned or used by a loaded program. */
  close(): void {
    this.#handle.close();
  }

  #key(call: string, key: unknown): void {
    requireBuffer(call, 'key', key, this.info.keySize, this.info.name);
  }
}

/** A program's attachment to a hook. */
export class BpfLink implements BpfLinkHandle {
  readonly #handle: BpfLinkHandle;

  /** Use BpfObject.attachCgroup/attachNetns or openPinnedLink(). */
  constructor(handle: BpfLinkHandle) {
    this.#handle = handle;
  }

  /** Queried live: progId changes after updateProgram(). */
  get info(): LinkInfo {
    return callNative(() => this.#handle.info);
  }

  /** Pin under bpffs so the attachment outlives this process (missing parent dirs are created). */
  pin(path: string): void {
    requirePath('BpfLink.pin', 'path', path);
    callNative(() => this.#handle.pin(path));
  }

  unpin(): void {
    callNative(() => this.#handle.unpin());
  }

  updateProgram(program: BpfObjectHandle, programName: string): void {
    const call = 'BpfLink.updateProgram';
    if (!(program instanceof BpfObject)) {
      throw new NativeArgumentError(call, 'program', 'a BpfObject from loadObject()', program);
    }
    requireName(call, 'programName', programName, program.programs, 'programs of the object');
    const handle = objectHandles.get(program) as BpfObjectHandle;
    callNative(() => this.#handle.updateProgram(handle, programName));
  }

  detach(): void {
    callNative(() => this.#handle.detach());
  }

  /**
   * Drops this handle's fd. Never detaches a pinned link; an unpinned link is released by the
   * kernel when its last fd closes (bpf_link refcounting), so pin what must outlive the handle.
   */
  close(): void {
    this.#handle.close();
  }
}

/** A loaded BPF object file. */
export class BpfObject implements BpfObjectHandle {
  readonly programs: string[];
  readonly maps: string[];
  readonly #handle: BpfObjectHandle;

  /** Use loadObject(). */
  constructor(handle: BpfObjectHandle) {
    this.#handle = handle;
    this.programs = [...handle.programs];
    this.maps = [...handle.maps];
    objectHandles.set(this, handle);
  }

  map(name: string): BpfMap {
    requireName('BpfObject.map', 'name', name, this.maps, 'maps of the object');
    return new BpfMap(callNative(() => this.#handle.map(name)));
  }

  async attachCgroup(programName: string, cgroupPath: string): Promise<BpfLink> {
    const call = 'BpfObject.attachCgroup';
    requireName(call, 'programName', programName, this.programs, 'programs of the object');
    requirePath(call, 'cgroupPath', cgroupPath);
    return new BpfLink(await awaitNative(this.#handle.attachCgroup(programName, cgroupPath)));
  }

  async attachNetns(programName: string, netnsPath: string): Promise<BpfLink> {
    const call = 'BpfObject.attachNetns';
    requireName(call, 'programName', programName, this.programs, 'programs of the object');
    requirePath(call, 'netnsPath', netnsPath);
    return new BpfLink(await awaitNative(this.#handle.attachNetns(programName, netnsPath)));
  }

  /** Frees the object; maps and links already handed out stay valid (they hold their own fds). */
  close(): void {
    this.#handle.close();
  }
}

/**
 * Opens and loads a BPF object file on a worker thread. Maps declared with LIBBPF_PIN_BY_NAME
 * are reused from, or pinned under, pinRoot (created if missing). A verifier rejection rejects
 * with a NativeError whose message and `log` carry the verifier's output.
 */
export async function loadObject(objectPath: string, pinRoot: string): Promise<BpfObject> {
  requirePath('loadObject', 'objectPath', objectPath);
  requirePath('loadObject', 'pinRoot', pinRoot);
  const binding = nativeBinding();
  return new BpfObject(await awaitNative(binding.loadObject(objectPath, pinRoot)));
}

export function openPinnedMap(pinPath: string): BpfMap {
  requirePath('openPinnedMap', 'pinPath', pinPath);
  const binding = nativeBinding();
  return new BpfMap(callNative(() => binding.openPinnedMap(pinPath)));
}

/** The link pinned at pinPath, or null when nothing is pinned there. */
export function openPinnedLink(pinPath: string): BpfLink | null {
  requirePath('openPinnedLink', 'pinPath', pinPath);
  const binding = nativeBinding();
  const handle = callNative(() => binding.openPinnedLink(pinPath));
  return handle === null ? null : new BpfLink(handle);
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

/** connectInNetns options; family is inferred from host when omitted. */
export interface ConnectInNetnsOptions {
  host: string;
  port: number;
  family?: 4 | 6;
  mark?: number;
  /** Bound on the non-blocking connect; default 10 s. Expiry rejects with ETIMEDOUT. */
  timeoutMs?: number;
}

/** What listenInNetns and connectInNetns both take: the namespace, an address, a port and a mark. */
function socketTarget(
  call: string, netnsPath: string, given: Record<string, unknown>,
): { family: 4 | 6; host: string; port: number; mark: number } {
  requirePath(call, 'netnsPath', netnsPath);
  return {
    ...requireAddress(call, given),
    port: requirePort(call, 'options.port', given.port),
    mark: requireInteger(call, 'options.mark', given.mark ?? 0, 0, MAX_UINT32),
  };
}

/**
 * A listening TCP socket created inside the network namespace at netnsPath (/run/netns/NAME or
 * /proc/PID/ns/net), for `net.Server.listen({ fd })`, with that namespace's SO_NETNS_COOKIE.
 * Node calls listen(2) again when adopting the fd, with its own backlog (511 unless
 * `server.listen({ fd, backlog })` is given), which replaces the one set here.
 * Sockets accepted from it inherit its SO_MARK (the kernel clones the listener).
 */
export async function listenInNetns(
  netnsPath: string,
  options: ListenInNetnsOptions,
): Promise<{ fd: number; netnsCookie: bigint }> {
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
 * A TCP socket created inside netnsPath, marked, and connected; resolves to its fd for
 * `new net.Socket({ fd, readable: true, writable: true })`. Failures reject with a NativeError
 * whose syscall is 'connect' and code e.g. ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH.
 */
export async function connectInNetns(netnsPath: string, options: ConnectInNetnsOptions): Promise<number> {
  const call = 'connectInNetns';
  const given = requireObject(call, 'options', options);
  const filled: ConnectOptions = {
    ...socketTarget(call, netnsPath, given),
    timeoutMs: requireInteger(call, 'options.timeoutMs', given.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, 1, MAX_INT32),
  };
  const binding = nativeBinding();
  return awaitNative(binding.connectInNetns(netnsPath, filled));
}

/** SO_NETNS_COOKIE of the network namespace at netnsPath: the id BPF programs see for it. */
export async function netnsCookie(netnsPath: string): Promise<bigint> {
  requirePath('netnsCookie', 'netnsPath', netnsPath);
  const binding = nativeBinding();
  return awaitNative(binding.netnsCookie(netnsPath));
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
