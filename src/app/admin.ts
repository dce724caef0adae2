// The admin API, on 127.0.0.1:15000 in the agent's own network namespace only: what this agent
// thinks is going on (/config_dump, /connections, /trust) and its log levels (/logging). Loopback only, so
// pods (other namespaces) and other nodes cannot reach it; `ferry inspect` reads it.
import * as crypto from 'node:crypto';
import type * as http from 'node:http';
import type { CaptureEngine } from '../capture';
import { spiffeUri, type WorkloadCertificates } from '../identity';
import type { NodeProxy } from '../proxy';
import type { ClusterState, Workload } from '../state';
import { canonicalRevision, canonicalService, isLogLevel, LOG_LEVELS, workloadName, type LogLevels } from '../telemetry';
import type {
  CertificateDump,
  ConfigDump,
  ConnectionDump,
  ConnectionsDump,
  LoggingDump,
  MapDump,
  TrustAnchorDump,
  TrustDump,
  WorkloadDump,
  HandoverDump,
} from './admin-types';
import { type ListenAt, listenHttp, sendJson, sendText } from './http-server';
import type { TrustState } from './trust';

export interface AdminSources {
  node: string;
  state: ClusterState;
  proxy: NodeProxy;
  capture: CaptureEngine;
  certificates: WorkloadCertificates;
  levels: LogLevels;
  /** uids enrolled now. */
  enrolled(): string[];
  /** Pods whose traffic is refused, and why. */
  refusedPods(): Array<{ uid: string; pod: string; reason: string }>;
  /** The last sample of the maps' occupancy, and when it was taken. */
  mapSample(): { maps: MapDump[]; sampledAt?: Date };
  notReadyReason(): string | undefined;
  /** The CA generation caught up with, and where the trust bundle comes from. */
  trust: { source: string; state(): TrustState };
  /** Which agent answers (several may share the node's ports during a hand-over) and where its hand-over stands. */
  handover(): HandoverDump;
}

const INDEX = `Ferry agent admin API
  GET  /config_dump    workloads, services, policies, certificates (no keys), BPF links and maps
  GET  /connections    open proxied connections
  GET  /trust          CA generation, phase and issuer caught up with; trusted roots; certificates' issuers
  GET  /handover       this agent (pid, Pod) and its hand-over: from a predecessor, to a successor
  GET  /logging        log levels
  POST /logging?level=LEVEL[&component=NAME]   change the level (all, or one component); level=reset drops a component's override
`;

export function startAdminServer(sources: AdminSources, port: ListenAt, host = '127.0.0.1'): Promise<http.Server> {
  return listenHttp(
    (req, res) => {
      const url = new URL(req.url ?? '/', 'http://admin');
      const route = `${req.method} ${url.pathname}`;
      switch (route) {
        case 'GET /':
          sendText(res, 200, INDEX);
          return;
        case 'GET /config_dump':
          sendJson(res, 200, configDump(sources));
          return;
        case 'GET /connections':
          sendJson(res, 200, connectionsDump(sources.proxy));
          return;
        case 'GET /trust':
          sendJson(res, 200, trustDump(sources));
          return;
        case 'GET /handover':
          sendJson(res, 200, sources.handover());
          return;
        case 'GET /logging':
          sendJson(res, 200, loggingDump(sources.levels));
          return;
        case 'POST /logging':
        case 'PUT /logging': {
          const error = changeLogging(sources.levels, url.searchParams);
          if (error) sendText(res, 400, `${error}\n`);
          else sendJson(res, 200, loggingDump(sources.levels));
          return;
        }
        default:
          if (['/', '/config_dump', '/connections', '/trust', '/handover', '/logging'].includes(url.pathname)) {
            sendText(res, 405, `method ${req.method} not allowed on ${url.pathname}\n`);
          } else {
            sendText(res, 404, `not found: ${url.pathname}\n\n${INDEX}`);
          }
      }
    },
    port,
    host,
  );
}

/** A validation message for bad parameters, or undefined once applied. */
export function changeLogging(levels: LogLevels, params: URLSearchParams): string | undefined {
  const level = params.get('level');
  const component = params.get('component') ?? undefined;
  if (level === null) return `missing level: POST /logging?level=LEVEL[&component=NAME], LEVEL one of ${LOG_LEVELS.join(', ')}`;
  if (component !== undefined && !/^[a-z][a-z0-9-]{0,31}$/.test(component)) return `component "${component}" is not a component name`;
  if (level === 'reset') {
    if (component === undefined) return 'level=reset needs a component';
    levels.reset(component);
    return undefined;
  }
  if (!isLogLevel(level)) return `level "${level}" is not one of ${LOG_LEVELS.join(', ')}`;
  levels.set(level, component);
  return undefined;
}

export function loggingDump(levels: LogLevels): LoggingDump {
  return { level: levels.level, components: levels.components() };
}

function workloadDump(w: Workload, enrolled: Set<string>, trustDomain: string): WorkloadDump {
  return {
    uid: w.uid,
    namespace: w.namespace,
    name: w.name,
    node: w.node,
    ips: [...w.ips],
    serviceAccount: w.serviceAccount,
    identity: spiffeUri({ trustDomain, namespace: w.namespace, serviceAccount: w.serviceAccount }),
    workloadName: workloadName(w),
    app: canonicalService(w),
    version: canonicalRevision(w),
    protocol: w.meshEnabled ? 'HBONE' : 'TCP',
    enrolled: enrolled.has(w.uid),
  };
}

function certificateDumps(certificates: WorkloadCertificates, now: number): CertificateDump[] {
  return certificates.certificates().map((c) => ({
    identity: spiffeUri(c.identity),
    principal: c.principal,
    serial: c.serial,
    issuer: c.issuer,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    state: now < c.notBefore.getTime() ? 'not yet valid' : now >= c.notAfter.getTime() ? 'expired' : 'valid',
    expiresInSeconds: Math.floor((c.notAfter.getTime() - now) / 1000),
    chain: [...c.chainPem],
  }));
}

function trustBundleDump(certificates: WorkloadCertificates): TrustAnchorDump[] {
  return certificates.trustBundle().map((pem) => {
    const root = new crypto.X509Certificate(pem);
    return {
      subject: root.subject.split('\n').join(', '),
      notAfter: new Date(root.validTo).toISOString(),
      fingerprint256: root.fingerprint256,
    };
  });
}

export function trustDump(sources: Pick<AdminSources, 'node' | 'certificates' | 'trust'>): TrustDump {
  const state = sources.trust.state();
  return {
    node: sources.node,
    source: sources.trust.source,
    generation: state.generation,
    ...(state.phase !== undefined ? { phase: state.phase } : {}),
    ...(state.issuer !== undefined ? { issuer: state.issuer } : {}),
    roots: trustBundleDump(sources.certificates),
    certificates: sources.certificates
      .certificates()
      .map((c) => ({ principal: c.principal, issuer: c.issuer, notAfter: c.notAfter.toISOString() })),
  };
}

export function configDump(sources: AdminSources): ConfigDump {
  const { state, capture, certificates } = sources;
  const enrolled = new Set(sources.enrolled());
  const reason = sources.notReadyReason();
  const sample = sources.mapSample();
  return {
    node: sources.node,
    revision: state.revision,
    policyRevision: state.policyRevision,
    ready: reason === undefined ? { ready: true } : { ready: false, reason },
    workloads: state.workloads.map((w) => workloadDump(w, enrolled, certificates.trustDomain)),
    services: [...state.services],
    policies: {
      authorizationPolicies: [...state.authorizationPolicies],
      peerAuthentications: [...state.peerAuthentications],
      warnings: [...state.policies.warnings],
    },
    certificates: certificateDumps(certificates, Date.now()),
    trustBundle: trustBundleDump(certificates),
    bpf: { links: capture.linkStates(), maps: sample.maps, mapsSampledAt: sample.sampledAt?.toISOString(), verdicts: capture.verdicts() },
    refusedPods: sources.refusedPods(),
  };
}

export function connectionsDump(proxy: NodeProxy, now = Date.now()): ConnectionsDump {
  const connections: ConnectionDump[] = proxy.tracker.list().map((c) => ({
    id: c.id,
    direction: c.direction,
    source: c.source,
    destination: c.destination,
    path: c.record.path,
    sourceWorkload: c.record.sourceWorkload,
    sourceNamespace: c.record.sourceNamespace,
    sourcePrincipal: c.record.sourcePrincipal,
    destinationService: c.record.destinationService,
    destinationWorkload: c.record.destinationWorkload,
    destinationNamespace: c.record.destinationNamespace,
    destinationPrincipal: c.record.destinationPrincipal,
    bytesSent: c.counts.sent,
    bytesReceived: c.counts.received,
    startedAt: new Date(c.startedAt).toISOString(),
    ageMs: now - c.startedAt,
  }));
  return { connections };
}
