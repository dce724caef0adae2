// Bring the enrolled pods in line with the model: lock every meshed pod of this node first (its
// traffic refused, never unmeshed), then enrol it; retry failures with backoff; lock pods whose
// workload vanished from the model until they come back or their namespace is gone.
import type { CaptureEngine, PodListeners } from '../capture';
import { closeFd } from '../native';
import type { SpiffeId, WorkloadCertificates } from '../identity';
import type { NodeProxy } from '../proxy';
import type { ClusterState, Workload } from '../state';
import { channels, type HealthMetrics, type Logger } from '../telemetry';

/** NAMESPACE/NAME for people, with the key when it is not that already (a Pod's UID on a cluster). */
function podName(w: Workload, uid: string): string {
  const name = `${w.namespace}/${w.name}`;
  return uid === name ? name : `${name} [${uid}]`;
}

function fingerprint(w: Workload): string {
  return JSON.stringify([w.netnsPath, w.ips, w.excludeOutboundPorts, w.excludeOutboundCidrs, w.serviceAccount]);
}

type Stage = 'lock' | 'certificate' | 'listeners' | 'capture';

/** A pod that should be enrolled but is not (yet): locked when `locked`, retried at `retryAt`. */
interface Pending {
  workload: Workload;
  attempts: number;
  locked: boolean;
  retryAt: number;
  stage?: Stage;
  reason?: string;
}

export interface ReconcilerOptions {
  /** First retry after a failed enrolment; doubles per attempt up to maxRetryMs (with ±20 % jitter). */
  firstRetryMs?: number;
  maxRetryMs?: number;
  /** How often a pod whose workload vanished is checked for its network namespace still existing. */
  orphanCheckMs?: number;
  /** Is the network namespace at this path still the one `cookie` names? (native.netnsCookie) */
  netnsCookie: (netnsPath: string) => Promise<bigint>;
}

export class PodReconciler {
  private running: Promise<void> = Promise.resolve();
  private queued = false;
  private readonly enrolledPods = new Map<string, { workload: Workload; fingerprint: string }>();
  private readonly pending = new Map<string, Pending>();
  /** Pods locked because their workload vanished from the model: uid → the namespace cookie locked. */
  private readonly orphans = new Map<string, { workload: Workload; netnsCookie: bigint }>();
  private firstPass = true;
  private timer?: NodeJS.Timeout;
  private timerAt = Infinity;
  private stopped = false;
  /** A successor is taking the listeners: no pass changes enrolment until resume(). */
  private paused = false;
  /** Listeners a predecessor handed over, by pod UID: the pod is adopted with them instead of locked. */
  private readonly handedOver = new Map<string, PodListeners>();
  private readonly log: Logger;
  private readonly firstRetryMs: number;
  private readonly maxRetryMs: number;
  private readonly orphanCheckMs: number;

  constructor(
    private readonly node: string,
    private readonly state: ClusterState,
    private readonly capture: CaptureEngine,
    private readonly proxy: NodeProxy,
    private readonly certificates: WorkloadCertificates,
    log: Logger,
    private readonly options: ReconcilerOptions,
    private readonly health?: Pick<HealthMetrics, 'enrolmentFailed'>,
  ) {
    this.log = log.child({ component: 'enrolment' });
    this.firstRetryMs = options.firstRetryMs ?? 200;
    this.maxRetryMs = options.maxRetryMs ?? 10_000;
    this.orphanCheckMs = options.orphanCheckMs ?? 5_000;
  }

  /** Queue a pass; concurrent calls coalesce into one pass after the running one. */
  schedule(): Promise<void> {
    if (this.queued) return this.running;
    this.queued = true;
    this.running = this.running.then(() => {
      this.queued = false;
      return this.stopped || this.paused ? undefined : this.pass();
    });
    return this.running;
  }

  /**
   * The listeners a predecessor served, by pod UID (the fds are the reconciler's now). The next pass
   * adopts each pod the model places here with them — enrolled throughout, never locked — and closes
   * those of pods it will not enrol.
   */
  offerHandedOver(listeners: Map<string, PodListeners>): void {
    for (const [uid, l] of listeners) this.handedOver.set(uid, l);
  }

  /** Stop changing enrolment (a successor takes the listeners over); resolves once the pass running now is done. */
  async pause(): Promise<void> {
    this.paused = true;
    await this.running;
  }

  /** Change enrolment again (the hand-over was abandoned), from a fresh pass. */
  resume(): void {
    this.paused = false;
    this.schedule().catch((err: Error) => this.log.error({ err }, 'reconcile failed'));
  }

  /** Stop retrying (the agent is stopping); enrolled pods stay as they are. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** Readiness: every meshed pod of this node enrolled; otherwise the pods that are not, by name, and why. */
  notReadyReason(): string | undefined {
    if (this.pending.size === 0) return undefined;
    const named = [...this.pending.entries()]
      .slice(0, 5)
      .map(([uid, p]) => `${podName(p.workload, uid)} (${p.stage ?? 'queued'}${p.reason ? `: ${p.reason}` : ''}; attempt ${p.attempts})`);
    const more = this.pending.size > named.length ? ` and ${this.pending.size - named.length} more` : '';
    return `${this.pending.size} pod(s) not enrolled, their traffic refused until they are: ${named.join(', ')}${more}`;
  }

  /** The workloads enrolled now. */
  enrolled(): Workload[] {
    return [...this.enrolledPods.values()].map((e) => e.workload);
  }

  /** Pods whose traffic is refused: enrolment pending, or their workload vanished from the model. */
  refused(): Array<{ uid: string; pod: string; reason: string }> {
    return [
      ...[...this.pending.entries()].map(([uid, p]) => ({
        uid,
        pod: `${p.workload.namespace}/${p.workload.name}`,
        reason: `enrolment ${p.stage ?? 'queued'}: ${p.reason ?? 'not attempted yet'}`,
      })),
      ...[...this.orphans.entries()].map(([uid, o]) => ({
        uid,
        pod: `${o.workload.namespace}/${o.workload.name}`,
        reason: 'workload not in the model',
      })),
    ];
  }

  private async pass(): Promise<void> {
    const desired = new Map(this.state.meshedWorkloadsOn(this.node).map((w) => [w.uid, w]));
    if (this.firstPass) {
      this.firstPass = false;
      await this.capture.pruneStale([...desired.values()]);
    }
    for (const [uid, entry] of [...this.enrolledPods]) {
      const want = desired.get(uid);
      if (want && fingerprint(want) === entry.fingerprint) continue;
      if (!want && this.state.workload(uid) === undefined) await this.orphan(entry.workload);
      else this.release(uid);
    }
    for (const [uid, p] of [...this.pending]) {
      const want = desired.get(uid);
      if (want && fingerprint(want) === fingerprint(p.workload)) continue;
      this.pending.delete(uid);
      if (!want && this.state.workload(uid) === undefined && p.locked) await this.orphan(p.workload);
      else this.release(uid);
    }
    for (const [uid, orphan] of [...this.orphans]) {
      const want = desired.get(uid);
      if (want && fingerprint(want) === fingerprint(orphan.workload)) {
        // Back in the model: enrol from the locked state it is in.
        this.orphans.delete(uid);
        this.pending.set(uid, { workload: want, attempts: 0, locked: true, retryAt: 0 });
      } else if (want || this.state.workload(uid) !== undefined) {
        this.release(uid);
      } else if (!(await this.namespaceAlive(orphan.workload.netnsPath, orphan.netnsCookie))) {
        this.log.info({ pod: uid }, 'network namespace of a pod no longer in the model is gone; releasing it');
        this.release(uid);
      }
    }
    for (const workload of desired.values()) {
      if (!this.enrolledPods.has(workload.uid) && !this.pending.has(workload.uid) && !this.orphans.has(workload.uid)) {
        this.pending.set(workload.uid, { workload, attempts: 0, locked: false, retryAt: 0 });
      }
    }
    const now = Date.now();
    for (const p of [...this.pending.values()]) if (p.retryAt <= now) await this.enrol(p);
    for (const [uid, listeners] of [...this.handedOver]) {
      if (desired.has(uid)) continue;
      this.handedOver.delete(uid);
      closeListeners(listeners);
      this.log.info({ pod: uid }, 'listeners handed over for a pod this agent does not enrol: closed');
    }
    this.armTimer();
  }

  /** Wake for the next retry due, or the next orphan check; one timer for all of them. */
  private armTimer(): void {
    let next = Infinity;
    for (const p of this.pending.values()) next = Math.min(next, p.retryAt);
    if (this.orphans.size > 0) next = Math.min(next, Date.now() + this.orphanCheckMs);
    if (next === Infinity || this.stopped) return;
    if (this.timer && next >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = next;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerAt = Infinity;
        this.schedule().catch((err: Error) => this.log.error({ err }, 'reconcile failed'));
      },
      Math.max(0, next - Date.now()),
    );
    this.timer.unref();
  }

  private async namespaceAlive(netnsPath: string, cookie: bigint): Promise<boolean> {
    try {
      return (await this.options.netnsCookie(netnsPath)) === cookie;
    } catch {
      return false;
    }
  }

  private identityOf(workload: Workload): SpiffeId {
    return { trustDomain: this.certificates.trustDomain, namespace: workload.namespace, serviceAccount: workload.serviceAccount };
  }

  /**
   * One attempt: lock (refused from here on), certificate, listeners served by the proxy, then
   * capture. Any failure leaves the pod locked — never unmeshed — and schedules a retry.
   */
  private async enrol(p: Pending): Promise<void> {
    const { workload } = p;
    const handed = this.handedOver.get(workload.uid);
    if (handed) {
      this.handedOver.delete(workload.uid);
      if (await this.adopt(p, handed)) return;
    }
    let stage: Stage = 'lock';
    p.attempts += 1;
    try {
      const netnsCookie = await this.capture.lock(workload);
      p.locked = true;
      stage = 'certificate';
      // The pod's certificate before its traffic is meshed: HBONE needs it.
      await this.certificates.fetch(this.identityOf(workload));
      stage = 'listeners';
      const listeners = await this.capture.openListeners(workload);
      await this.serve(workload, netnsCookie, listeners);
      stage = 'capture';
      this.capture.enrol(workload, listeners);
    } catch (err) {
      this.proxy.removePod(workload.uid);
      const delay = Math.min(this.maxRetryMs, this.firstRetryMs * 2 ** Math.min(p.attempts - 1, 20)) * (0.8 + 0.4 * Math.random());
      Object.assign(p, { stage, reason: (err as Error).message, retryAt: Date.now() + delay });
      this.health?.enrolmentFailed(stage);
      this.log.error(
        { err, pod: workload.uid, stage, attempt: p.attempts, retryInMs: Math.round(delay), locked: p.locked },
        p.locked
          ? "enrolment failed; the pod's traffic stays refused until a retry succeeds"
          : 'enrolment failed before the pod could be locked',
      );
      return;
    }
    this.pending.delete(workload.uid);
    this.enrolledPods.set(workload.uid, { workload, fingerprint: fingerprint(workload) });
    if (p.attempts > 1) this.log.info({ pod: workload.uid, attempts: p.attempts }, 'enrolled after retrying');
    if (channels.podEnrolment.hasSubscribers) channels.podEnrolment.publish({ uid: workload.uid, action: 'enrolled' });
  }

  /**
   * Take over a pod the predecessor enrolled, on the listeners it handed over: certificate, the
   * capture entries rewritten as ENROLLED (never LOCKED on the way), then served. Until the
   * predecessor stops accepting, it serves them too, so a failure here refuses nothing: the pod is
   * enrolled afresh by the usual path (false).
   */
  private async adopt(p: Pending, listeners: PodListeners): Promise<boolean> {
    const { workload } = p;
    let served = false;
    try {
      await this.certificates.fetch(this.identityOf(workload));
      const netnsCookie = await this.capture.adopt(workload, listeners);
      served = true;
      await this.serve(workload, netnsCookie, listeners);
    } catch (err) {
      // addPod closes the fds it did not serve; before it, they are still all ours.
      if (!served) closeListeners(listeners);
      this.proxy.removePod(workload.uid);
      this.log.warn({ err, pod: workload.uid }, 'adopting a handed-over pod failed; enrolling it afresh');
      return false;
    }
    this.pending.delete(workload.uid);
    this.enrolledPods.set(workload.uid, { workload, fingerprint: fingerprint(workload) });
    if (channels.podEnrolment.hasSubscribers) channels.podEnrolment.publish({ uid: workload.uid, action: 'enrolled' });
    return true;
  }

  /**
   * The pod's workload left the model while the pod was ours. Nothing says the pod is gone (the
   * model may be wrong or late), so it is not released to run unmeshed: its connections are reset,
   * its listeners closed and the programs refuse its traffic, until it comes back or its network
   * namespace disappears.
   */
  private async orphan(workload: Workload): Promise<void> {
    const uid = workload.uid;
    this.enrolledPods.delete(uid);
    this.proxy.removePod(uid);
    let netnsCookie: bigint;
    try {
      this.capture.unenrol(uid);
      netnsCookie = await this.capture.lock(workload);
    } catch (err) {
      this.log.error({ err, pod: uid }, 'could not lock a pod no longer in the model; releasing it');
      this.release(uid);
      return;
    }
    this.orphans.set(uid, { workload, netnsCookie });
    this.forgetCertificate(workload);
    this.log.warn({ pod: uid }, 'pod is no longer in the model: its traffic is refused until it is back or gone');
    if (channels.podEnrolment.hasSubscribers) channels.podEnrolment.publish({ uid, action: 'locked' });
  }

  private release(uid: string): void {
    const workload = this.enrolledPods.get(uid)?.workload ?? this.pending.get(uid)?.workload ?? this.orphans.get(uid)?.workload;
    this.capture.release(uid);
    this.proxy.removePod(uid);
    this.enrolledPods.delete(uid);
    this.pending.delete(uid);
    this.orphans.delete(uid);
    if (workload) this.forgetCertificate(workload);
    if (channels.podEnrolment.hasSubscribers) channels.podEnrolment.publish({ uid, action: 'released' });
  }

  /** The proxy serves the pod's listeners. */
  private serve(workload: Workload, netnsCookie: bigint, listeners: PodListeners): Promise<void> {
    const { uid, namespace, name, serviceAccount, netnsPath, ips } = workload;
    return this.proxy.addPod(
      { uid, namespace, name, serviceAccount, netnsPath, netnsCookie, ips },
      { outbound: listeners.outbound, inbound: listeners.inbound, hbone: listeners.hbone },
    );
  }

  /** Service accounts are shared: the certificate goes only with the last enrolled pod that uses it. */
  private forgetCertificate(gone: Workload): void {
    const inUse = [...this.enrolledPods.values(), ...this.pending.values()].some(
      ({ workload: w }) => w.namespace === gone.namespace && w.serviceAccount === gone.serviceAccount,
    );
    if (!inUse) this.certificates.forget(this.identityOf(gone));
  }
}

function closeListeners(listeners: PodListeners): void {
  for (const fd of [...listeners.outbound, ...listeners.inbound, ...listeners.hbone]) closeFd(fd);
}
