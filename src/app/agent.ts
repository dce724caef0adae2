// Wiring of `ferry agent`: construction and start order of capture, state, proxy and readiness.
import type * as http from 'node:http';
import type * as net from 'node:net';
import { PORTS, type AgentConfig } from '../config';
import { CaptureEngine } from '../capture';
import { assertKernelReady, probeKernel } from '../native';
import { NodeProxy, type ProxyPod } from '../proxy';
import { ClusterState, watchSnapshot, type ClusterSnapshot } from '../state';
import type { Logger } from '../telemetry';
import { netnsDialer } from './dialer';
import { startReadinessServer } from './readiness';
import { PodReconciler } from './pod-reconciler';

export interface Agent {
  readonly state: ClusterState;
  readonly proxy: NodeProxy;
  readonly capture: CaptureEngine;
  /** Drain and stop; see NodeProxy.drain. */
  stop(): Promise<void>;
}

const DIAL_TIMEOUT_MS = 5000;

export async function startAgent(config: AgentConfig, log: Logger): Promise<Agent> {
  const report = probeKernel();
  assertKernelReady(report);
  log.info({ node: config.node, kernel: report.kernelRelease }, 'kernel checks passed');

  const state = new ClusterState();
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
    log,
  });
  const reconciler = new PodReconciler(config.node, state, capture, proxy, log);

  let synced = false;
  const readiness: http.Server = await startReadinessServer({
    notReadyReason() {
      if (!synced) return 'state not synced';
      return reconciler.notReadyReason() ?? (proxy.listening() ? undefined : 'listeners not open');
    },
  }, PORTS.readiness);

  const unwatch = watchSnapshot(config.snapshotPath, (snapshot: ClusterSnapshot) => {
    state.replace(snapshot);
    capture.syncServices(state.services);
    reconciler.schedule().then(() => {
      if (!synced) log.info({ revision: snapshot.revision, pods: capture.enrolledUids() }, 'state synced');
      synced = true;
    }, (err: Error) => log.error({ err }, 'reconcile failed'));
  }, (err) => log.error({ err }, 'snapshot rejected; keeping the previous one'));


  return {
    state, proxy, capture,
    async stop() {
      unwatch();
      readiness.close();
      const { finished, closed } = await proxy.drain(config.drainMs);
      log.info({ finished, closed }, 'drained');
      capture.close();
    },
  };
}
