// The TypeScript face of native/ferry.node: the only file that loads the addon and the one place
// its interface is declared. Callers use src/native/index.ts, which validates arguments first.
import * as path from 'node:path';
import * as fs from 'node:fs';

/** A failed system call or libbpf call, as the addon reports it. */
export interface NativeErrorShape extends Error {
  errno: number;
  code: string; // 'EPERM', 'ENOENT', ... ('ENOSYS' etc. when libbpf returns a bare -errno)
  syscall: string; // 'bpf_object__load', 'setns', 'connect', ...
  log?: string; // libbpf output captured during the call (the verifier log when a load is rejected)
}

export interface ProbeCheck {
  name: string; // 'bpf_syscall', 'cgroup2', 'bpffs', 'btf', 'prog_cgroup_sock_addr', 'prog_sk_lookup', 'prog_sock_ops', 'map_sockhash', 'cap_bpf', 'cap_net_admin', 'cap_sys_admin', 'so_netns_cookie', 'ip_transparent', 'policy_routing'
  ok: boolean;
  detail: string; // what was found, or what is missing and why it matters
}

export interface ProbeReport {
  kernelRelease: string;
  checks: ProbeCheck[];
}

export interface MapInfo {
  name: string;
  type: number; // BPF_MAP_TYPE_*
  keySize: number;
  valueSize: number;
  maxEntries: number;
  id: number;
}

export interface BpfMapHandle {
  readonly info: MapInfo;
  /** Value for key, or null when absent (ENOENT). */
  lookup(key: Buffer): Buffer | null;
  /** flags: 0 BPF_ANY, 1 BPF_NOEXIST, 2 BPF_EXIST. */
  update(key: Buffer, value: Buffer, flags: number): void;
  /** Socket maps (SOCKMAP/SOCKHASH): store a socket by fd. */
  updateSocket(key: Buffer, fd: number): void;
  /** true when an entry was deleted, false when there was none. */
  delete(key: Buffer): boolean;
  /** Every key present, via bpf_map_get_next_key. */
  keys(): Buffer[];
  /** How many entries the map holds, counted on a worker thread (no keys are copied out). */
  count(): Promise<number>;
  pin(path: string): void;
  close(): void;
}

export interface LinkInfo {
  id: number;
  progId: number;
  type: number; // BPF_LINK_TYPE_*
  /** Cgroup id (cgroup links) or network namespace inode (netns links); 0 once detached. */
  target?: number;
  /** The link is still on its hook. A detached link keeps its id and pins but runs nowhere. */
  attached: boolean;
}

export interface BpfLinkHandle {
  readonly info: LinkInfo;
  pin(path: string): void;
  /** Remove the pin; the link stays attached while this handle or another pin holds it. */
  unpin(): void;
  /** Replace the attached program, keeping the attachment (bpf_link_update). */
  updateProgram(program: BpfObjectHandle, programName: string): void;
  /** Detach from the hook now, even if pinned elsewhere (bpf_link_detach). */
  detach(): void;
  close(): void;
}

export interface BpfObjectHandle {
  readonly programs: string[]; // names of programs in the object
  readonly maps: string[]; // names of maps in the object (without .rodata/.bss etc.)
  map(name: string): BpfMapHandle;
  /** Attach a cgroup program (its section gives the attach type) to the cgroup v2 directory. */
  attachCgroup(programName: string, cgroupPath: string): Promise<BpfLinkHandle>;
  /** Attach an sk_lookup program to the network namespace at netnsPath (/run/netns/NAME or /proc/PID/ns/net). */
  attachNetns(programName: string, netnsPath: string): Promise<BpfLinkHandle>;
  close(): void;
}

export interface ListenOptions {
  family: 4 | 6;
  host: string;
  port: number;
  backlog: number;
  mark: number;
  v6Only: boolean;
}

/** socketInNetns, filled in by src/native. */
export interface SocketSpec {
  family: 4 | 6;
  /** SO_MARK; 0 leaves the socket unmarked. */
  mark: number;
  /** IP_TRANSPARENT (IPv4) or IPV6_TRANSPARENT (IPv6): bindHost may be an address not local to the namespace. */
  transparent: boolean;
  /** bind(bindHost, 0) with IP_BIND_ADDRESS_NO_PORT; absent: not bound (connect picks the source). */
  bindHost?: string;
  /** With bindHost: bind to this port (with SO_REUSEADDR) instead; 0: the kernel picks at connect. */
  bindPort: number;
}

/** tuneSocket: each field given is set, each absent one left alone. */
export interface SocketTuning {
  /** TCP_KEEPIDLE, 1..32767 s; any keepalive field also turns SO_KEEPALIVE on. */
  keepAliveIdleSeconds?: number;
  /** TCP_KEEPINTVL, 1..32767 s. */
  keepAliveIntervalSeconds?: number;
  /** TCP_KEEPCNT, 1..127 probes. */
  keepAliveCount?: number;
  /** TCP_USER_TIMEOUT, ms; 0 is the kernel's default. */
  userTimeoutMs?: number;
  /** SO_LINGER {on, 0} when true (close sends RST), {off} when false. */
  lingerZero?: boolean;
}

/** socketOptions: what getsockopt(2) reports for everything tuneSocket sets. */
export interface SocketOptionValues {
  keepAlive: boolean;
  keepAliveIdleSeconds: number;
  keepAliveIntervalSeconds: number;
  keepAliveCount: number;
  userTimeoutMs: number;
  linger: { on: boolean; seconds: number };
}

/** configurePodRouting, filled in by src/native (priority is POD_ROUTING_RULE_PRIORITY). */
export interface PodRoutingSpec {
  mark: number;
  table: number;
  priority: number;
  families: Array<4 | 6>;
  enable: boolean;
}

/** SO_PEERCRED: who holds the other end of a Unix socket (the kernel fills it in at connect or listen). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** One frame read by receiveFrame, with the descriptors it carried (close-on-exec, now the caller's). */
export interface ReceivedFrame {
  payload: Buffer;
  fds: number[];
}

/** socketInfo: what the kernel says a descriptor is. */
export interface SocketInfo {
  /** 4, 6, 0 for AF_UNIX, or minus the address family number for anything else. */
  family: number;
  stream: boolean;
  tcp: boolean;
  /** SO_ACCEPTCONN: listen(2) was called on it. */
  listening: boolean;
  /** The bound address ('' for a family other than IPv4/IPv6) and port. */
  host: string;
  port: number;
  netnsCookie: bigint;
}

export interface NativeBinding {
  probe(): ProbeReport;
  /** Open and load a BPF object; maps declared with LIBBPF_PIN_BY_NAME are pinned under (or reused from) pinRoot. */
  loadObject(objectPath: string, pinRoot: string): Promise<BpfObjectHandle>;
  /** bpf_obj_get on a pinned map. */
  openPinnedMap(pinPath: string): BpfMapHandle;
  /** bpf_link__open on a pinned link, or null when nothing is pinned there. */
  openPinnedLink(pinPath: string): BpfLinkHandle | null;
  /** A listening TCP socket created inside the network namespace at netnsPath: its fd, for net.Server.listen({ fd }). */
  listenInNetns(netnsPath: string, options: ListenOptions): Promise<{ fd: number; netnsCookie: bigint }>;
  /** An unconnected, non-blocking TCP socket created inside netnsPath, marked, optionally transparent and bound: its fd. */
  socketInNetns(netnsPath: string, spec: SocketSpec): Promise<number>;
  /** Inside netnsPath, over rtnetlink: the fwmark rule and local route of a transparent proxy's reply path, and tcp_fwmark_accept=1. */
  configurePodRouting(netnsPath: string, spec: PodRoutingSpec): Promise<void>;
  /** SO_NETNS_COOKIE of the namespace at netnsPath. */
  netnsCookie(netnsPath: string): Promise<bigint>;
  /** SO_COOKIE of a socket. */
  socketCookie(fd: number): bigint;
  /** SO_MARK of a socket. */
  socketMark(fd: number): number;
  /** setsockopt(2) of the keepalive, user-timeout and linger options given. */
  tuneSocket(fd: number, tuning: SocketTuning): void;
  /** getsockopt(2) of everything tuneSocket sets. */
  socketOptions(fd: number): SocketOptionValues;
  /** fcntl(F_DUPFD_CLOEXEC): a second fd on the same socket. */
  dupFd(fd: number): number;
  closeFd(fd: number): void;
  /** A listening AF_UNIX stream socket at path (which must not exist), created with exactly `mode`: its fd. */
  unixListen(path: string, mode: number): number;
  /** A connected AF_UNIX stream socket to path, and the listener's SO_PEERCRED. */
  unixConnect(path: string): PeerCredentials & { fd: number };
  /** SO_PEERCRED of a connected Unix socket. */
  peerCredentials(fd: number): PeerCredentials;
  /** One length-prefixed frame with fds attached (SCM_RIGHTS), on a pool thread. */
  sendFrame(fd: number, payload: Buffer, fds: number[], timeoutMs: number): Promise<void>;
  /** The next frame and its fds, or null at a clean end of stream, on a pool thread. */
  receiveFrame(fd: number, timeoutMs: number): Promise<ReceivedFrame | null>;
  /** Family, type, listening state, bound address and network namespace cookie of a socket fd. */
  socketInfo(fd: number): SocketInfo;
}

let cached: NativeBinding | undefined;

/** Paths tried in order: a node-gyp Release build, then Debug. */
export function addonPath(): string {
  const root = path.resolve(__dirname, '..', '..', '..');
  const candidates = [
    path.join(root, 'native', 'build', 'Release', 'ferry.node'),
    path.join(root, 'native', 'build', 'Debug', 'ferry.node'),
  ];
  for (const candidate of candidates) {
    if (fs.existsSync(candidate)) return candidate;
  }
  return candidates[0];
}

export function loadBinding(): NativeBinding {
  if (cached) return cached;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  cached = require(addonPath()) as NativeBinding;
  return cached;
}
