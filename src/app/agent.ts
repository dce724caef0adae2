// Wiring of `ferry agent`: construction and start order of capture, state, proxy and readiness.
import type * as http from 'node:http';
import type * as net from 'node:net';
import { PORTS, type AgentConfig } from '../config';
import { CaptureEngine } from '../capture';
import { assertKernelReady, probeKernel } from '../native';
import {
  LocalCaClient, WorkloadCertificates, watchTrustBundle, writeAgentTrustStatus, type CaChange,
} from '../identity';
import { NodeProxy, type ProxyPod } from '../proxy';
import { ClusterState, watchSnapshot, type ClusterSnapshot } from '../state';
import { IdentityTlsProvider } from '../tls';
import type { Logger } from '../telemetry';
import { PolicyAuthorizer } from './authorizer';
import { netnsDialer } from './dialer';
import { startReadinessServer } from './readiness';
import { PodReconciler } from './pod-reconciler';

export interface Agent {
  readonly state: ClusterState;
  readonly certificates: WorkloadCertificates;
  readonly proxy: NodeProxy;
  readonly capture: CaptureEngine;
  /** Drain and stop; see NodeProxy.drain. */
  stop(): Promise<void>;
}

const DIAL_TIMEOUT_MS = 5000;
/** How often the agent looks at the CA directory for a new trust bundle or issuer. */
const CA_POLL_MS = 500;

export async function startAgent(config: AgentConfig, log: Logger): Promise<Agent> {
  const report = probeKernel();
  assertKernelReady(report);
  log.info({ node: config.node, kernel: report.kernelRelease }, 'kernel checks passed');

  const state = new ClusterState();
  const certificates = new WorkloadCertificates({
    ca: new LocalCaClient(config.caDir), trustDomain: config.trustDomain, ttlSeconds: config.certTtlSeconds,
    log: log.child({ component: 'certificates' }),
  });
  await certificates.refreshTrustBundle();
  const tls = new IdentityTlsProvider(certificates, log.child({ component: 'tls' }));
  let caGeneration = 0;
  // The sandbox's `ca rotate` waits for every agent to report the generation it has loaded and who
  // issued its certificates before it moves to the next phase.
  const reportTrust = (): void => {
    try {
      writeAgentTrustStatus(config.caDir, {
        node: config.node, pid: process.pid, generation: caGeneration,
        certificates: certificates.certificates().map((c) => ({ principal: c.principal, issuer: c.issuer, notAfter: c.notAfter.toISOString() })),
      });
    } catch (err) {
      log.warn({ err }, 'could not write trust status');
    }
  };
  const stopCaWatch = watchTrustBundle(config.caDir, CA_POLL_MS, (change: CaChange) => {
    certificates.setTrustBundle(change.roots);
    const renewal = change.issuerChanged && !change.first
      ? certificates.renewAll(`CA issuer is now ${change.issuer}`) : Promise.resolve();
    renewal.then(() => {
      caGeneration = change.generation;
      reportTrust();
    }, (err: Error) => log.error({ err }, 're-issuing certificates after an issuer change failed'));
    if (!change.first) log.info({ generation: change.generation, phase: change.phase, issuer: change.issuer }, 'CA changed');
  }, (err) => log.error({ err }, 'CA directory unreadable'));
  certificates.onChange(() => reportTrust());
  const authorizer = new PolicyAuthorizer(state, log);
  const capture = await CaptureEngine.start({
    bpfDir: config.bpfDir, pinDir: config.pinDir, cgroupPath: config.cgroupPath,
    serviceLoadBalancing: config.serviceLoadBalancing, log,
  });
  const proxy = new NodeProxy({
    resolver: state,
    origins: {
      originalDestination(pod: ProxyPod, accepted: net.Socket) {
        const family = accepted.remoteFamily === 'IPv6' ? 6 : 4;
        return capture.originalDestination(pod.netnsCookie, family, accepted.remotePort ?? 0);
      },
    },
    dialer: netnsDialer(DIAL_TIMEOUT_MS),
    tls,
    authorizer,
    hbone: { enabled: config.hbone },
    localShortcut: config.sameNodeShortcut,
    log,
  });
  if (!config.hbone) log.warn('HBONE is off (--no-hbone): meshed traffic between pods travels in plaintext');
  const reconciler = new PodReconciler(config.node, state, capture, proxy, certificates, log);

  let synced = false;
  const readiness: http.Server = await startReadinessServer({
    notReadyReason() {
      if (!synced) return 'state not synced';
      return reconciler.notReadyReason() ?? (proxy.listening() ? undefined : 'listeners not open');
    },
  }, PORTS.readiness);

  const unwatch = watchSnapshot(config.snapshotPath, (snapshot: ClusterSnapshot) => {
    state.replace(snapshot);
    authorizer.stateReplaced(snapshot.revision);
    capture.syncServices(state.services);
    reconciler.schedule().then(() => {
      if (!synced) log.info({ revision: snapshot.revision, pods: capture.enrolledUids() }, 'state synced');
      synced = true;
    }, (err: Error) => log.error({ err }, 'reconcile failed'));
  }, (err) => log.error({ err }, 'snapshot rejected; keeping the previous one'));


  return {
    state, proxy, capture, certificates,
    async stop() {
      unwatch();
      stopCaWatch();
      readiness.close();
      const { finished, closed } = await proxy.drain(config.drainMs);
      log.info({ finished, closed }, 'drained');
      capture.close();
      tls.close();
      certificates.close();
    },
  };
}
