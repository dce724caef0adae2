// The agent's settings, from command-line options with FERRY_* environment variables as fallback.
import * as path from 'node:path';
import { ConfigError } from './errors';

export interface AgentOptions {
  node?: string;
  controller?: string;
  controllerCa?: string;
  controllerServerName?: string;
  tokenFile?: string;
  pinDir?: string;
  cgroup?: string;
  bpfDir?: string;
  logLevel?: string;
  drainSeconds?: string;
  serviceLb?: boolean;
  trustDomain?: string;
  podNetnsDir?: string;
  handoverSocket?: string;
  certTtlSeconds?: string;
  /** commander's --no-hbone gives false. */
  hbone?: boolean;
  /** commander's --no-same-node-shortcut gives false. */
  sameNodeShortcut?: boolean;
  /** commander's --no-traffic-metrics gives false. */
  trafficMetrics?: boolean;
  maxConnectionsPerPod?: string;
  idleTimeoutSeconds?: string;
  maxHboneSessionsPerIdentity?: string;
  maxPendingHandshakesPerSource?: string;
  maxTunnelBufferBytes?: string;
  connectTimeoutSeconds?: string;
  tcpKeepaliveSeconds?: string;
  hboneKeepaliveSeconds?: string;
  hboneKeepaliveTimeoutSeconds?: string;
  mapSampleSeconds?: string;
}

/**
 * The agent's numeric limits and timers: flag, environment variable, default and range. One table,
 * so `ferry agent --help`, the parser and the README say the same (test/unit/config.test.ts).
 */
export const AGENT_LIMITS = {
  maxConnectionsPerPod: {
    flag: '--max-connections-per-pod',
    env: 'FERRY_MAX_CONNECTIONS_PER_POD',
    default: 4096,
    min: 1,
    max: 1_000_000,
    integer: true,
    help: 'open connections per pod (as source and destination); more are reset (response flag UO)',
  },
  idleTimeoutSeconds: {
    flag: '--idle-timeout-seconds',
    env: 'FERRY_IDLE_TIMEOUT_SECONDS',
    default: 0,
    min: 0,
    max: 7 * 24 * 3600,
    integer: false,
    help: 'reset relayed connections idle this long; 0: never (as Istio)',
  },
  maxHboneSessionsPerIdentity: {
    flag: '--max-hbone-sessions-per-identity',
    env: 'FERRY_MAX_HBONE_SESSIONS_PER_IDENTITY',
    default: 128,
    min: 1,
    max: 100_000,
    integer: true,
    help: 'inbound HBONE tunnels one peer identity may hold on this node',
  },
  maxPendingHandshakesPerSource: {
    flag: '--max-pending-handshakes-per-source',
    env: 'FERRY_MAX_PENDING_HANDSHAKES_PER_SOURCE',
    default: 32,
    min: 1,
    max: 100_000,
    integer: true,
    help: 'unfinished HBONE TLS handshakes per source address; beyond it the oldest is closed',
  },
  maxTunnelBufferBytes: {
    flag: '--max-tunnel-buffer-bytes',
    env: 'FERRY_MAX_TUNNEL_BUFFER_BYTES',
    default: 16 * 1024 * 1024,
    min: 8 * 1024 * 1024,
    max: 2 ** 31 - 1,
    integer: true,
    help: "bytes one HBONE tunnel may make the agent hold for slow readers (its 100 streams' windows together)",
  },
  connectTimeoutSeconds: {
    flag: '--connect-timeout-seconds',
    env: 'FERRY_CONNECT_TIMEOUT_SECONDS',
    default: 5,
    min: 0.1,
    max: 600,
    integer: false,
    help: 'how long a dial to an app, a peer or an unmeshed destination may take (response flag CONNECT)',
  },
  tcpKeepaliveSeconds: {
    flag: '--tcp-keepalive-seconds',
    env: 'FERRY_TCP_KEEPALIVE_SECONDS',
    default: 60,
    min: 1,
    max: 7200,
    integer: true,
    help: 'idle time before TCP keepalive probes on proxied sockets (6 probes 10 s apart; unanswered: reset)',
  },
  hboneKeepaliveSeconds: {
    flag: '--hbone-keepalive-seconds',
    env: 'FERRY_HBONE_KEEPALIVE_SECONDS',
    default: 10,
    min: 1,
    max: 3600,
    integer: false,
    help: 'HTTP/2 PING interval on HBONE tunnels',
  },
  hboneKeepaliveTimeoutSeconds: {
    flag: '--hbone-keepalive-timeout-seconds',
    env: 'FERRY_HBONE_KEEPALIVE_TIMEOUT_SECONDS',
    default: 10,
    min: 1,
    max: 3600,
    integer: false,
    help: 'a tunnel whose PING is not answered this long is torn down (its connections reset)',
  },
  mapSampleSeconds: {
    flag: '--map-sample-seconds',
    env: 'FERRY_MAP_SAMPLE_SECONDS',
    default: 10,
    min: 1,
    max: 3600,
    integer: false,
    help: 'how often BPF map occupancy is counted (off the event loop) for ferry_bpf_map_entries',
  },
} as const;

export type AgentLimits = { -readonly [K in keyof typeof AGENT_LIMITS]: number };

function limitsFrom(options: AgentOptions, env: NodeJS.ProcessEnv): AgentLimits {
  const limits = {} as AgentLimits;
  for (const [key, spec] of Object.entries(AGENT_LIMITS) as Array<[keyof AgentLimits, (typeof AGENT_LIMITS)[keyof AgentLimits]]>) {
    const text = options[key] ?? env[spec.env];
    if (text === undefined || text === '') {
      limits[key] = spec.default;
      continue;
    }
    const value = Number(text);
    if (!Number.isFinite(value) || value < spec.min || value > spec.max || (spec.integer && !Number.isInteger(value))) {
      throw new ConfigError(
        `agent: ${spec.flag} (or ${spec.env}) "${text}" is not ${spec.integer ? 'an integer' : 'a number'} ` +
          `from ${spec.min} to ${spec.max}`,
      );
    }
    limits[key] = value;
  }
  return limits;
}

/** The controller the agent follows: its config stream and its CA service (gRPC over TLS). */
export interface ControllerSettings {
  /** `host:port`, or `unix:/absolute/path` (a socket the agent reaches from another network namespace). */
  address: string;
  /** PEM bundle the controller's certificate must chain to. */
  caFile: string;
  /** The agent's projected service-account token, sent as its credential (re-read on every connect). */
  tokenFile: string;
  /** Name the controller's certificate carries, when it is not the host of `address`. */
  serverName?: string;
}

/** Where the kubelet mounts a pod's service-account token by default. */
export const DEFAULT_TOKEN_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export interface AgentConfig {
  /** This agent's node name; it enrols only pods scheduled here. */
  node: string;
  /** Where the model, the certificates and the trust bundle come from; the agent holds no CA material. */
  controller: ControllerSettings;
  /** bpffs directory for this agent's pinned maps and links. */
  pinDir: string;
  /** cgroup v2 directory the connect and sock_ops programs attach to. */
  cgroupPath: string;
  /** Directory with the compiled BPF objects. */
  bpfDir: string;
  logLevel: string;
  /** How long SIGTERM waits for open connections before closing them. */
  drainMs: number;
  /** Translate Service VIPs in BPF for pods that are not captured (no kube-proxy in the sandbox). */
  serviceLoadBalancing: boolean;
  /** SPIFFE trust domain of this mesh (`cluster.local` unless set). */
  trustDomain: string;
  /**
   * Directory of the node's pod records (`<uid>.json`: uid, namespace, name, netnsPath), written by the
   * node's kubelet: where the agent finds the network namespace of a workload that arrives without one.
   */
  podNetnsDir?: string;
  /**
   * The node's hand-over socket: a starting agent that finds another listening there takes its
   * listening sockets over (no connection refused); the running agent listens there for its successor.
   */
  handoverSocket: string;
  /** The agent's own Pod name (FERRY_POD_NAME, from the downward API), for the hand-over's logs and /handover. */
  podName?: string;
  /** Lifetime asked for workload certificates; renewed at half of it. */
  certTtlSeconds: number;
  /**
   * Carry meshed traffic between nodes in HBONE mutual-TLS tunnels (default). Off only for
   * measuring and debugging: meshed traffic then travels as plaintext, as to an unmeshed pod.
   */
  hbone: boolean;
  /** Same-node meshed traffic skips TLS inside the agent (identity and policy still checked). */
  sameNodeShortcut: boolean;
  /**
   * Count connections into Istio's TCP metrics (default). Off only to measure what they cost: the
   * health metrics and the access log stay.
   */
  trafficMetrics: boolean;
  /** Size of libuv's thread pool, which runs the addon's short blocking calls (setns + socket, map walks). */
  threadPoolSize: number;
  limits: AgentLimits;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function required(value: string | undefined, flag: string, envName: string): string {
  if (value === undefined || value === '') {
    throw new ConfigError(`agent: ${flag} (or ${envName}) is required`);
  }
  return value;
}

/** `host:port` with a host name, IPv4 address or bracketed IPv6 address, and a port from 1 to 65535. */
const CONTROLLER_ADDRESS = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/;
/** gRPC's unix-socket target: `unix:` and an absolute path (grpc-js also reads `unix:relative`, not accepted here). */
const UNIX_ADDRESS = /^unix:(\/.*)$/;

function controllerFrom(options: AgentOptions, env: NodeJS.ProcessEnv): ControllerSettings {
  const controller = options.controller ?? env.FERRY_CONTROLLER;
  const given = (value: string | undefined): value is string => value !== undefined && value !== '';
  if (!given(controller)) {
    throw new ConfigError('agent: --controller HOST:PORT or unix:/PATH (or FERRY_CONTROLLER) is required');
  }
  const socket = UNIX_ADDRESS.exec(controller)?.[1];
  if (socket !== undefined) {
    if (path.posix.normalize(socket) !== socket || socket.endsWith('/')) {
      throw new ConfigError(`agent: --controller "${controller}": the socket path must be absolute and normalised (no '.', '..' or '//')`);
    }
  } else {
    const port = CONTROLLER_ADDRESS.exec(controller)?.[1];
    if (port === undefined || Number(port) < 1 || Number(port) > 65535) {
      throw new ConfigError(`agent: --controller "${controller}" is not HOST:PORT with a port from 1 to 65535, or unix:/ABSOLUTE/PATH`);
    }
  }
  const serverName = options.controllerServerName ?? env.FERRY_CONTROLLER_SERVER_NAME;
  return {
    address: controller,
    caFile: required(options.controllerCa ?? env.FERRY_CONTROLLER_CA, '--controller-ca', 'FERRY_CONTROLLER_CA'),
    tokenFile: options.tokenFile ?? env.FERRY_TOKEN_FILE ?? DEFAULT_TOKEN_FILE,
    ...(given(serverName) ? { serverName } : {}),
  };
}

/** Build the agent's configuration; options win over the environment. */
export function agentConfigFrom(options: AgentOptions, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const node = required(options.node ?? env.FERRY_NODE, '--node', 'FERRY_NODE');
  const controller = controllerFrom(options, env);
  const pinDir = options.pinDir ?? env.FERRY_PIN_DIR ?? '/sys/fs/bpf/ferry';
  const cgroupPath = required(options.cgroup ?? env.FERRY_CGROUP, '--cgroup', 'FERRY_CGROUP');
  const bpfDir = options.bpfDir ?? env.FERRY_BPF_DIR ?? path.resolve(__dirname, '..', '..', '..', 'bpf', 'build');
  const logLevel = options.logLevel ?? env.FERRY_LOG_LEVEL ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`agent: log level "${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  }
  const drainText = options.drainSeconds ?? env.FERRY_DRAIN_SECONDS ?? '10';
  const drainSeconds = Number(drainText);
  if (!Number.isFinite(drainSeconds) || drainSeconds < 0) {
    throw new ConfigError(`agent: --drain-seconds "${drainText}" is not a non-negative number`);
  }
  const serviceLoadBalancing = options.serviceLb ?? env.FERRY_SERVICE_LB === 'true';
  const poolText = env.UV_THREADPOOL_SIZE ?? '16';
  const threadPoolSize = Number(poolText);
  if (!Number.isInteger(threadPoolSize) || threadPoolSize < 1 || threadPoolSize > 1024) {
    throw new ConfigError(`agent: UV_THREADPOOL_SIZE "${poolText}" is not an integer in 1..1024`);
  }
  const trustDomain = options.trustDomain ?? env.FERRY_TRUST_DOMAIN ?? 'cluster.local';
  // SPIFFE trust domain names: lowercase letters, digits, '.', '-' and '_' (SPIFFE-ID spec §2.1).
  if (!/^[a-z0-9._-]{1,255}$/.test(trustDomain)) {
    throw new ConfigError(`agent: --trust-domain "${trustDomain}" must be lowercase letters, digits, '.', '-' or '_'`);
  }
  const podNetnsDirText = options.podNetnsDir ?? env.FERRY_POD_NETNS_DIR;
  const podNetnsDir = podNetnsDirText !== undefined && podNetnsDirText !== '' ? podNetnsDirText : undefined;
  const handoverSocket = options.handoverSocket ?? env.FERRY_HANDOVER_SOCKET ?? `/run/ferry/agent/${node}.sock`;
  // sockaddr_un holds 108 bytes with the terminating NUL (unix(7)).
  if (Buffer.byteLength(handoverSocket) > 107) {
    throw new ConfigError(`agent: --handover-socket "${handoverSocket}" is longer than a Unix socket path may be (107 bytes)`);
  }
  const podName = env.FERRY_POD_NAME !== undefined && env.FERRY_POD_NAME !== '' ? env.FERRY_POD_NAME : undefined;
  const ttlText = options.certTtlSeconds ?? env.FERRY_CERT_TTL_SECONDS ?? String(24 * 3600);
  const certTtlSeconds = Number(ttlText);
  if (!Number.isInteger(certTtlSeconds) || certTtlSeconds < 10 || certTtlSeconds > 90 * 24 * 3600) {
    throw new ConfigError(`agent: --cert-ttl "${ttlText}" is not a whole number of seconds from 10 to 7776000 (90 days)`);
  }
  const hbone = options.hbone ?? env.FERRY_HBONE !== 'false';
  const sameNodeShortcut = options.sameNodeShortcut ?? env.FERRY_SAME_NODE_SHORTCUT !== 'false';
  const trafficMetrics = options.trafficMetrics ?? env.FERRY_TRAFFIC_METRICS !== 'false';
  for (const [flag, value] of [
    ['--pin-dir', pinDir],
    ['--cgroup', cgroupPath],
    ...(podNetnsDir !== undefined ? [['--pod-netns-dir', podNetnsDir]] : []),
    ['--handover-socket', handoverSocket],
    ['--controller-ca', controller.caFile],
    ['--token-file', controller.tokenFile],
  ]) {
    if (!path.isAbsolute(value)) throw new ConfigError(`agent: ${flag} "${value}" must be an absolute path`);
  }
  return {
    node,
    controller,
    pinDir,
    cgroupPath,
    bpfDir,
    logLevel,
    drainMs: Math.round(drainSeconds * 1000),
    serviceLoadBalancing,
    threadPoolSize,
    trustDomain,
    ...(podNetnsDir !== undefined ? { podNetnsDir } : {}),
    handoverSocket,
    ...(podName !== undefined ? { podName } : {}),
    certTtlSeconds,
    hbone,
    sameNodeShortcut,
    trafficMetrics,
    limits: limitsFrom(options, env),
  };
}

const PREFIX_PATTERN = /^[a-z][a-z0-9-]{0,15}$/;

/** The sandbox's name prefix: option, then FERRY_SANDBOX_PREFIX, then "ferry". */
export function sandboxPrefixFrom(option: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const prefix = option ?? env.FERRY_SANDBOX_PREFIX ?? 'ferry';
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new ConfigError(`sandbox prefix "${prefix}" must be 1-16 characters of a-z, 0-9 and '-', starting with a letter`);
  }
  return prefix;
}
