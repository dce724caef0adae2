// Shapes of the pod-to-pod results and the table that prints them, with each Ferry lane's ratio
// against the direct lane of the same placement.

export type Placement = 'same-node' | 'cross-node';

export interface CpuByPhase {
  /** Agents' CPU ms (utime + stime) during the phase, summed over nodes and per node. */
  totalMs: number;
  byNode: Record<string, number>;
}

export interface LaneResult {
  lane: string;
  mesh: boolean;
  placement: Placement;
  target: { service: string; vip: string };
  ok: boolean;
  error?: string;
  /** Other processes used the machine's CPUs during a phase (for a best-of result: in every run, for some metric). */
  disturbed?: boolean;
  /** For a best-of result: the metrics no run measured undisturbed. */
  disturbedMetrics?: Metric[];
  requestsPerSecond?: number;
  connectionsPerSecond?: number;
  p50Ms?: number | null;
  p99Ms?: number | null;
  mibPerSecond?: number | null;
  /** Agents' CPU ms per 1000 keep-alive requests (rps phase), per 1000 new connections (cps), per GiB (bulk). */
  agentCpuMsPer1kRequests?: number;
  agentCpuMsPer1kConnections?: number;
  agentCpuMsPer1kOpenLoopRequests?: number;
  agentCpuMsPerGiB?: number;
  agentCpu?: Record<string, CpuByPhase>;
  /** CPUs busy outside the sandbox during each phase (other work sharing the machine). */
  otherLoadCpus?: Record<string, number>;
  /** For a lane's best-of result: every round's own result. */
  rounds?: LaneResult[];
  /** Everything the load tool reported, and what the agents logged during the lane. */
  load?: Record<string, unknown>;
  agentLogs?: Record<string, unknown>;
  notes: string[];
}

/** The numbers a lane reports, each measured in one phase of the load tool. */
export type Metric =
  | 'requestsPerSecond'
  | 'connectionsPerSecond'
  | 'p50Ms'
  | 'p99Ms'
  | 'mibPerSecond'
  | 'agentCpuMsPer1kRequests'
  | 'agentCpuMsPer1kConnections'
  | 'agentCpuMsPer1kOpenLoopRequests'
  | 'agentCpuMsPerGiB';

export interface Ratio {
  lane: string;
  against: string;
  requestsPerSecond: number | null;
  connectionsPerSecond: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  mibPerSecond: number | null;
  /** Metrics of either lane measured only under other load. */
  disturbedMetrics: Metric[];
}

function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || b === 0) return null;
  return a / b;
}

/** Each Ferry lane against the direct lane of the same placement. */
export function ratios(lanes: LaneResult[]): Ratio[] {
  const out: Ratio[] = [];
  for (const lane of lanes.filter((l) => l.mesh && l.ok)) {
    const base = lanes.find((l) => !l.mesh && l.ok && l.placement === lane.placement);
    if (!base) continue;
    out.push({
      lane: lane.lane,
      against: base.lane,
      requestsPerSecond: ratio(lane.requestsPerSecond, base.requestsPerSecond),
      connectionsPerSecond: ratio(lane.connectionsPerSecond, base.connectionsPerSecond),
      p50Ms: ratio(lane.p50Ms, base.p50Ms),
      p99Ms: ratio(lane.p99Ms, base.p99Ms),
      mibPerSecond: ratio(lane.mibPerSecond, base.mibPerSecond),
      disturbedMetrics: [...new Set([...(lane.disturbedMetrics ?? []), ...(base.disturbedMetrics ?? [])])],
    });
  }
  return out;
}

const fixed = (v: number | null | undefined, digits: number): string =>
  v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits);
const times = (r: Ratio, metric: Metric & keyof Ratio): string => {
  const v = r[metric];
  return v === null ? '-' : `${v.toFixed(2)}x${r.disturbedMetrics.includes(metric) ? '*' : ''}`;
};

function table(rows: string[][], rightAligned: boolean[]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) =>
    r
      .map((cell, i) => (rightAligned[i] ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd(),
  );
}

export interface MetricsCost {
  lane: string;
  withMetrics: { perKConnections: number | null; perKRequests: number | null };
  withoutMetrics: { perKConnections: number | null; perKRequests: number | null };
}

/** Lanes named `X, no traffic metrics` against lane `X` of the same run: agent CPU per 1000 connections and requests. */
export function metricsCosts(lanes: LaneResult[], suffix = ', no traffic metrics'): MetricsCost[] {
  const out: MetricsCost[] = [];
  for (const without of lanes.filter((l) => l.ok && l.lane.endsWith(suffix))) {
    const withMetrics = lanes.find((l) => l.ok && l.lane === without.lane.slice(0, -suffix.length));
    if (!withMetrics) continue;
    const cpu = (l: LaneResult): MetricsCost['withMetrics'] => ({
      perKConnections: l.agentCpuMsPer1kConnections ?? null,
      perKRequests: l.agentCpuMsPer1kRequests ?? null,
    });
    out.push({ lane: withMetrics.lane, withMetrics: cpu(withMetrics), withoutMetrics: cpu(without) });
  }
  return out;
}

export function formatReport(lanes: LaneResult[]): string[] {
  const header = ['lane', 'req/s', 'conn/s', 'p50 ms', 'p99 ms', 'MiB/s', 'agent CPU ms/1k req', 'ms/1k conn', 'ms/GiB'];
  const cell = (l: LaneResult, metric: Metric, digits: number): string =>
    `${fixed(l[metric], digits)}${l.disturbedMetrics?.includes(metric) ? '*' : ''}`;
  const rows = lanes.map((l) =>
    l.ok
      ? [
          l.lane,
          cell(l, 'requestsPerSecond', 0),
          cell(l, 'connectionsPerSecond', 0),
          cell(l, 'p50Ms', 3),
          cell(l, 'p99Ms', 3),
          cell(l, 'mibPerSecond', 0),
          l.mesh ? cell(l, 'agentCpuMsPer1kRequests', 1) : '-',
          l.mesh ? cell(l, 'agentCpuMsPer1kConnections', 1) : '-',
          l.mesh ? cell(l, 'agentCpuMsPerGiB', 0) : '-',
        ]
      : [l.lane, 'failed', '', '', '', '', '', '', ''],
  );
  const lines = table([header, ...rows], [false, true, true, true, true, true, true, true, true]);
  if (lanes.some((l) => l.disturbed)) {
    lines.push('* measured only while other processes used the CPUs too: pessimistic');
  }
  const rs = ratios(lanes);
  if (rs.length > 0) {
    lines.push('');
    lines.push('ratio Ferry / direct, same placement (req/s, conn/s, MiB/s: higher is better; latency: lower is better)');
    lines.push(
      ...table(
        [
          ['lane', 'vs', 'req/s', 'conn/s', 'p50', 'p99', 'MiB/s'],
          ...rs.map((r) => [
            r.lane,
            r.against,
            times(r, 'requestsPerSecond'),
            times(r, 'connectionsPerSecond'),
            times(r, 'p50Ms'),
            times(r, 'p99Ms'),
            times(r, 'mibPerSecond'),
          ]),
        ],
        [false, false, true, true, true, true, true],
      ),
    );
  }
  const costs = metricsCosts(lanes);
  if (costs.length > 0) {
    lines.push('');
    lines.push("cost of Istio's TCP metrics: agent CPU with them (default) and without (--no-traffic-metrics)");
    const ms = (v: number | null): string => fixed(v, 1);
    lines.push(
      ...table(
        [
          ['lane', 'ms/1k conn with', 'without', 'ms/1k req with', 'without'],
          ...costs.map((c) => [
            c.lane,
            ms(c.withMetrics.perKConnections),
            ms(c.withoutMetrics.perKConnections),
            ms(c.withMetrics.perKRequests),
            ms(c.withoutMetrics.perKRequests),
          ]),
        ],
        [false, true, true, true, true],
      ),
    );
  }
  const notes = lanes.flatMap((l) => [...(l.ok ? [] : [`${l.lane}: ${l.error}`]), ...l.notes.map((n) => `${l.lane}: ${n}`)]);
  if (notes.length > 0) {
    lines.push('');
    lines.push('notes:');
    lines.push(...notes.map((n) => `  ${n}`));
  }
  return lines;
}
