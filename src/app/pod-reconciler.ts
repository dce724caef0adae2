// Bring the enrolled pods in line with the model: enrol new meshed pods on this node, release
// those gone, re-enrol those whose namespace or addresses changed. One pass at a time.
import type { CaptureEngine } from '../capture';
import type { SpiffeId, WorkloadCertificates } from '../identity';
import type { NodeProxy } from '../proxy';
import type { ClusterState, Workload } from '../state';
import { channels, type HealthMetrics, type Logger } from '../telemetry';

function fingerprint(w: Workload): string {
  return JSON.stringify([w.netnsPath, w.ips, w.excludeOutboundPorts, w.excludeOutboundCidrs, w.serviceAccount]);
}

export class PodReconciler {
  private running: Promise<void> = Promise.resolve();
  private pending = false;
  private readonly current = new Map<string, string>();
  private readonly failures = new Map<string, string>();
  private readonly enrolledWorkloads = new Map<string, Workload>();
  private firstPass = true;
  private readonly log: Logger;

  constructor(
    private readonly node: string,
    private readonly state: ClusterState,
    private readonly capture: CaptureEngine,
    private readonly proxy: NodeProxy,
    private readonly certificates: WorkloadCertificates,
    log: Logger,
    private readonly health?: Pick<HealthMetrics, 'enrolmentFailed'>,
  ) {
    this.log = log.child({ component: 'enrolment' });
  }

  /** Queue a pass; concurrent calls coalesce into one pass after the running one. */
  schedule(): Promise<void> {
    if (this.pending) return this.running;
    this.pending = true;
    this.running = this.running.then(() => {
      this.pending = false;
      return this.pass();
    });
    return this.running;
  }

  notReadyReason(): string | undefined {
    if (this.failures.size === 0) return undefined;
    const [uid, reason] = this.failures.entries().next().value as [string, string];
    return `${this.failures.size} pod(s) not enrolled, e.g. ${uid}: ${reason}`;
  }

  /** The workloads enrolled now. */
  enrolled(): Workload[] {
    return [...this.enrolledWorkloads.values()];
  }

  private async pass(): Promise<void> {
    const desired = new Map(this.state.meshedWorkloadsOn(this.node).map((w) => [w.uid, w]));
    if (this.firstPass) {
      this.firstPass = false;
      await this.capture.pruneStale([...desired.values()]);
    }
    for (const uid of [...this.current.keys()]) {
      const want = desired.get(uid);
      if (!want || fingerprint(want) !== this.current.get(uid)) await this.release(uid);
    }
    for (const workload of desired.values()) {
      if (this.current.has(workload.uid)) continue;
      await this.enrol(workload);
    }
    for (const uid of [...this.failures.keys()]) if (!desired.has(uid)) this.failures.delete(uid);
  }

  private identityOf(workload: Workload): SpiffeId {
    return { trustDomain: this.certificates.trustDomain, namespace: workload.namespace, serviceAccount: workload.serviceAccount };
  }

  private async enrol(workload: Workload): Promise<void> {
    let listeners;
    let stage: 'certificate' | 'listeners' | 'capture' = 'certificate';
    try {
      // The pod's certificate first: once enrolled its traffic is meshed, and HBONE needs it.
      await this.certificates.fetch(this.identityOf(workload));
      stage = 'listeners';
      listeners = await this.capture.openListeners(workload);
      await this.proxy.addPod({
        uid: workload.uid, namespace: workload.namespace, name: workload.name, serviceAccount: workload.serviceAccount,
        netnsPath: workload.netnsPath, netnsCookie: listeners.netnsCookie, ips: workload.ips,
      }, { outbound: listeners.outbound, inbound: listeners.inbound, hbone: listeners.hbone });
      stage = 'capture';
      await this.capture.enrol(workload, listeners);
    } catch (err) {
      this.proxy.removePod(workload.uid);
      this.failures.set(workload.uid, (err as Error).message);
      this.health?.enrolmentFailed(stage);
      this.log.error({ err, pod: workload.uid, stage }, 'enrolment failed');
      return;
    }
    this.failures.delete(workload.uid);
    this.current.set(workload.uid, fingerprint(workload));
    this.enrolledWorkloads.set(workload.uid, workload);
    if (channels.podEnrolment.hasSubscribers) channels.podEnrolment.publish({ uid: workload.uid, action: 'enrolled' });
  }

  private async release(uid: string): Promise<void> {
    this.capture.release(uid);
    this.proxy.removePod(uid);
    this.current.delete(uid);
    const gone = this.enrolledWorkloads.get(uid);
    this.enrolledWorkloads.delete(uid);
    // Service accounts are shared: the certificate goes only with the last pod that uses it.
    if (gone && ![...this.enrolledWorkloads.values()].some((w) => w.namespace === gone.namespace && w.serviceAccount === gone.serviceAccount)) {
      this.certificates.forget(this.identityOf(gone));
    }
    if (channels.podEnrolment.hasSubscribers) channels.podEnrolment.publish({ uid, action: 'released' });
  }
}
