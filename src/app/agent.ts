// Wiring of `ferry agent`: construction and start order of capture, state, proxy, and the agent's
// own servers: readiness (:15021), metrics (:15020) and the admin API (127.0.0.1:15000).
import type * as http from 'node:http';
import type * as net from 'node:net';
import { Registry } from 'prom-client';
import { PORTS, type AgentConfig } from '../config';
import { CaptureEngine, ownCgroup, type MapState } from '../capture';
import { assertKernelReady, netnsCookie, probeKernel } from '../native';
import { GrpcCaClient, WorkloadCertificates } from '../identity';
import { NodeProxy, http2RuntimeProblem, streamWindowFor, type HboneOptions, type ProxyPod } from '../proxy';
import { ClusterState, type ConfigSink, type ConfigSource } from '../state';
import { GrpcConfigSource } from '../config-client';
import { IdentityTlsProvider } from '../tls';
import { HealthMetrics, TrafficMetrics, workloadName, type HealthSource, type Logger, type RootLogger } from '../telemetry';
import { startAdminServer } from './admin';
import { PolicyAuthorizer } from './authorizer';
import { keepaliveSettings, netnsDialer, socketOptions } from './dialer';
import { ANY_ADDRESS, listenHttp, sendText } from './http-server';
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

/** `configSource`: where the state comes from; by default the one the configuration selects (configSourceFor). */
export async function startAgent(config: AgentConfig, logging: RootLogger, configSource?: ConfigSource): Promise<Agent> {
  const { log } = logging;
  // HBONE servers face every pod with a certificate: no start on an HTTP/2 stack with known floods.
  const runtime = http2RuntimeProblem(process.versions);
  if (runtime) throw new AgentRuntimeError(runtime);
  const report = probeKernel();
  assertKernelReady(report);
  log.info({ node: config.node, kernel: report.kernelRelease }, 'kernel checks passed');

  const state = new ClusterState();
  const identity = await startIdentity(config, log);
  const { certificates, trust } = identity;
  const tls = new IdentityTlsProvider(certificates, log.child({ component: 'tls' }));
  const registry = new Registry();
  const traffic = config.trafficMetrics ? new TrafficMetrics(registry) : undefined;
  const health = new HealthMetrics(registry);
  const authorizer = new PolicyAuthorizer(state, log, health);
  const own = ownCgroup();
  log.info({ cgroup: own.path, cgroupId: own.id.toString() }, 'agent cgroup: only its marked sockets pass capture');
  const capture = await CaptureEngine.start({
    bpfDir: config.bpfDir,
    pinDir: config.pinDir,
    cgroupPath: config.cgroupPath,
    agentCgroupId: own.id,
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
  const servers: http.Server[] = [];
  servers.push(await startReadinessServer({ notReadyReason }, PORTS.readiness));
  const render = coalesced(() => registry.metrics());
  servers.push(
    await listenHttp(
      async (req, res) => {
        const pathname = new URL(req.url ?? '/', 'http://metrics').pathname;
        if (req.method !== 'GET' || (pathname !== '/metrics' && pathname !== '/stats/prometheus')) {
          sendText(res, 404, 'not found: metrics are at GET /metrics\n');
          return;
        }
        sendText(res, 200, await render(), registry.contentType);
      },
      PORTS.metrics,
      ANY_ADDRESS,
    ),
  );
  servers.push(
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
      },
      PORTS.admin,
    ),
  );

  // Each delta: the state first, then what follows from it — policy re-checks, the BPF Service table, and
  // (once the source holds a whole state, so enrolment never prunes pods it has not heard of yet) enrolment.
  const given = configSource ?? configSourceFor(config, log);
  // Workloads from the controller carry no network namespace: the node's pod records say which is whose.
  const source =
    config.podNetnsDir !== undefined ? new PodNetnsDirectory(given, { dir: config.podNetnsDir, node: config.node, log }) : given;
  const sink: ConfigSink = {
    apply(delta, update) {
      state.apply(delta, update.revision);
      authorizer.stateReplaced(state.revision);
      capture.syncServices(state.services);
      if (!update.synced) return;
      reconciler.schedule().then(
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
  source.start(sink);

  return {
    state,
    configSource: source,
    proxy,
    capture,
    certificates,
    metrics: registry,
    notReadyReason,
    async stop() {
      await source.stop();
      identity.stop();
      reconciler.stop();
      clearInterval(mapTimer);
      for (const server of servers) server.close();
      const { finished, closed } = await proxy.drain(config.drainMs);
      log.info({ finished, closed }, 'drained');
      capture.close();
      tls.close();
      certificates.close();
    },
  };
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
