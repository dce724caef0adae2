// The node proxy: per enrolled pod an outbound server (15001), an inbound plaintext server (15006)
// and an HBONE server (15008) on listening sockets opened inside the pod's namespace. Outbound
// connections to meshed pods go through HBONE (or the same-node short path); inbound ones are
// authorized before they reach the app, and re-checked when policy changes.
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { PORTS } from '../config';
import {
  LogLimiter,
  channels,
  workloadName,
  type ByteCounts,
  type LabelledWorkload,
  type Logger,
  type ResponseFlag,
  type SecurityPolicy,
  type ServiceName,
  type TrafficMeter,
  type TrafficMetrics,
  type TrafficParty,
} from '../telemetry';
import type { Workload } from '../state';
import { ConnectionTracker, type AuthorizationContext, type TrackedConnection } from './connection-tracker';
import { HboneStatusError } from './errors';
import { HboneAdmission, type HboneAdmissionStats } from './hbone-admission';
import { HbonePool, type HbonePoolCounters, type HbonePoolOptions, type HbonePoolStats } from './hbone-pool';
import { forwardedFor, hasIp, hostPort, newTraceparent, numericOptions, sourceBaggage, stripMapped } from './hbone-protocol';
import { HboneListener, hboneServerLimits, type HboneInboundStream, type HboneListenerStats, type HboneServerLimits } from './hbone-server';
import { pickDeliveryPort } from './delivery-port';
import { relay, resetEnd, type RelayResult } from './relay';
import type {
  AuthorizationVerdict,
  DestinationResolver,
  Dialer,
  InboundAuthorizer,
  InboundSource,
  OriginalDestinationSource,
  PeerIdentity,
  PodListenerFds,
  ProxyPod,
  SocketAddress,
  SocketOptions,
  TlsProvider,
} from './types';

export interface HboneOptions {
  /**
   * false: meshed destinations on other nodes are dialled in plaintext from the source pod, like
   * unmeshed ones (measurement and debugging; the destination's PeerAuthentication still applies).
   * Pods' HBONE listeners keep serving. Default true.
   */
  enabled?: boolean;
  pool?: Partial<HbonePoolOptions>;
  server?: Partial<HboneServerLimits>;
}

/** Limits on what one pod can make the proxy hold; see PROXY_LIMIT_DEFAULTS. */
export interface ProxyLimits {
  /**
   * Open connections per pod, as source and as destination together. Over it a new connection is
   * reset at once (response flag UO). Envoy's edge guidance caps downstream connections per
   * listener; a per-pod cap keeps one pod from exhausting the agent's fds for every other.
   */
  maxConnectionsPerPod: number;
  /** Relayed connections with no byte either way for this long are reset; 0: never (Istio's default). */
  idleTimeoutMs: number;
  /** Refused and failed connections write at most one access line per pod and kind per this interval. */
  refusedLogIntervalMs: number;
}

export const PROXY_LIMIT_DEFAULTS: ProxyLimits = {
  maxConnectionsPerPod: 4096,
  idleTimeoutMs: 0,
  refusedLogIntervalMs: 1000,
};

const LIMIT_RANGES: { [K in keyof ProxyLimits]: [number, number] } = {
  maxConnectionsPerPod: [1, 1_000_000],
  idleTimeoutMs: [0, 7 * 24 * 3600_000],
  refusedLogIntervalMs: [1, 3600_000],
};

/** Why the proxy refused a connection before any policy was asked (ferry_connections_refused_total). */
export type RefusalReason =
  /** To one of Ferry's own in-pod ports (15001, 15006, 15008) in any address form: it would loop into the agent. */
  | 'self_call'
  /** The pod's workload is not in the model: nothing to authorize it as. */
  | 'workload_unknown'
  /** An HBONE tunnel from an address that belongs to a workload of another identity than its certificate's. */
  | 'source_identity_mismatch'
  /** The pod already holds maxConnectionsPerPod connections. */
  | 'connection_limit';

export interface NodeProxyDeps {
  resolver: DestinationResolver;
  origins: OriginalDestinationSource;
  dialer: Dialer;
  tls: TlsProvider;
  authorizer: InboundAuthorizer;
  log: Logger;
  hbone?: HboneOptions;
  /**
   * A meshed destination pod enrolled on this agent is reached without TLS (both ends are ours),
   * authorized exactly as HBONE would be. Default true.
   */
  localShortcut?: boolean;
  /** Istio's TCP metrics; absent: no traffic metrics (the access log is written either way). */
  metrics?: TrafficMetrics;
  /** Keepalive and linger on relayed and tunnel sockets; absent: the kernel's defaults (unit tests). */
  sockets?: SocketOptions;
  limits?: Partial<ProxyLimits>;
}

/** The monotonic counters of an HBONE listener's stats (the rest are gauges of what is open now). */
const LISTENER_COUNTERS = [
  'handshakesTimedOut',
  'handshakesEvicted',
  'handshakesRejected',
  'handshakesEvictedPerSource',
  'sessionsRefusedPerPeer',
  'sessionsClosedResetFlood',
  'sessionsClosedSettingsFlood',
  'sessionsClosedPingFlood',
  'sessionsClosedKeepalive',
  'sessionsClosedSettingsTimeout',
  'sessionsClosedProtocolError',
] as const satisfies ReadonlyArray<keyof HboneListenerStats>;

export type ListenerCounter = (typeof LISTENER_COUNTERS)[number];

/** Matches the backlog the capture opens the pod's listeners with. */
const LISTEN_BACKLOG = 1024;

interface PodServers {
  pod: ProxyPod;
  servers: net.Server[];
  hbone: HboneListener;
}

export type ProxyPath = 'hbone' | 'short' | 'passthrough' | 'plaintext';

/** One line per finished (or refused) connection, on the `access` logger and the diagnostics channel. */
export interface AccessRecord {
  conn: string;
  direction: 'outbound' | 'inbound';
  /** The enrolled pod the connection belongs to (NAMESPACE/NAME): its source (outbound) or destination (inbound). */
  pod: string;
  /** That pod's UID (the model's key: the Pod's metadata.uid on a cluster). */
  podUid: string;
  /** hbone: through a tunnel; short: same-node meshed; passthrough: unmeshed destination; plaintext: inbound without mTLS. */
  path: ProxyPath;
  /**
   * mutual_tls: both identities verified — through an HBONE tunnel, or on the same-node short path
   * where the agent holds both ends and the bytes never leave the node.
   */
  security: 'mutual_tls' | 'none';
  /** Addresses: the peer that connected, and what it connected to. */
  source: string;
  destination: string;
  upstream?: string;
  /** Workload names (the metrics' source_workload/destination_workload) and their namespaces. */
  sourceWorkload?: string;
  sourceNamespace?: string;
  /** `name.namespace` of the Service the connection was addressed to (inbound: the Service selecting the port). */
  destinationService?: string;
  destinationWorkload?: string;
  destinationNamespace?: string;
  /** `<trust-domain>/ns/<ns>/sa/<sa>`: set only when verified (mutual_tls). */
  sourcePrincipal?: string;
  destinationPrincipal?: string;
  /** The HBONE tunnel (TLS connection) the stream used. */
  tunnel?: string;
  traceparent?: string;
  /** The peer's answer to CONNECT when it was not 200. */
  status?: number;
  /** When authorization denied it: the deciding policy (`namespace/name`) and why. */
  policy?: string;
  reason?: string;
  /** Istio's response flag: `-`, DENY (authorization or peer authentication), CONNECT (upstream unreachable). */
  responseFlags: ResponseFlag;
  /** Bytes the source sent, and bytes the destination sent back. */
  bytesSent: number;
  bytesReceived: number;
  durationMs: number;
  error?: string;
  /** Refused or failed lines are rate limited per pod and kind: how many like this one were left out before it. */
  suppressed?: number;
}

/** A connection being handled: what its access record will say. */
interface Flow {
  id: string;
  direction: 'outbound' | 'inbound';
  pod: ProxyPod;
  source: string;
  destination: string;
  startedAt: number;
  record: Partial<AccessRecord> & Pick<AccessRecord, 'path' | 'security'>;
  /** Updated by the relay as bytes pass. */
  counts: ByteCounts;
  /** One per reporter (two on the same-node short path: this agent is both source and destination). */
  meters: TrafficMeter[];
  /** Plaintext inbound: its 4-tuple in the proxy's set of steered connections, while it is open. */
  steered?: string;
}

/** Who is talking to whom, as far as the agent knows; the metrics' labels and the access record's names. */
interface Parties {
  source: TrafficParty;
  destination: TrafficParty & { service?: ServiceName };
}

const NOTHING: RelayResult = { sent: 0, received: 0 };

function family(address: string | undefined): 4 | 6 {
  return address !== undefined && net.isIPv6(address) && !address.startsWith('::ffff:') ? 6 : 4;
}

function newFlow(
  id: string,
  direction: Flow['direction'],
  pod: ProxyPod,
  source: string,
  destination: string,
  record: Flow['record'],
): Flow {
  return { id, direction, pod, source, destination, startedAt: Date.now(), record, counts: { sent: 0, received: 0 }, meters: [] };
}

function endpoint(ip: string | undefined, port: number | undefined): string {
  return ip === undefined ? 'unknown' : hostPort(ip, port ?? 0);
}

/** The pod's address in the target's family (what the far side sees as the source). */
function podIp(pod: ProxyPod, fam: 4 | 6): string | undefined {
  return pod.ips.find((ip) => family(ip) === fam) ?? pod.ips[0];
}

/** Delivery with the client's address for an app connection from `sourceIp`, when it is of the target's family. */
function deliverFrom(sourceIp: string, target: SocketAddress): { sourceIp: string } | undefined {
  return sourceIp !== '' && family(sourceIp) === target.family ? { sourceIp } : undefined;
}

/** A connection as it arrives at a pod, source to target; see delivery-port.ts. */
function tupleKey(podUid: string, sourceIp: string, sourcePort: number, target: SocketAddress): string {
  return `${podUid}|${sourceIp}|${sourcePort}|${target.ip}|${target.port}`;
}

/** The kernel's answers when the chosen source port or 4-tuple is taken: pick another. */
const PORT_TAKEN = new Set(['EADDRINUSE', 'EADDRNOTAVAIL']);

function denial(verdict: AuthorizationVerdict): string {
  return verdict.policy ? `denied by policy ${verdict.policy}` : `denied: ${verdict.reason}`;
}

const STRICT_REJECTION = 'plaintext rejected by PeerAuthentication STRICT';

/**
 * Ferry's listeners inside every enrolled pod (Istio reserves the same numbers): a connection to
 * one of them, in whatever address form, would be the agent calling itself (ztunnel's SelfCall).
 */
const OWN_POD_PORTS = new Set<number>([PORTS.outbound, PORTS.inbound, PORTS.hbone]);

/**
 * Addresses that reach the pod itself without leaving it: 127.0.0.0/8 and ::1, the unspecified
 * address (connect(2) to 0.0.0.0 or :: goes to loopback), and their v4-mapped forms.
 */
function isLocalForm(ip: string): boolean {
  const v4 = stripMapped(ip);
  if (net.isIPv4(v4)) return v4 === '0.0.0.0' || v4.startsWith('127.');
  const list = new net.BlockList();
  list.addAddress('::1', 'ipv6');
  list.addAddress('::', 'ipv6');
  return net.isIPv6(ip) && list.check(ip, 'ipv6');
}

/**
 * Close listening sockets now. Not awaiting server.close()'s callback is deliberate: it fires only
 * once every connection the server accepted has ended, while the listening fd itself is closed at
 * once (and with it the kernel's socket-map entry).
 */
function stopAccepting(servers: net.Server[]): void {
  for (const server of servers) if (server.listening) server.close();
}

export class NodeProxy {
  private readonly pods = new Map<string, PodServers>();
  readonly tracker = new ConnectionTracker();
  readonly pool: HbonePool;
  private readonly serverLimits: HboneServerLimits;
  /** The agent-wide HBONE caps (sessions per peer identity, handshakes per source), shared by every pod's listener. */
  readonly hboneAdmission: HboneAdmission;
  private readonly localShortcut: boolean;
  private readonly hboneEnabled: boolean;
  private readonly log: Logger;
  private readonly access: Logger;
  private readonly unsubscribe: () => void;
  private recheckScheduled = false;
  readonly limits: ProxyLimits;
  /** Refused and failed connections' access lines, at most one per pod and kind per interval. */
  private readonly refusedLog: LogLimiter<AccessRecord>;
  private readonly refusals = new Map<string, { direction: Flow['direction']; reason: RefusalReason; count: number }>();
  private connectionLimitHits = 0;
  private readonly idleSweep?: NodeJS.Timeout;
  /** Plaintext connections open through 15006, by 4-tuple: delivery source ports avoid them. */
  private readonly steered = new Set<string>();
  private readonly retiredListenerCounts = Object.fromEntries(LISTENER_COUNTERS.map((k) => [k, 0])) as Record<ListenerCounter, number>;

  constructor(private readonly deps: NodeProxyDeps) {
    this.log = deps.log.child({ component: 'proxy' });
    this.access = deps.log.child({ component: 'access' });
    this.localShortcut = deps.localShortcut ?? true;
    this.hboneEnabled = deps.hbone?.enabled ?? true;
    this.limits = numericOptions('proxy.limits', PROXY_LIMIT_DEFAULTS, deps.limits, LIMIT_RANGES);
    this.serverLimits = hboneServerLimits(deps.hbone?.server);
    this.hboneAdmission = new HboneAdmission(this.serverLimits);
    // The pool's dials are tunnel sockets: keepalive, set where every socket gets its options.
    const tunnels: Dialer = {
      dial: async (netnsPath, to) => {
        const socket = await deps.dialer.dial(netnsPath, to);
        deps.sockets?.tunnel(socket);
        return socket;
      },
    };
    this.pool = new HbonePool({ tls: deps.tls, dialer: tunnels, log: deps.log }, deps.hbone?.pool);
    this.unsubscribe = deps.authorizer.onChange(() => this.scheduleRecheck());
    this.refusedLog = new LogLimiter(this.limits.refusedLogIntervalMs, (_key, { record, suppressed }) => {
      this.writeAccess(suppressed > 0 ? { ...record, suppressed } : record);
    });
    if (this.limits.idleTimeoutMs > 0) {
      // One sweep for every connection, not a timer each: idle is judged at the sweep's resolution.
      const every = Math.max(100, Math.min(1000, Math.floor(this.limits.idleTimeoutMs / 4)));
      this.idleSweep = setInterval(() => this.closeIdle(), every);
      this.idleSweep.unref();
    }
  }

  /** Connections refused before policy, by direction and reason, since start. */
  refusalCounts(): Array<{ direction: Flow['direction']; reason: RefusalReason; count: number }> {
    return [...this.refusals.values()].map((r) => ({ ...r }));
  }

  /** Times the per-pod connection cap refused a connection, since start. */
  get connectionLimitExceeded(): number {
    return this.connectionLimitHits;
  }

  /** Access lines left out by the rate limit, since start. */
  get suppressedAccessLines(): number {
    return this.refusedLog.suppressed;
  }

  /** Start serving a pod's listeners. The fds are listening already (the kernel queues connections). */
  async addPod(pod: ProxyPod, fds: PodListenerFds): Promise<void> {
    const servers: net.Server[] = [];
    const hbone = new HboneListener(pod, {
      tls: this.deps.tls,
      log: this.deps.log,
      limits: this.serverLimits,
      onStream: (s) => this.onHboneStream(s),
      admission: this.hboneAdmission,
    });
    const open = async (fd: number, handler: (s: net.Socket) => void, options: net.ServerOpts): Promise<void> => {
      const server = net.createServer(options, handler);
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        // listen({ fd }) calls listen(2) again; without a backlog Node would lower it to 511.
        server.listen({ fd, backlog: LISTEN_BACKLOG }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.on('error', (err) => this.log.error({ err, pod: pod.uid }, 'listener error'));
    };
    // Relayed sockets start paused (read once the upstream exists) and half-open; HBONE sockets
    // are read by TLS at once.
    const relayed: net.ServerOpts = { allowHalfOpen: true, pauseOnConnect: true };
    const adopted = new Set<number>();
    const serve = async (fd: number, handler: (s: net.Socket) => void, options: net.ServerOpts): Promise<void> => {
      adopted.add(fd);
      await open(fd, handler, options);
    };
    try {
      for (const fd of fds.outbound) await serve(fd, (s) => this.onOutbound(pod, s), relayed);
      for (const fd of fds.inbound) await serve(fd, (s) => this.onInbound(pod, s), relayed);
      for (const fd of fds.hbone) {
        await serve(
          fd,
          (s) => {
            this.deps.sockets?.tunnel(s);
            hbone.accept(s);
          },
          {},
        );
      }
    } catch (err) {
      for (const server of servers) server.close();
      // The fds no server took are still ours to close (a net.Server closes only its own).
      for (const fd of [...fds.outbound, ...fds.inbound, ...fds.hbone]) {
        if (!adopted.has(fd)) fs.close(fd, () => undefined);
      }
      throw err;
    }
    this.pods.set(pod.uid, { pod, servers, hbone });
  }

  /** Stop serving a pod: close its listeners, tunnels and open connections (as source or destination). */
  removePod(uid: string): void {
    const entry = this.pods.get(uid);
    if (!entry) return;
    this.pods.delete(uid);
    stopAccepting(entry.servers);
    // Connections first, each reset on its own (TCP RST / RST_STREAM), then the tunnels under them.
    this.tracker.destroyWhere((c) => c.podUid === uid || c.auth?.pod.uid === uid, 'closed: pod removed');
    entry.hbone.close();
    this.pool.closeSource(uid);
    // Its counters live on in the totals: they are exported as counters, which never go down.
    const final = entry.hbone.stats();
    for (const key of LISTENER_COUNTERS) this.retiredListenerCounts[key] += final[key];
  }

  /**
   * Since start, over every pod's HBONE listener (released ones included), the agent-wide
   * admission and the client pool: what the limits and HTTP/2 guards refused or closed.
   */
  hboneTotals(): { listeners: Record<ListenerCounter, number>; admission: HboneAdmissionStats; pool: HbonePoolCounters } {
    const listeners = { ...this.retiredListenerCounts };
    for (const entry of this.pods.values()) {
      const stats = entry.hbone.stats();
      for (const key of LISTENER_COUNTERS) listeners[key] += stats[key];
    }
    return { listeners, admission: this.hboneAdmission.stats(), pool: this.pool.peerStats().counters };
  }

  hasPod(uid: string): boolean {
    return this.pods.has(uid);
  }

  /** Every pod's listeners are accepting. */
  listening(): boolean {
    for (const { servers } of this.pods.values()) {
      if (!servers.every((s) => s.listening)) return false;
    }
    return true;
  }

  hboneStats(): { pool: HbonePoolStats[]; listeners: Record<string, HboneListenerStats> } {
    const listeners: Record<string, HboneListenerStats> = {};
    for (const [uid, entry] of this.pods) listeners[uid] = entry.hbone.stats();
    return { pool: this.pool.stats(), listeners };
  }

  /**
   * Graceful stop (SIGTERM): stop accepting at once — closing the listeners also removes them
   * from the kernel's socket map, so new connections are refused (fail closed) rather than
   * delivered around the mesh — and send GOAWAY on inbound tunnels so peers open no new streams;
   * then let open connections finish until the deadline, then close what is left, the tunnels
   * and the pool. Resolves when every connection is gone. With `handOff` (a successor accepts on
   * the same listening sockets) the HBONE listeners let handshakes in progress finish and send
   * those sessions GOAWAY too (HboneListener.handOff()) instead of destroying them.
   */
  async drain(deadlineMs: number, options: { handOff?: boolean } = {}): Promise<{ finished: boolean; closed: number }> {
    for (const entry of this.pods.values()) {
      stopAccepting(entry.servers);
      if (options.handOff) entry.hbone.handOff();
      else entry.hbone.drain();
    }
    this.log.info({ open: this.tracker.size, deadlineMs }, 'draining');
    const finished = await this.tracker.waitForIdle(deadlineMs);
    const closed = finished ? 0 : this.tracker.destroyWhere(() => true, 'closed at the drain deadline');
    for (const entry of this.pods.values()) entry.hbone.close();
    this.pool.close();
    this.unsubscribe();
    this.pods.clear();
    if (this.idleSweep) clearInterval(this.idleSweep);
    this.refusedLog.close();
    return { finished, closed };
  }

  // ---- outbound ---------------------------------------------------------------------------

  private onOutbound(pod: ProxyPod, client: net.Socket): void {
    client.on('error', () => {
      /* reported through the relay or the dial failure */
    });
    const id = this.tracker.nextId('outbound');
    const original = this.deps.origins.originalDestination(pod, client);
    // The app's socket was redirected to the pod's loopback listener, so its address here is
    // loopback; the record names the pod's own address (what the destination sees) with the app's port.
    const podSource = endpoint(podIp(pod, original?.family ?? 4) ?? client.remoteAddress, client.remotePort);
    const flow = newFlow(
      id,
      'outbound',
      pod,
      podSource,
      original ? hostPort(original.ip, original.port) : endpoint(client.localAddress, client.localPort),
      { path: 'passthrough', security: 'none' },
    );
    if (!original) {
      // Captured connects always have an origin (the programs count the rare one they could not
      // record); one without came straight to 127.0.0.1:15001 — the pod calling the agent.
      this.refuse(flow, client, 'self_call', 'connection made directly to the outbound listener (no captured destination)');
      return;
    }
    if (this.overLimit(flow, client)) return;
    const resolved = this.deps.resolver.resolve(original.ip, original.port);
    const sourceWorkload: LabelledWorkload | undefined = this.deps.resolver.workload(pod.uid);
    if (!sourceWorkload) {
      this.refuse(flow, client, 'workload_unknown', `source pod ${pod.uid} is not in the model`);
      return;
    }
    let target: SocketAddress;
    let workload: Workload | undefined;
    let service: ServiceName | undefined;
    switch (resolved.kind) {
      case 'service':
        target = { family: family(resolved.endpoint.ip), ip: resolved.endpoint.ip, port: resolved.endpoint.port };
        workload = resolved.workload;
        service = resolved.service;
        break;
      case 'workload':
        target = original;
        workload = resolved.workload;
        break;
      case 'passthrough':
        target = original;
        break;
      case 'no-endpoints':
        client.resetAndDestroy();
        this.open(flow, ['source'], { source: { workload: sourceWorkload }, destination: { service: resolved.service } }, 'unknown');
        this.finish(flow, NOTHING, undefined, { responseFlags: 'CONNECT', error: 'no healthy endpoints' });
        return;
    }
    flow.record.upstream = hostPort(target.ip, target.port);
    // Checked on the resolved target: a Service whose endpoint is a pod's 15006 loops just the same.
    if (OWN_POD_PORTS.has(target.port) && (isLocalForm(target.ip) || hasIp(pod.ips, target.ip) || workload?.meshEnabled)) {
      this.refuse(flow, client, 'self_call', `${hostPort(target.ip, target.port)} is one of Ferry's own ports`);
      return;
    }
    // A meshed destination enrolled here takes the short path; elsewhere, a tunnel.
    const local = workload?.meshEnabled && this.localShortcut ? this.pods.get(workload.uid) : undefined;
    if (!workload?.meshEnabled || (!local && !this.hboneEnabled)) {
      // Not meshed (or tunnels off for measurement): plaintext from inside the source pod.
      this.open(flow, ['source'], { source: { workload: sourceWorkload }, destination: { workload, service } }, 'unknown');
      this.dialAndRelay(flow, client, pod, target);
      return;
    }
    const sourcePrincipal = this.principalOf(pod);
    const destinationPrincipal = this.deps.tls.principalFor(workload.namespace, workload.serviceAccount);
    const parties: Parties = {
      source: { workload: sourceWorkload, principal: sourcePrincipal },
      destination: { workload, service, principal: destinationPrincipal },
    };
    if (local) {
      this.open(flow, ['source', 'destination'], parties, 'mutual_tls');
      this.shortPath(flow, client, local.pod, target);
    } else {
      this.open(flow, ['source'], parties, 'mutual_tls');
      this.viaHbone(flow, client, target, sourcePrincipal, destinationPrincipal);
    }
  }

  /**
   * Same-node meshed destination: no TLS, but the checks HBONE would make at the far end — the
   * destination pod's policy with the source pod's identity — then delivery from inside the
   * destination's namespace, exactly like inbound, with the source pod's address as source.
   */
  private shortPath(flow: Flow, client: net.Socket, destination: ProxyPod, target: SocketAddress): void {
    flow.record.path = 'short';
    const source: InboundSource = { peer: this.identityOf(flow.pod), ip: podIp(flow.pod, target.family) ?? '' };
    const verdict = this.deps.authorizer.authorize(destination, source, target);
    if (!verdict.allow) {
      client.resetAndDestroy();
      this.finish(flow, NOTHING, undefined, {
        policy: verdict.policy,
        reason: verdict.reason,
        responseFlags: 'DENY',
        error: denial(verdict),
      });
      return;
    }
    this.dialAndRelay(
      flow,
      client,
      destination,
      target,
      { pod: destination, source, destination: target, plaintext: false, verdict },
      deliverFrom(source.ip, target),
    );
  }

  /** Meshed destination on another node: a CONNECT stream through a pooled HBONE tunnel. */
  private viaHbone(flow: Flow, client: net.Socket, target: SocketAddress, sourcePrincipal: string, expectedPrincipal: string): void {
    const traceparent = newTraceparent();
    Object.assign(flow.record, { path: 'hbone', traceparent });
    // The far side sees the tunnel come from the source pod's address; `forwarded` says so too.
    const sourceIp = podIp(flow.pod, target.family) ?? stripMapped(client.remoteAddress ?? '');
    this.relayedSocket(client);
    const { tracked, ends } = this.track(flow, [client]);
    this.log.debug({ conn: flow.id, pod: flow.pod.uid, upstream: flow.record.upstream }, 'opening hbone stream');
    this.pool
      .open({
        sourcePod: flow.pod,
        sourcePrincipal,
        target,
        expectedPrincipal,
        headers: { forwarded: forwardedFor(sourceIp), traceparent, baggage: sourceBaggage(flow.pod) },
      })
      .then(
        async (stream) => {
          if (client.destroyed || tracked.closeReason !== undefined) {
            resetEnd(stream);
            this.finish(flow, NOTHING, tracked, { error: 'client closed before the tunnel was open' });
            return;
          }
          ends.push(stream);
          client.resume();
          this.finish(flow, await relay(client, stream, flow.counts), tracked);
        },
        (err: Error) => {
          client.resetAndDestroy();
          const status = err instanceof HboneStatusError ? err.status : undefined;
          this.finish(flow, NOTHING, tracked, {
            status,
            responseFlags: status === 403 ? 'DENY' : 'CONNECT',
            error: `hbone ${flow.record.upstream}: ${err.message}`,
          });
        },
      );
  }

  // ---- inbound ----------------------------------------------------------------------------

  /** Plaintext to a pod (15006): PeerAuthentication first, then authorization by source address. */
  private onInbound(pod: ProxyPod, client: net.Socket): void {
    client.on('error', () => {
      /* reported through the relay or the dial failure */
    });
    // sk_lookup steered the SYN without rewriting it: the accepted socket's local address is the
    // address and port the peer dialled, which is where the app listens.
    const localIp = stripMapped(client.localAddress ?? '');
    const localPort = client.localPort ?? 0;
    if (!localIp || !localPort) {
      client.resetAndDestroy();
      return;
    }
    const target: SocketAddress = { family: family(localIp), ip: localIp, port: localPort };
    const sourceIp = stripMapped(client.remoteAddress ?? '');
    const flow = newFlow(
      this.tracker.nextId('inbound'),
      'inbound',
      pod,
      endpoint(client.remoteAddress, client.remotePort),
      hostPort(localIp, localPort),
      { path: 'plaintext', security: 'none' },
    );
    // sk_lookup steers only connections to the pod's own addresses, and never to Ferry's ports'
    // listeners themselves: anything else here came straight to the loopback listener, or asks for
    // one of Ferry's ports on the pod's address. Delivering either would dial the agent again.
    if (!hasIp(pod.ips, localIp) || OWN_POD_PORTS.has(localPort)) {
      this.refuse(flow, client, 'self_call', `${hostPort(localIp, localPort)} is the agent's own listener`);
      return;
    }
    if (this.overLimit(flow, client)) return;
    flow.steered = tupleKey(pod.uid, sourceIp, client.remotePort ?? 0, target);
    this.steered.add(flow.steered);
    // No identity: the source workload is only what its address says, and no principal is claimed.
    this.open(
      flow,
      ['destination'],
      {
        source: { workload: this.deps.resolver.workloadByIp(sourceIp) },
        destination: this.inboundDestination(pod, localPort),
      },
      'unknown',
    );
    if (!this.deps.authorizer.admitsPlaintext(pod, localPort)) {
      client.resetAndDestroy();
      this.finish(flow, NOTHING, undefined, { responseFlags: 'DENY', error: STRICT_REJECTION });
      return;
    }
    const source: InboundSource = { ip: sourceIp };
    const verdict = this.deps.authorizer.authorize(pod, source, target);
    if (!verdict.allow) {
      client.resetAndDestroy();
      this.finish(flow, NOTHING, undefined, {
        policy: verdict.policy,
        reason: verdict.reason,
        responseFlags: 'DENY',
        error: denial(verdict),
      });
      return;
    }
    this.dialAndRelay(
      flow,
      client,
      pod,
      target,
      { pod, source, destination: target, plaintext: true, verdict },
      deliverFrom(sourceIp, target),
    );
  }

  /** A CONNECT stream the pod's HBONE server accepted: authorize the verified peer, dial the app, answer. */
  private onHboneStream(request: HboneInboundStream): void {
    const { pod, target, stream } = request;
    const flow = newFlow(
      this.tracker.nextId('inbound'),
      'inbound',
      pod,
      hostPort(request.source.ip, request.source.port),
      hostPort(target.ip, target.port),
      {
        path: 'hbone',
        security: 'mutual_tls',
        upstream: hostPort(target.ip, target.port),
        tunnel: request.tunnel,
        traceparent: request.traceparent,
      },
    );
    if (this.tracker.openFor(pod.uid) >= this.limits.maxConnectionsPerPod) {
      this.connectionLimitHits += 1;
      request.reject(503);
      this.count(flow, 'connection_limit');
      this.finish(flow, NOTHING, undefined, {
        status: 503,
        responseFlags: 'UO',
        error: `refused: ${pod.uid} holds ${this.limits.maxConnectionsPerPod} connections (the limit)`,
      });
      return;
    }
    // The verified identity is what counts; the workload at the source address names it only when
    // it runs as that identity. The peer agent dials from inside the source pod, so a tunnel from the
    // address of a workload with another identity is lying about where it comes from: refused, or
    // the app (and ipBlocks) would see that workload's address for this identity's traffic.
    const peer = request.peer;
    const atAddress = this.deps.resolver.workloadByIp(request.source.ip);
    if (atAddress && (atAddress.namespace !== peer.namespace || atAddress.serviceAccount !== peer.serviceAccount)) {
      request.reject(403);
      this.count(flow, 'source_identity_mismatch');
      this.finish(flow, NOTHING, undefined, {
        status: 403,
        responseFlags: 'DENY',
        sourcePrincipal: peer.principal,
        error:
          `refused: tunnel from ${request.source.ip} (${atAddress.uid}, service account ${atAddress.serviceAccount}) ` +
          `presented ${peer.principal}`,
      });
      return;
    }
    this.open(
      flow,
      ['destination'],
      {
        source: { workload: atAddress, namespace: peer.namespace, principal: peer.principal },
        destination: { ...this.inboundDestination(pod, target.port), principal: this.principalOf(pod) },
      },
      'mutual_tls',
    );
    const source: InboundSource = { peer, ip: request.source.ip };
    const verdict = this.deps.authorizer.authorize(pod, source, target);
    if (!verdict.allow) {
      request.reject(403);
      this.finish(flow, NOTHING, undefined, {
        status: 403,
        policy: verdict.policy,
        reason: verdict.reason,
        responseFlags: 'DENY',
        error: denial(verdict),
      });
      return;
    }
    const auth: AuthorizationContext = { pod, source, destination: target, plaintext: false, verdict };
    const { tracked, ends } = this.track(flow, [stream], auth);
    this.dial(pod, target, deliverFrom(request.source.ip, target)).then(
      async (upstream) => {
        if (stream.destroyed || stream.closed || tracked.closeReason !== undefined) {
          upstream.destroy();
          this.finish(flow, NOTHING, tracked, { error: 'stream closed before the app connection was made' });
          return;
        }
        this.relayedSocket(upstream);
        ends.push(upstream);
        request.accept();
        this.finish(flow, await relay(stream, upstream, flow.counts), tracked);
      },
      (err: Error) => {
        request.reject(503);
        this.finish(flow, NOTHING, tracked, {
          status: 503,
          responseFlags: 'CONNECT',
          error: `connect ${hostPort(target.ip, target.port)}: ${err.message}`,
        });
      },
    );
  }

  // ---- shared -----------------------------------------------------------------------------

  /**
   * Dial `target` from inside `from`'s namespace (marked; with `delivery`, from the real source's
   * address) and relay; the client resumes once connected.
   */
  private dialAndRelay(
    flow: Flow,
    client: net.Socket,
    from: ProxyPod,
    target: SocketAddress,
    auth?: AuthorizationContext,
    delivery?: { sourceIp: string },
  ): void {
    this.relayedSocket(client);
    const { tracked, ends } = this.track(flow, [client], auth);
    const upstreamText = hostPort(target.ip, target.port);
    this.log.debug(
      {
        conn: flow.id,
        direction: flow.direction,
        path: flow.record.path,
        pod: flow.pod.uid,
        source: flow.source,
        destination: flow.destination,
        upstream: upstreamText,
        deliveredFrom: delivery?.sourceIp,
      },
      'accepted',
    );
    this.dial(from, target, delivery).then(
      async (upstream) => {
        if (client.destroyed || tracked.closeReason !== undefined) {
          upstream.destroy();
          this.finish(flow, NOTHING, tracked, { error: 'client closed before the upstream connection was made' });
          return;
        }
        this.relayedSocket(upstream);
        ends.push(upstream);
        client.resume();
        this.finish(flow, await relay(client, upstream, flow.counts), tracked);
      },
      (err: Error) => {
        client.resetAndDestroy();
        this.finish(flow, NOTHING, tracked, { responseFlags: 'CONNECT', error: `connect ${upstreamText}: ${err.message}` });
      },
    );
  }

  /**
   * Dial `target` from inside `from`'s namespace; a delivery with the client's address takes a
   * source port that no plaintext connection from that client to the target holds (see
   * delivery-port.ts), and another when the kernel says it is taken.
   */
  private async dial(from: ProxyPod, target: SocketAddress, delivery?: { sourceIp: string }): Promise<net.Socket> {
    if (!delivery) return this.deps.dialer.dial(from.netnsPath, target);
    for (let attempt = 1; ; attempt++) {
      const sourcePort = pickDeliveryPort((port) => this.steered.has(tupleKey(from.uid, delivery.sourceIp, port, target)));
      try {
        return await this.deps.dialer.dial(from.netnsPath, target, { ...delivery, sourcePort });
      } catch (err) {
        if (attempt >= 3 || sourcePort === 0 || !PORT_TAKEN.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
      }
    }
  }

  /** Zero linger until our FIN is out (a dying agent resets, never ends cleanly with bytes missing); keepalive. */
  private relayedSocket(socket: net.Socket): void {
    const options = this.deps.sockets;
    if (!options) return;
    options.relayed(socket);
    socket.once('finish', () => options.finished(socket));
  }

  /** Over the per-pod cap: reset now, counted. */
  private overLimit(flow: Flow, client: net.Socket): boolean {
    if (this.tracker.openFor(flow.pod.uid) < this.limits.maxConnectionsPerPod) return false;
    this.connectionLimitHits += 1;
    this.refuse(
      flow,
      client,
      'connection_limit',
      `${flow.pod.uid} holds ${this.limits.maxConnectionsPerPod} connections (the limit)`,
      'UO',
    );
    return true;
  }

  /**
   * A connection refused before policy: reset at once, counted by reason, and its access line
   * written through the rate limit (a pod can make these as fast as it can connect). Never dialled,
   * never tracked, not in Istio's metrics (there are no parties to name).
   */
  private refuse(flow: Flow, client: net.Socket, reason: RefusalReason, why: string, flag: ResponseFlag = 'DENY'): void {
    client.resetAndDestroy();
    this.count(flow, reason);
    this.finish(flow, NOTHING, undefined, { responseFlags: flag, reason, error: `refused: ${why}` });
  }

  private count(flow: Flow, reason: RefusalReason): void {
    const key = `${flow.direction}|${reason}`;
    const entry = this.refusals.get(key);
    if (entry) entry.count += 1;
    else this.refusals.set(key, { direction: flow.direction, reason, count: 1 });
  }

  /** Reset relayed connections with no byte either way for idleTimeoutMs (swept, not timed one by one). */
  private closeIdle(): void {
    const now = Date.now();
    for (const connection of this.tracker.list()) {
      const total = connection.counts.sent + connection.counts.received;
      const activity = connection.activity ?? { total: -1, since: now };
      if (activity.total !== total) {
        connection.activity = { total, since: now };
        continue;
      }
      if (now - activity.since < this.limits.idleTimeoutMs || connection.closeReason !== undefined) continue;
      connection.closeReason = `closed: idle for ${Math.round((now - activity.since) / 1000)} s (idle timeout ${this.limits.idleTimeoutMs / 1000} s)`;
      connection.abort();
    }
  }

  private track(flow: Flow, ends: Duplex[], auth?: AuthorizationContext): { tracked: TrackedConnection; ends: Duplex[] } {
    const tracked: TrackedConnection = {
      id: flow.id,
      direction: flow.direction,
      podUid: flow.pod.uid,
      source: flow.source,
      destination: flow.destination,
      startedAt: flow.startedAt,
      auth,
      record: flow.record,
      counts: flow.counts,
      abort: () => {
        for (const end of ends) resetEnd(end);
      },
    };
    this.tracker.add(tracked);
    return { tracked, ends };
  }

  /** Coalesces a burst of policy changes into one re-check, run outside the policy engine's call. */
  private scheduleRecheck(): void {
    if (this.recheckScheduled) return;
    this.recheckScheduled = true;
    setImmediate(() => {
      this.recheckScheduled = false;
      this.recheck();
    });
  }

  /** Re-authorize every open connection that arrived at a pod; reset those policy now denies. */
  private recheck(): void {
    let closed = 0;
    for (const connection of this.tracker.list()) {
      const auth = connection.auth;
      if (!auth || connection.closeReason !== undefined) continue;
      let reason: string | undefined;
      if (auth.plaintext && !this.deps.authorizer.admitsPlaintext(auth.pod, auth.destination.port)) {
        reason = `closed: ${STRICT_REJECTION} after policy change`;
      } else {
        auth.verdict = this.deps.authorizer.authorize(auth.pod, auth.source, auth.destination);
        if (!auth.verdict.allow) reason = `closed: ${denial(auth.verdict)} after policy change`;
      }
      if (reason === undefined) continue;
      connection.closeReason = reason;
      connection.denied = true;
      connection.abort();
      closed += 1;
    }
    if (closed > 0) this.log.info({ closed }, 'policy change closed connections');
  }

  /**
   * Record who talks to whom on the access record and, with metrics on, count the connection as
   * opened once per reporter. `security` is Istio's connection_security_policy.
   */
  private open(flow: Flow, reporters: Array<'source' | 'destination'>, parties: Parties, security: SecurityPolicy): void {
    const { source, destination } = parties;
    Object.assign(flow.record, {
      security: security === 'mutual_tls' ? 'mutual_tls' : 'none',
      sourceWorkload: source.workload ? workloadName(source.workload) : undefined,
      sourceNamespace: source.workload?.namespace ?? source.namespace,
      sourcePrincipal: security === 'mutual_tls' ? source.principal : undefined,
      destinationService: destination.service ? `${destination.service.name}.${destination.service.namespace}` : undefined,
      destinationWorkload: destination.workload ? workloadName(destination.workload) : undefined,
      destinationNamespace: destination.workload?.namespace ?? destination.namespace,
      destinationPrincipal: security === 'mutual_tls' ? destination.principal : undefined,
    });
    const metrics = this.deps.metrics;
    if (!metrics) return;
    // Metrics carry SPIFFE IDs (spiffe://…), as Istio's do; the access log keeps the principal form.
    const spiffe = (principal: string | undefined): string | undefined =>
      security === 'mutual_tls' && principal !== undefined ? `spiffe://${principal}` : undefined;
    for (const reporter of reporters) {
      flow.meters.push(
        metrics.start(
          {
            reporter,
            security,
            source: { ...source, principal: spiffe(source.principal) },
            destination: { ...destination, principal: spiffe(destination.principal) },
          },
          flow.counts,
        ),
      );
    }
  }

  /** The destination side of a connection arriving at `pod` on `port`: the pod's workload and the Service selecting it there. */
  private inboundDestination(pod: ProxyPod, port: number): Parties['destination'] {
    const workload = this.deps.resolver.workload(pod.uid);
    return {
      workload: workload ?? { namespace: pod.namespace, name: pod.name, labels: {} },
      service: workload ? this.deps.resolver.serviceOf(workload, port) : undefined,
    };
  }

  private principalOf(pod: ProxyPod): string {
    return this.deps.tls.principalFor(pod.namespace, pod.serviceAccount);
  }

  private identityOf(pod: ProxyPod): PeerIdentity {
    return {
      trustDomain: this.deps.tls.trustDomain,
      namespace: pod.namespace,
      serviceAccount: pod.serviceAccount,
      principal: this.principalOf(pod),
    };
  }

  private finish(flow: Flow, result: RelayResult, tracked: TrackedConnection | undefined, extra: Partial<AccessRecord> = {}): void {
    this.tracker.remove(flow.id);
    if (flow.steered) this.steered.delete(flow.steered);
    const verdict = tracked?.auth?.verdict;
    const denied = verdict && !verdict.allow ? verdict : undefined;
    const r = { ...flow.record, ...extra };
    const responseFlags: ResponseFlag = r.responseFlags ?? (denied || tracked?.denied ? 'DENY' : '-');
    for (const meter of flow.meters) meter.close(responseFlags);
    const entry: AccessRecord = {
      conn: flow.id,
      direction: flow.direction,
      pod: `${flow.pod.namespace}/${flow.pod.name}`,
      podUid: flow.pod.uid,
      path: r.path,
      security: r.security,
      source: flow.source,
      sourceWorkload: r.sourceWorkload,
      sourceNamespace: r.sourceNamespace,
      sourcePrincipal: r.sourcePrincipal,
      destination: flow.destination,
      destinationService: r.destinationService,
      destinationWorkload: r.destinationWorkload,
      destinationNamespace: r.destinationNamespace,
      destinationPrincipal: r.destinationPrincipal,
      upstream: r.upstream,
      tunnel: r.tunnel,
      traceparent: r.traceparent,
      status: r.status,
      policy: r.policy ?? denied?.policy,
      reason: r.reason ?? denied?.reason,
      responseFlags,
      bytesSent: result.sent,
      bytesReceived: result.received,
      durationMs: Date.now() - flow.startedAt,
      error: tracked?.closeReason ?? r.error ?? result.error?.message,
    };
    if (channels.connectionClosed.hasSubscribers) channels.connectionClosed.publish(entry);
    // A connection refused or failed before a byte moved costs its maker nothing: those lines are
    // rate limited per pod and outcome. Every relayed connection gets its own line.
    if (entry.error !== undefined && entry.bytesSent === 0 && entry.bytesReceived === 0) {
      this.refusedLog.record(`${entry.pod}|${outcomeOf(entry)}`, entry);
    } else {
      this.writeAccess(entry);
    }
  }

  private writeAccess(entry: AccessRecord): void {
    const more = entry.suppressed ? ` (${entry.suppressed} more like it not logged)` : '';
    this.access.info(entry, `${entry.direction} ${entry.source} -> ${entry.destination} ${outcomeOf(entry)}${more}`);
  }
}

function outcomeOf(entry: AccessRecord): 'proxied' | 'denied' | 'failed' {
  return entry.error === undefined ? 'proxied' : entry.reason !== undefined ? 'denied' : 'failed';
}
