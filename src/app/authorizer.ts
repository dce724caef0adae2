// The proxy's InboundAuthorizer over the cluster state's compiled policies: the destination pod's
// labels come from the model, decisions from PolicySet; dry-run and audit results are logged here.
// A pod missing from the model is denied, not judged as if it had no labels; a change of policies
// or of any workload's labels re-checks open connections.
import type { AuthorizationVerdict, InboundAuthorizer, InboundSource, ProxyPod, SocketAddress } from '../proxy';
import type { ClusterState } from '../state';
import type { HealthMetrics, Logger } from '../telemetry';

export class PolicyAuthorizer implements InboundAuthorizer {
  private readonly listeners = new Set<() => void>();
  private readonly log: Logger;
  private appliedRevision = -1;
  private labelsFingerprint = '';

  constructor(
    private readonly state: ClusterState,
    log: Logger,
    private readonly health?: Pick<HealthMetrics, 'policyDecision'>,
  ) {
    this.log = log.child({ component: 'policy' });
  }

  /**
   * Call after every state.replace(): when the policies changed, log what was loaded (with the
   * warnings for L7 fields made restrictive) and tell the proxy to re-check open connections.
   */
  stateReplaced(snapshotRevision: number): void {
    const policies = this.state.policies;
    const policiesChanged = this.state.policyRevision !== this.appliedRevision;
    // Selectors match the destination pod's labels, so a relabelled (or vanished) pod may now be
    // judged by other policies: exactly like a policy change, open connections are checked again.
    const labels = JSON.stringify(this.state.workloads.map((w) => [w.uid, Object.entries(w.labels).sort()]).sort());
    const labelsChanged = labels !== this.labelsFingerprint;
    this.labelsFingerprint = labels;
    if (policiesChanged) {
      this.appliedRevision = this.state.policyRevision;
      for (const warning of [...policies.warnings, ...policies.conflicts]) this.log.warn({ revision: snapshotRevision }, warning);
      this.log.info(
        { revision: snapshotRevision, policyRevision: this.appliedRevision, fingerprint: policies.fingerprint },
        'policies applied',
      );
    } else if (labelsChanged) {
      this.log.info({ revision: snapshotRevision }, 'workloads or their labels changed; re-checking open connections');
    }
    if (policiesChanged || labelsChanged) for (const listener of this.listeners) listener();
  }

  admitsPlaintext(pod: ProxyPod, port: number): boolean {
    const workload = this.state.workload(pod.uid);
    if (!workload) return false;
    const decision = this.state.policies.peerAuthentication({ namespace: pod.namespace, labels: workload.labels }, port);
    return decision.mode === 'PERMISSIVE';
  }

  authorize(pod: ProxyPod, source: InboundSource, destination: SocketAddress): AuthorizationVerdict {
    const workload = this.state.workload(pod.uid);
    if (!workload) {
      this.health?.policyDecision('deny', 'enforced');
      return { allow: false, reason: `destination pod ${pod.uid} is not in the model (it is denied until it is)` };
    }
    const decision = this.state.policies.authorize(
      { namespace: pod.namespace, labels: workload.labels },
      {
        source: { principal: source.peer?.principal, namespace: source.peer?.namespace, ip: source.ip },
        destination: { ip: destination.ip, port: destination.port },
      },
    );
    if (this.health) {
      this.health.policyDecision(decision.allow ? 'allow' : 'deny', 'enforced');
      for (const run of decision.dryRun)
        if (run.wouldAllow !== undefined) this.health.policyDecision(run.wouldAllow ? 'allow' : 'deny', 'dry_run');
    }
    // Dry-run and audit results are the point of those policies: always logged, at info.
    if (decision.dryRun.length > 0 || decision.audited.length > 0) {
      this.log.info(
        {
          pod: pod.uid,
          source: source.peer?.principal ?? source.ip,
          destination: `${destination.ip}:${destination.port}`,
          allow: decision.allow,
          dryRun: decision.dryRun,
          audited: decision.audited,
        },
        decision.dryRun.length > 0 ? 'dry-run policy evaluated' : 'audited connection',
      );
    }
    return { allow: decision.allow, policy: decision.policy, reason: decision.reason };
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
