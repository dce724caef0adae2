// Wiring of `ferry agent`: construction and start order of capture, state, proxy, and the agent's
// own servers: readiness (:15021), metrics (:15020) and the admin API (127.0.0.1:15000).
import type * as http from 'node:http';
import type * as net from 'node:net';
import { Registry } from 'prom-client';
import { PORTS, type AgentConfig } from '../config';
import { CaptureEngine, ownCgroup, type MapState, type PodListeners } from '../capture';
import { assertKernelReady, fdOf, netnsCookie, probeKernel, socketInfo } from '../native';
import {
  HandoverServer,
  PredecessorLink,
  closeTaken,
  type NodeListenerKind,
  type OfferedListener,
  type PodListenerKind,
  type PredecessorRole,
  type TakenListeners,
  type TakenPodListeners,
} from '../handover';
import { GrpcCaClient, WorkloadCertificates } from '../identity';
import { NodeProxy, http2RuntimeProblem, streamWindowFor, type HboneOptions, type ProxyPod } from '../proxy';
import { ClusterState, type ConfigSink, type ConfigSource } from '../state';
import { GrpcConfigSource } from '../config-client';
import { IdentityTlsProvider } from '../tls';
import { HealthMetrics, TrafficMetrics, workloadName, type HealthSource, type Logger, type RootLogger } from '../telemetry';
import { startAdminServer } from './admin';
import { PolicyAuthorizer } from './authorizer';
import { keepaliveSettings, netnsDialer, socketOptions } from './dialer';
import { ANY_ADDRESS, type ListenAt, listenHttp, sendText } from './http-server';
import type { HandoverDump } from './admin-types';
import { startReadinessServer } from './readiness';
import { PodReconciler } from './pod-reconciler';
import { PodNetnsDirectory } from './pod-netns-directory';
import { followTrust, type TrustState } from './trust';
import { AgentRuntimeError } from './errors';

export interface Agent {
  readonly state: ClusterState;
  /** Where the state comes from (the controller's config stream; an in-memory source in tests). */
  readonly configSource: ConfigSource;
  readonly certificates: WorkloadCertificates;
  readonly proxy: NodeProxy;
  readonly capture: CaptureEngine;
  readonly metrics: Registry;
  /** undefined when ready: what :15021/healthz/ready answers. */
  notReadyReason(): string | undefined;
  /** Drain and stop; see NodeProxy.drain. */
  stop(): Promise<void>;
}

/** The controller's config stream, as --controller and its settings say. */
export function configSourceFor(config: AgentConfig, log: Logger): ConfigSource {
  const settings = config.controller;
  return new GrpcConfigSource({
    address: settings.address,
    caFile: settings.caFile,
    tokenFile: settings.tokenFile,
    node: config.node,
    ...(settings.serverName !== undefined ? { serverName: settings.serverName } : {}),
    log,
  });
}

/** What the agent cannot recover from after it started: the CLI ends the process. */
export interface AgentHooks {
  fatal(err: Error): void;
}

/**
 * `configSource`: where the state comes from; by default the one the configuration selects (configSourceFor).
 * `hooks.fatal`: a hand-over that failed half-way (this agent must not run beside the predecessor it could
 * not take over from); by default the error is logged and the process exits.
 */
export async function startAgent(
  config: AgentConfig,
  logging: RootLogger,
  configSource?: ConfigSource,
  hooks: AgentHooks = {
    fatal(err) {
      logging.log.fatal({ err }, 'agent cannot go on');
      process.exit(1);
    },
  },
): Promise<Agent> {
  const { log } = logging;
  // HBONE servers face every pod with a certificate: no start on an HTTP/2 stack with known floods.
  const runtime = http2RuntimeProblem(process.versions);
  if (runtime) throw new AgentRuntimeError(runtime);
  const report = probeKernel();
  assertKernelReady(report);
  log.info({ node: config.node, kernel: report.kernelRelease }, 'kernel checks passed');

  // An agent already running on this node hands its listeners over: hello first, so it knows a successor
  // is coming; it keeps serving until this agent has a synced state and asks for them.
  const own = ownCgroup();
  const predecessor = await PredecessorLink.connect(
    config.handoverSocket,
    {
      node: config.node,
      pinDir: config.pinDir,
      cgroupPath: config.cgroupPath,
      ...(config.podName !== undefined ? { pod: config.podName } : {}),
    },
    log,
  );
  if (predecessor) {
    log.info(
      { predecessor: predecessor.hello.pid, pod: predecessor.hello.pod },
      'an agent runs on this node: taking its listeners over once synced',
    );
  }
  try {
    return await startWith(config, logging, own, predecessor, configSource, hooks);
  } catch (err) {
    predecessor?.abandon();
    throw err;
  }
}

async function startWith(
  config: AgentConfig,
  logging: RootLogger,
  own: { path: string; id: bigint },
  predecessor: PredecessorLink | undefined,
  configSource: ConfigSource | undefined,
  options: AgentHooks,
): Promise<Agent> {
  const { log } = logging;
  const state = new ClusterState();
  const identity = await startIdentity(config, log);
  const { certificates, trust } = identity;
  const tls = new IdentityTlsProvider(certificates, log.child({ component: 'tls' }));
  const registry = new Registry();
  const traffic = config.trafficMetrics ? new TrafficMetrics(registry) : undefined;
  const health = new HealthMetrics(registry);
  const authorizer = new PolicyAuthorizer(state, log, health);
  log.info({ cgroup: own.path, cgroupId: own.id.toString() }, 'agent cgroup: only its marked sockets pass capture');
  // The predecessor dials for the connections it drains: its cgroup passes too until it has exited.
  const peerCgroupId = predecessor && predecessor.cgroupId !== own.id ? predecessor.cgroupId : undefined;
  const capture = await CaptureEngine.start({
    bpfDir: config.bpfDir,
    pinDir: config.pinDir,
    cgroupPath: config.cgroupPath,
    agentCgroupId: own.id,
    ...(peerCgroupId !== undefined ? { peerCgroupId } : {}),
    serviceLoadBalancing: config.serviceLoadBalancing,
    log,
  });
  const { limits } = config;
  const keepalive = keepaliveSettings(limits.tcpKeepaliveSeconds);
  const proxy = new NodeProxy({
    resolver: state,
    origins: {
      originalDestination(pod: ProxyPod, accepted: net.Socket) {
        const family = accepted.remoteFamily === 'IPv6' ? 6 : 4;
        return capture.originalDestination(pod.netnsCookie, family, accepted.remotePort ?? 0);
      },
    },
    dialer: netnsDialer(Math.round(limits.connectTimeoutSeconds * 1000)),
    sockets: socketOptions(keepalive, log),
    limits: { maxConnectionsPerPod: limits.maxConnectionsPerPod, idleTimeoutMs: Math.round(limits.idleTimeoutSeconds * 1000) },
    tls,
    authorizer,
    hbone: hboneOptions(config),
    localShortcut: config.sameNodeShortcut,
    metrics: traffic,
    log,
  });
  if (!config.hbone) log.warn('HBONE is off (--no-hbone): meshed traffic between pods travels in plaintext');
  const reconciler = new PodReconciler(config.node, state, capture, proxy, certificates, log, { netnsCookie }, health);

  // Counting a map's entries walks every key: done on a timer, on libuv's pool, never per scrape.
  let mapSample: { maps: MapState[]; sampledAt?: Date } = { maps: capture.mapCapacities().map((m) => ({ ...m, entries: 0 })) };
  const sampleMaps = (): void => {
    capture.mapStats().then(
      (maps) => {
        mapSample = { maps, sampledAt: new Date() };
      },
      (err: Error) => log.warn({ err }, 'counting BPF map entries failed'),
    );
  };
  sampleMaps();
  const mapTimer = setInterval(sampleMaps, Math.round(limits.mapSampleSeconds * 1000));
  mapTimer.unref();

  let synced = false;
  // Asked of the kernel each time: a program detached behind the agent's back makes it unready.
  const notReadyReason = (): string | undefined => {
    if (!synced) return 'state not synced';
    return capture.detachedReason() ?? reconciler.notReadyReason() ?? (proxy.listening() ? undefined : 'listeners not open');
  };
  health.observe(healthSource(state, capture, proxy, certificates, reconciler, notReadyReason, () => mapSample.maps));
  const handover: HandoverDump = {
    pid: process.pid,
    ...(config.podName !== undefined ? { pod: config.podName } : {}),
    node: config.node,
    from: predecessor ? { state: 'in-progress', pid: predecessor.hello.pid, ...podOf(predecessor.hello) } : { state: 'none' },
    to: { state: 'none' },
  };
  const render = coalesced(() => registry.metrics());
  const servers = new Map<NodeListenerKind, http.Server>();
  // The agent's own servers, on their ports or on the predecessor's sockets for them.
  const startServers = async (at: Record<NodeListenerKind, ListenAt>): Promise<void> => {
    servers.set('readiness', await startReadinessServer({ notReadyReason }, at.readiness));
    servers.set(
      'metrics',
      await listenHttp(
        async (req, res) => {
          const pathname = new URL(req.url ?? '/', 'http://metrics').pathname;
          if (req.method !== 'GET' || (pathname !== '/metrics' && pathname !== '/stats/prometheus')) {
            sendText(res, 404, 'not found: metrics are at GET /metrics\n');
            return;
          }
          sendText(res, 200, await render(), registry.contentType);
        },
        at.metrics,
        ANY_ADDRESS,
      ),
    );
    servers.set(
      'admin',
      await startAdminServer(
        {
          node: config.node,
          state,
          proxy,
          capture,
          certificates,
          levels: logging.levels,
          enrolled: () => reconciler.enrolled().map((w) => w.uid),
          refusedPods: () => reconciler.refused(),
          mapSample: () => mapSample,
          notReadyReason,
          trust: { source: identity.source, state: () => trust.state() },
          handover: () => handover,
        },
        at.admin,
      ),
    );
  };
  if (!predecessor) await startServers({ readiness: PORTS.readiness, metrics: PORTS.metrics, admin: PORTS.admin });

  // Each delta: the state first, then what follows from it — policy re-checks, the BPF Service table, and
  // (once the source holds a whole state, so enrolment never prunes pods it has not heard of yet) enrolment.
  const given = configSource ?? configSourceFor(config, log);
  // Workloads from the controller carry no network namespace: the node's pod records say which is whose.
  const source =
    config.podNetnsDir !== undefined ? new PodNetnsDirectory(given, { dir: config.podNetnsDir, node: config.node, log }) : given;
  // With a predecessor, the first synced state takes its listeners over before any pass of its own.
  let first: Promise<void> | undefined;
  const sink: ConfigSink = {
    apply(delta, update) {
      state.apply(delta, update.revision);
      authorizer.stateReplaced(state.revision);
      capture.syncServices(state.services);
      if (!update.synced || handedOff) return;
      first ??= predecessor ? takeOver(predecessor) : Promise.resolve();
      first
        .then(() => reconciler.schedule())
        .then(
          () => {
            if (!synced)
              log.info(
                { revision: state.revision, version: update.version, source: source.description, pods: capture.enrolledUids() },
                'state synced',
              );
            synced = true;
            // Enrolments change the pod maps: count them now rather than at the next tick.
            sampleMaps();
          },
          (err: Error) => log.error({ err }, 'reconcile failed'),
        );
    },
  };

  /**
   * Take the predecessor's listeners: adopt its pods on them (the first pass), serve the node's ports on
   * its sockets, then `go`: it stops accepting, and drains. Until `go`, both accept on the same sockets.
   * A failure before `go` ends this agent (the predecessor carries on); the runtime starts it again.
   */
  const takeOver = async (link: PredecessorLink): Promise<void> => {
    let taken: TakenListeners | undefined;
    try {
      taken = await link.takeListeners();
      const pods = new Map<string, PodListeners>();
      for (const [uid, t] of taken.pods) pods.set(uid, podListenersOf(t));
      const node = taken.node;
      taken = { pods: new Map(), node: {} };
      reconciler.offerHandedOver(pods);
      await reconciler.schedule();
      await startServers({
        readiness: node.readiness !== undefined ? { fd: node.readiness } : PORTS.readiness,
        metrics: node.metrics !== undefined ? { fd: node.metrics } : PORTS.metrics,
        admin: node.admin !== undefined ? { fd: node.admin } : PORTS.admin,
      });
    } catch (err) {
      if (taken) closeTaken(taken);
      handover.from = { ...handover.from, state: 'failed', reason: (err as Error).message };
      options.fatal(new AgentRuntimeError(`taking over from the agent before this one (pid ${link.hello.pid}): ${(err as Error).message}`));
      throw err;
    }
    try {
      const { open } = await link.go();
      log.info(
        { predecessor: link.hello.pid, open, pods: capture.enrolledUids().length },
        'took over: the predecessor accepts nothing more and drains',
      );
    } catch (err) {
      // `go` was sent: this agent serves everything whether or not the predecessor answered.
      log.warn({ err, predecessor: link.hello.pid }, 'the predecessor did not confirm the hand-over');
    }
    handover.from = { ...handover.from, state: 'complete' };
    link.watchExit(() => {
      log.info({ predecessor: link.hello.pid }, 'the predecessor exited');
      if (peerCgroupId !== undefined) capture.setPeerCgroup(0n);
    });
    listenForSuccessor();
  };

  // This agent's own successor, some day: the node's hand-over socket is this agent's once it serves.
  let successors: HandoverServer | undefined;
  let handedOff: Promise<void> | undefined;
  const role: PredecessorRole = {
    node: config.node,
    pinDir: config.pinDir,
    cgroupId: own.id,
    ...(config.podName !== undefined ? { pod: config.podName } : {}),
    async freeze(successor) {
      handover.to = { state: 'in-progress', pid: successor.pid, ...podOf(successor) };
      await reconciler.pause();
      return offeredListeners(capture, servers);
    },
    thaw() {
      handover.to = { state: 'none' };
      reconciler.resume();
    },
    release(successor) {
      handover.to = { state: 'draining', pid: successor.pid, ...podOf(successor) };
      const open = proxy.tracker.size;
      handedOff = handOff();
      return { open };
    },
  };
  const listenForSuccessor = (): void => {
    try {
      successors = HandoverServer.listen(config.handoverSocket, role, log);
    } catch (err) {
      log.error({ err, socket: config.handoverSocket }, 'no hand-over socket: a successor will have to start without taking over');
    }
  };
  const closeServers = (): void => {
    for (const server of servers.values()) server.close();
  };
  /** After `go`: accept nothing more, stop following the controller, drain, then let go of the kernel handles. */
  const handOff = async (): Promise<void> => {
    const drained = proxy.drain(config.drainMs, { handOff: true });
    closeServers();
    reconciler.stop();
    clearInterval(mapTimer);
    await source.stop();
    identity.stop();
    const { finished, closed } = await drained;
    log.info({ finished, closed }, 'drained after the hand-over; waiting to be stopped');
    capture.close();
    tls.close();
    certificates.close();
  };

  source.start(sink);
  if (!predecessor) listenForSuccessor();

  return {
    state,
    configSource: source,
    proxy,
    capture,
    certificates,
    metrics: registry,
    notReadyReason,
    async stop() {
      if (handedOff) {
        await handedOff;
        return;
      }
      successors?.close();
      await source.stop();
      identity.stop();
      reconciler.stop();
      clearInterval(mapTimer);
      closeServers();
      const { finished, closed } = await proxy.drain(config.drainMs);
      log.info({ finished, closed }, 'drained');
      capture.close();
      tls.close();
      certificates.close();
    },
  };
}

/** The Pod name of a hello, when it gave one. */
function podOf(peer: { pod?: string }): { pod?: string } {
  return peer.pod !== undefined ? { pod: peer.pod } : {};
}

/** A pod's listeners as the predecessor handed them over, in the shape enrolment uses. */
function podListenersOf(taken: TakenPodListeners): PodListeners {
  const fds = (kind: keyof TakenPodListeners['byKind']) => taken.byKind[kind].map((l) => l.fd);
  return {
    netnsCookie: taken.netnsCookie,
    outbound: fds('outbound'),
    inbound: fds('inbound'),
    hbone: fds('hbone'),
    inboundByFamily: new Map(taken.byKind.inbound.map((l) => [l.family, l.fd])),
  };
}

/** Every listener this agent serves, for its successor: each enrolled pod's, then the node's own. */
function offeredListeners(capture: CaptureEngine, servers: Map<NodeListenerKind, http.Server>): OfferedListener[] {
  const offered: OfferedListener[] = [];
  const describe = (fd: number): { family: 4 | 6; port: number } => {
    const info = socketInfo(fd);
    return { family: info.family === 6 ? 6 : 4, port: info.port };
  };
  for (const { workload, netnsCookie, listeners } of capture.enrolledListeners()) {
    const pod = { uid: workload.uid, namespace: workload.namespace, name: workload.name, netnsCookie: netnsCookie.toString() };
    const kinds: Array<[PodListenerKind, number[]]> = [
      ['outbound', listeners.outbound],
      ['inbound', listeners.inbound],
      ['hbone', listeners.hbone],
    ];
    for (const [kind, fds] of kinds) for (const fd of fds) offered.push({ message: { kind, pod, ...describe(fd) }, fd });
  }
  for (const [kind, server] of servers) {
    const fd = fdOf(server);
    offered.push({ message: { kind, ...describe(fd) }, fd });
  }
  return offered;
}

/** The agent's certificates and how it follows its CA's trust bundle. */
interface AgentIdentity {
  certificates: WorkloadCertificates;
  trust: { state(): TrustState };
  /** Where the CA is, for the admin API: `controller ADDRESS`. */
  source: string;
  /** Stop following the trust bundle (and close the CA client). */
  stop(): void;
}

/**
 * The controller's CA service signs and streams the trust bundle (same settings as the config stream); the
 * agent holds no CA material. Its reaction to a new bundle (followTrust) is reported through the admin API's /trust.
 */
async function startIdentity(config: AgentConfig, log: Logger): Promise<AgentIdentity> {
  const settings = config.controller;
  const client = new GrpcCaClient({
    address: settings.address,
    caFile: settings.caFile,
    tokenFile: settings.tokenFile,
    ...(settings.serverName !== undefined ? { serverName: settings.serverName } : {}),
  });
  const certificates = new WorkloadCertificates({
    ca: client,
    trustDomain: config.trustDomain,
    ttlSeconds: config.certTtlSeconds,
    log: log.child({ component: 'certificates' }),
  });
  const trust = followTrust(certificates, log);
  // No wait for the first bundle: the controller may come up after the agent, as the config stream may.
  const stopWatch = client.watchTrustBundle(trust.onChange, (err) => log.error({ err }, 'CA service unreachable or refused'));
  return {
    certificates,
    trust,
    source: `controller ${settings.address}`,
    stop() {
      stopWatch();
      client.close();
    },
  };
}

/** HBONE limits from the agent's flags: the tunnel buffer is the HTTP/2 connection window, both ways. */
function hboneOptions(config: AgentConfig): HboneOptions {
  const { limits } = config;
  const windows = {
    connectionWindow: limits.maxTunnelBufferBytes,
    streamWindow: streamWindowFor(limits.maxTunnelBufferBytes),
    keepaliveIntervalMs: Math.round(limits.hboneKeepaliveSeconds * 1000),
    keepaliveTimeoutMs: Math.round(limits.hboneKeepaliveTimeoutSeconds * 1000),
  };
  return {
    enabled: config.hbone,
    pool: { ...windows, handshakeTimeoutMs: Math.round(limits.connectTimeoutSeconds * 1000) },
    server: {
      ...windows,
      maxSessionsPerPeer: limits.maxHboneSessionsPerIdentity,
      maxPendingHandshakesPerSource: limits.maxPendingHandshakesPerSource,
    },
  };
}

/**
 * One render for every scrape that arrives while it runs: fifty scrapers at once cost one pass over
 * the registry, not fifty back-to-back on the event loop the proxy shares.
 */
function coalesced(render: () => Promise<string>): () => Promise<string> {
  let running: Promise<string> | undefined;
  return () => {
    running ??= render().finally(() => {
      running = undefined;
    });
    return running;
  };
}

/** What Ferry's health gauges read at scrape time. */
function healthSource(
  state: ClusterState,
  capture: CaptureEngine,
  proxy: NodeProxy,
  certificates: WorkloadCertificates,
  reconciler: PodReconciler,
  notReadyReason: () => string | undefined,
  mapEntries: () => MapState[],
): HealthSource {
  return {
    enrolledWorkloads() {
      const counts = new Map<string, { namespace: string; workload: string; pods: number }>();
      for (const w of reconciler.enrolled()) {
        const name = workloadName(w);
        const key = `${w.namespace}/${name}`;
        const entry = counts.get(key) ?? { namespace: w.namespace, workload: name, pods: 0 };
        entry.pods += 1;
        counts.set(key, entry);
      }
      return [...counts.values()];
    },
    bpfMapEntries: mapEntries,
    bpfVerdicts: () => capture.verdicts().map((v) => ({ labels: { program: v.program, verdict: v.verdict }, count: v.count })),
    refusedConnections: () => proxy.refusalCounts().map((r) => ({ labels: { direction: r.direction, reason: r.reason }, count: r.count })),
    limitsExceeded() {
      const { listeners, admission } = proxy.hboneTotals();
      return [
        { labels: { limit: 'connections_per_pod' }, count: proxy.connectionLimitExceeded },
        { labels: { limit: 'pending_handshakes_per_pod' }, count: listeners.handshakesEvicted },
        { labels: { limit: 'pending_handshakes_per_source' }, count: admission.handshakesEvicted },
        { labels: { limit: 'hbone_sessions_per_identity' }, count: admission.sessionsRefused },
        { labels: { limit: 'tls_handshake_timeout' }, count: listeners.handshakesTimedOut },
      ];
    },
    hboneSessionsClosed() {
      const { listeners: l, pool: p } = proxy.hboneTotals();
      const closed = (side: string, reason: string, count: number) => ({ labels: { side, reason }, count });
      return [
        closed('inbound', 'reset_flood', l.sessionsClosedResetFlood),
        closed('inbound', 'settings_flood', l.sessionsClosedSettingsFlood),
        closed('inbound', 'ping_flood', l.sessionsClosedPingFlood),
        closed('inbound', 'keepalive_timeout', l.sessionsClosedKeepalive),
        closed('inbound', 'settings_timeout', l.sessionsClosedSettingsTimeout),
        closed('inbound', 'protocol_error', l.sessionsClosedProtocolError),
        closed('outbound', 'settings_flood', p.settingsFloods),
        closed('outbound', 'ping_flood', p.pingFloods),
        closed('outbound', 'keepalive_timeout', p.keepaliveTimeouts),
        closed('outbound', 'settings_timeout', p.settingsTimeouts),
        closed('outbound', 'protocol_error', p.protocolErrors),
        closed('outbound', 'response_timeout', p.responseTimeouts),
      ];
    },
    hboneDialsFailed() {
      const { pool } = proxy.hboneTotals();
      return [
        { labels: { reason: 'error' }, count: pool.dialFailures },
        { labels: { reason: 'peer_backoff' }, count: pool.failedFast },
      ];
    },
    refusedPods: () => reconciler.refused().length,
    suppressedLogLines: () => [{ labels: { component: 'access' }, count: proxy.suppressedAccessLines }],
    bpfMapCapacities: () => capture.mapCapacities(),
    bpfLinks: () => capture.linkStates(),
    certificates: () => certificates.certificates().map((c) => ({ principal: c.principal, notAfter: c.notAfter })),
    tunnels() {
      const { pool, listeners } = proxy.hboneStats();
      let outboundConnections = 0;
      let outboundStreams = 0;
      for (const entry of pool) {
        outboundConnections += entry.connections.length;
        for (const c of entry.connections) outboundStreams += c.streams;
      }
      let inboundConnections = 0;
      let inboundStreams = 0;
      let pendingHandshakes = 0;
      for (const l of Object.values(listeners)) {
        inboundConnections += l.sessions;
        inboundStreams += l.streams;
        pendingHandshakes += l.pendingHandshakes;
      }
      return { outboundConnections, outboundStreams, inboundConnections, inboundStreams, pendingHandshakes };
    },
    openConnections() {
      let outbound = 0;
      for (const c of proxy.tracker.list()) if (c.direction === 'outbound') outbound += 1;
      return { outbound, inbound: proxy.tracker.size - outbound };
    },
    ready: () => notReadyReason() === undefined,
    stateRevision: () => state.revision,
  };
}
