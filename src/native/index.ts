// Public surface of src/native: argument-checking wrappers over ferry.node (BPF objects, maps,
// links here; namespace-aware sockets and socket options in sockets.ts, pod routing in
// pod-routing.ts, descriptor passing over Unix sockets in unix-sockets.ts), its types, its error
// registry and the kernel probe.
// Arguments are validated here, before crossing into C++, so a mistake reads as a TypeError naming
// the argument rather than an EINVAL from the kernel.
import type { BpfLinkHandle, BpfMapHandle, BpfObjectHandle, LinkInfo, MapInfo } from './binding';
import { requireBuffer, requireFd, requireName, requirePath } from './arguments';
import { awaitNative, callNative, nativeBinding, NativeArgumentError } from './errors';

export type {
  BpfLinkHandle,
  BpfMapHandle,
  BpfObjectHandle,
  LinkInfo,
  ListenOptions,
  MapInfo,
  NativeBinding,
  NativeErrorShape,
  PeerCredentials,
  PodRoutingSpec,
  ProbeCheck,
  ProbeReport,
  ReceivedFrame,
  SocketInfo,
  SocketOptionValues,
  SocketSpec,
  SocketTuning,
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
export {
  closeFd,
  connectInNetns,
  connectSocketInNetns,
  fdOf,
  listenInNetns,
  netnsCookie,
  socketCookie,
  socketInNetns,
  socketMark,
  socketOptions,
  tuneSocket,
  type ConnectInNetnsOptions,
  type ConnectSocketInNetnsOptions,
  type ListenInNetnsOptions,
  type SocketInNetnsOptions,
} from './sockets';
export { configurePodRouting, POD_ROUTING_RULE_PRIORITY, type PodRoutingOptions } from './pod-routing';
export {
  MAX_FRAME_BYTES,
  MAX_FRAME_FDS,
  dupFd,
  peerCredentials,
  receiveFrame,
  sendFrame,
  socketInfo,
  unixConnect,
  unixListen,
} from './unix-sockets';

/** bpf_map_update_elem flags (include/uapi/linux/bpf.h). */
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

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

  /** The number of entries, walked on a libuv pool thread; for occupancy sampled off the event loop. */
  count(): Promise<number> {
    return awaitNative(callNative(() => this.#handle.count()));
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
