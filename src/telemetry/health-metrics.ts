// Ferry's own health, `ferry_*`: read from the agent's parts at scrape time (gauges) or counted as it
// happens (counters), plus prom-client's process and Node.js defaults. Labels are bounded by maps,
// workloads and service accounts on the node; nothing per connection.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, collectDefaultMetrics, type Registry } from 'prom-client';

/** A total kept by the part that counts it, exported as a counter at scrape time. */
export interface LabelledTotal<L extends string> {
  labels: Record<L, string>;
  count: number;
}

/** What the gauges read, each time Prometheus scrapes. */
export interface HealthSource {
  /** Pods enrolled on this node, by namespace and workload name (the metrics' `source_workload`). */
  enrolledWorkloads(): Array<{ namespace: string; workload: string; pods: number }>;
  /** Entries in each map, as last sampled (the agent counts them on a timer, off the event loop). */
  bpfMapEntries(): Array<{ name: string; entries: number }>;
  /** The BPF programs' verdict counters, read from the kernel. */
  bpfVerdicts(): Array<LabelledTotal<'program' | 'verdict'>>;
  /** Connections the proxy refused before any policy, by direction and reason (self_call, connection_limit, …). */
  refusedConnections(): Array<LabelledTotal<'direction' | 'reason'>>;
  /** Times a limit was hit, by limit. */
  limitsExceeded(): Array<LabelledTotal<'limit'>>;
  /** Pods of this node whose traffic the programs refuse: enrolment pending or failing, or their workload gone from the model. */
  refusedPods(): number;
  /** Log lines left out by rate limiting, by component. */
  suppressedLogLines(): Array<LabelledTotal<'component'>>;
  /** HBONE tunnels torn down by the HTTP/2 guards and keepalives, by side (inbound, outbound) and reason. */
  hboneSessionsClosed(): Array<LabelledTotal<'side' | 'reason'>>;
  /** HBONE dials that failed, and opens refused at once because their peer was backing off. */
  hboneDialsFailed(): Array<LabelledTotal<'reason'>>;
  /** Capacity of each map (no walk). */
  bpfMapCapacities(): Array<{ name: string; maxEntries: number }>;
  /** BPF links this agent holds and whether each is still on its hook, by program. */
  bpfLinks(): Array<{ program: string; attached: boolean }>;
  certificates(): Array<{ principal: string; notAfter: Date }>;
  tunnels(): {
    outboundConnections: number;
    outboundStreams: number;
    inboundConnections: number;
    inboundStreams: number;
    pendingHandshakes: number;
  };
  openConnections(): { outbound: number; inbound: number };
  ready(): boolean;
  stateRevision(): number;
}

export type PolicyDecision = 'allow' | 'deny';

const LAG_RESOLUTION_MS = 10;
const LAG_WINDOW_MS = 10_000;
const ENROLMENT_STAGES = ['lock', 'certificate', 'listeners', 'capture'] as const;

/**
 * Made before the parts it counts for (the counters: enrolment failures, policy decisions); the
 * gauges are added by observe() once the parts they read exist.
 */
export class HealthMetrics {
  private readonly failures: Counter<'reason'>;
  private readonly decisions: Counter<'decision' | 'mode'>;

  constructor(private readonly registry: Registry) {
    collectDefaultMetrics({ register: registry });
    const registers = [registry];
    this.failures = new Counter({
      name: 'ferry_enrolment_failures_total',
      help: 'Pods the agent failed to enrol, by stage',
      labelNames: ['reason'],
      registers,
    });
    this.decisions = new Counter({
      name: 'ferry_policy_decisions_total',
      help: 'Authorization decisions, by outcome; mode dry_run: decided by a dry-run policy and not enforced',
      labelNames: ['decision', 'mode'],
      registers,
    });
    // Zero series from the start, so rate() and alerts see a counter before its first increment.
    for (const reason of ENROLMENT_STAGES) this.failures.inc({ reason }, 0);
    for (const decision of ['allow', 'deny'] as const) this.decisions.inc({ decision, mode: 'enforced' }, 0);
  }

  /** Register the gauges, read from `source` at each scrape. Once. */
  observe(source: HealthSource): void {
    const registers = [this.registry];
    const gauge = <L extends string>(name: string, help: string, labelNames: L[], collect: (g: Gauge<L>) => void): void => {
      new Gauge<L>({
        name,
        help,
        labelNames,
        registers,
        collect(this: Gauge<L>) {
          collect(this);
        },
      });
    };
    gauge('ferry_enrolled_pods', 'Pods enrolled on this node (listeners open, capture on)', [], (g) => {
      g.set(source.enrolledWorkloads().reduce((n, w) => n + w.pods, 0));
    });
    gauge('ferry_workload_enrolled', 'Enrolled pods of each workload on this node', ['namespace', 'workload'], (g) => {
      g.reset();
      for (const w of source.enrolledWorkloads()) g.set({ namespace: w.namespace, workload: w.workload }, w.pods);
    });
    gauge('ferry_bpf_map_entries', "Entries in each of Ferry's BPF maps", ['map'], (g) => {
      g.reset();
      for (const m of source.bpfMapEntries()) g.set({ map: m.name }, m.entries);
    });
    gauge('ferry_bpf_map_max_entries', "Capacity of each of Ferry's BPF maps", ['map'], (g) => {
      g.reset();
      for (const m of source.bpfMapCapacities()) g.set({ map: m.name }, m.maxEntries);
    });
    gauge('ferry_bpf_links_attached', 'BPF links on their hooks, by program (a detached link captures nothing)', ['program'], (g) => {
      g.reset();
      const counts = new Map<string, number>();
      for (const l of source.bpfLinks()) counts.set(l.program, (counts.get(l.program) ?? 0) + (l.attached ? 1 : 0));
      for (const [program, n] of counts) g.set({ program }, n);
    });
    gauge('ferry_certificate_expiry_timestamp_seconds', 'notAfter of each workload certificate, as a Unix time', ['principal'], (g) => {
      g.reset();
      for (const c of source.certificates()) g.set({ principal: c.principal }, Math.floor(c.notAfter.getTime() / 1000));
    });
    gauge('ferry_hbone_connections', 'HBONE tunnels (TLS connections): outbound from the pool, inbound to pods', ['direction'], (g) => {
      const t = source.tunnels();
      g.set({ direction: 'outbound' }, t.outboundConnections);
      g.set({ direction: 'inbound' }, t.inboundConnections);
    });
    gauge('ferry_hbone_streams', 'CONNECT streams on HBONE tunnels', ['direction'], (g) => {
      const t = source.tunnels();
      g.set({ direction: 'outbound' }, t.outboundStreams);
      g.set({ direction: 'inbound' }, t.inboundStreams);
    });
    gauge('ferry_hbone_pending_handshakes', 'Inbound HBONE TLS handshakes not finished yet', [], (g) => {
      g.set(source.tunnels().pendingHandshakes);
    });
    gauge('ferry_open_connections', 'Proxied connections open now', ['direction'], (g) => {
      const open = source.openConnections();
      g.set({ direction: 'outbound' }, open.outbound);
      g.set({ direction: 'inbound' }, open.inbound);
    });
    const total = <L extends string>(name: string, help: string, labelNames: L[], read: () => Array<LabelledTotal<L>>): void => {
      new Counter<L>({
        name,
        help,
        labelNames,
        registers,
        collect(this: Counter<L>) {
          this.reset();
          for (const t of read()) this.inc(t.labels as Partial<Record<L, string>>, t.count);
        },
      });
    };
    total(
      'ferry_bpf_verdicts_total',
      'Decisions of the BPF programs, by program and verdict (read from the kernel)',
      ['program', 'verdict'],
      () => source.bpfVerdicts(),
    );
    total(
      'ferry_connections_refused_total',
      'Connections refused before authorization, by direction and reason',
      ['direction', 'reason'],
      () => source.refusedConnections(),
    );
    total('ferry_limits_exceeded_total', 'Times a limit was hit, by limit', ['limit'], () => source.limitsExceeded());
    total(
      'ferry_log_lines_suppressed_total',
      'Log lines left out by rate limiting (each written line says how many before it)',
      ['component'],
      () => source.suppressedLogLines(),
    );
    total(
      'ferry_hbone_sessions_closed_total',
      'HBONE tunnels torn down by a guard: floods, protocol errors, unanswered keepalives',
      ['side', 'reason'],
      () => source.hboneSessionsClosed(),
    );
    total(
      'ferry_hbone_dials_failed_total',
      'HBONE dials that failed (error), and opens refused at once while their peer backs off (peer_backoff)',
      ['reason'],
      () => source.hboneDialsFailed(),
    );
    gauge(
      'ferry_pods_refused',
      'Pods of this node whose traffic is refused (enrolment pending or failing, or their workload left the model)',
      [],
      (g) => {
        g.set(source.refusedPods());
      },
    );
    gauge('ferry_ready', "1 when the agent is ready (capture attached, state synced, every enrolled pod's listeners open)", [], (g) => {
      g.set(source.ready() ? 1 : 0);
    });
    gauge('ferry_state_revision', 'Revision of the cluster state the agent runs on', [], (g) => {
      g.set(source.stateRevision());
    });
    // Quantiles over fixed windows, not "since the previous scrape": with several scrapers each would
    // see only the sliver since another's, and a storm of scrapes would hide the lag it causes.
    const delay = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    delay.enable();
    const quantiles = (): Record<'0.5' | '0.99' | 'max', number> => {
      // The histogram records the time between its timer's runs, resolution included: the lag is
      // what exceeds it. Before any sample it reports sentinel values; say 0 rather than nonsense.
      const seconds = (ns: number): number =>
        Number.isFinite(ns) && delay.count > 0 ? Math.max(0, ns / 1e9 - LAG_RESOLUTION_MS / 1000) : 0;
      return { '0.5': seconds(delay.percentile(50)), '0.99': seconds(delay.percentile(99)), max: seconds(delay.max) };
    };
    let closedWindow: ReturnType<typeof quantiles> | undefined;
    const roll = setInterval(() => {
      closedWindow = quantiles();
      delay.reset();
    }, LAG_WINDOW_MS);
    roll.unref();
    gauge(
      'ferry_event_loop_lag_seconds',
      `Event-loop delay over the last complete ${LAG_WINDOW_MS / 1000} s window ` +
        '(the current one until the first closes): p50, p99 and max',
      ['quantile'],
      (g) => {
        const q = closedWindow ?? quantiles();
        for (const quantile of ['0.5', '0.99', 'max'] as const) g.set({ quantile }, q[quantile]);
      },
    );
  }

  /** `reason`: lock, certificate, listeners, capture (a small fixed set). */
  enrolmentFailed(reason: (typeof ENROLMENT_STAGES)[number]): void {
    this.failures.inc({ reason });
  }

  policyDecision(decision: PolicyDecision, mode: 'enforced' | 'dry_run'): void {
    this.decisions.inc({ decision, mode });
  }
}
