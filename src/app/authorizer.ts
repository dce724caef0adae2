// The proxy's InboundAuthorizer over the cluster state's compiled policies: the destination pod's
// labels come from the model, decisions from PolicySet; dry-run and audit results are logged here.
import type { AuthorizationVerdict, InboundAuthorizer, InboundSource, ProxyPod, SocketAddress } from '../proxy';
import type { ClusterState } from '../state';
import type { HealthMetrics, Logger } from '../telemetry';

export class PolicyAuthorizer implements InboundAuthorizer {
  private readonly listeners = new Set<() => void>();
  private readonly log: Logger;
  private appliedRevision = -1;

  constructor(private readonly state: ClusterState, log: Logger, private readonly health?: Pick<HealthMetrics, 'policyDecision'>) {
    this.log = log.child({ component: 'policy' });
  }

  /**
   * Call after every state.replace(): when the policies changed, log what was loaded (with the
   * warnings for L7 fields made restrictive) and tell the proxy to re-check open connections.
   */
  stateReplaced(snapshotRevision: number): void {
    const policies = this.state.policies;
    if (this.state.policyRevision === this.appliedRevision) return;
    this.appliedRevision = this.state.policyRevision;
    for (const warning of [...policies.warnings, ...policies.conflicts]) this.log.warn({ revision: snapshotRevision }, warning);
    this.log.info({ revision: snapshotRevision, policyRevision: this.appliedRevision, fingerprint: policies.fingerprint }, 'policies applied');
    for (const listener of this.listeners) listener();
  }

  admitsPlaintext(pod: ProxyPod, port: number): boolean {
    const workload = this.state.workload(pod.uid);
    const decision = this.state.policies.peerAuthentication(
      { namespace: pod.namespace, labels: workload?.labels ?? {} }, port);
    return decision.mode === 'PERMISSIVE';
  }

  authorize(pod: ProxyPod, source: InboundSource, destination: SocketAddress): AuthorizationVerdict {
    const workload = this.state.workload(pod.uid);
    const decision = this.state.policies.authorize(
      { namespace: pod.namespace, labels: workload?.labels ?? {} },
      {
        source: { principal: source.peer?.principal, namespace: source.peer?.namespace, ip: source.ip },
        destination: { ip: destination.ip, port: destination.port },
      },
    );
    if (this.health) {
      this.health.policyDecision(decision.allow ? 'allow' : 'deny', 'enforced');
      for (const run of decision.dryRun) if (run.wouldAllow !== undefined) this.health.policyDecision(run.wouldAllow ? 'allow' : 'deny', 'dry_run');
    }
    // Dry-run and audit results are the point of those policies: always logged, at info.
    if (decision.dryRun.length > 0 || decision.audited.length > 0) {
      this.log.info({
        pod: pod.uid, source: source.peer?.principal ?? source.ip, destination: `${destination.ip}:${destination.port}`,
        allow: decision.allow, dryRun: decision.dryRun, audited: decision.audited,
      }, decision.dryRun.length > 0 ? 'dry-run policy evaluated' : 'audited connection');
    }
    return { allow: decision.allow, policy: decision.policy, reason: decision.reason };
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
