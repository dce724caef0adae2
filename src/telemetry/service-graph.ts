// The mesh's service graph from the agents' Istio TCP metrics: who talks to whom, how much, and what
// failed. Pure: takes the expositions of several agents, returns the merged graph and its renderings
// (table rows and Graphviz DOT).
import { MetricsContentError } from './errors';
import { ISTIO_TCP_METRICS, UNKNOWN } from './istio-labels';
import type { Exposition, MetricSample } from './prometheus-text';

/** Agents export this gauge: pods of each workload enrolled on their node (labels namespace, workload). */
export const WORKLOAD_ENROLLED_METRIC = 'ferry_workload_enrolled';

export type GraphNodeKind = 'workload' | 'service' | 'unknown';

export interface GraphNode {
  /** Unique across kinds (a workload and a Service may share a name): `workload:NAME.NS`, `service:NAME.NS`, `unknown`. */
  id: string;
  kind: GraphNodeKind;
  /** `name.namespace`; a Service host that is not `name.namespace.svc.<domain>` as reported; `unknown`. */
  name: string;
}

export interface GraphEdge {
  /** Node ids. */
  source: string;
  destination: string;
  /** istio_tcp_connections_opened_total */
  connections: number;
  /** requestBytes + responseBytes */
  bytes: number;
  /** istio_tcp_received_bytes_total: what the source sent. */
  requestBytes: number;
  /** istio_tcp_sent_bytes_total: what the destination sent back. */
  responseBytes: number;
  /** istio_tcp_connections_closed_total with response_flags other than `-`. */
  failures: number;
  /** The same, by response flag (DENY, CONNECT). */
  failuresByFlag: Record<string, number>;
}

export interface ServiceGraph {
  /** Sorted by id. */
  nodes: GraphNode[];
  /** Sorted by source, then destination. */
  edges: GraphEdge[];
  /** `name.namespace` of each workload some agent reports enrolled pods of, sorted. */
  enrolledWorkloads: string[];
  /** The expositions merged, in the order given. */
  sources: string[];
}

const UNKNOWN_NODE: GraphNode = { id: UNKNOWN, kind: 'unknown', name: UNKNOWN };
/** Kubernetes' Service host names: name.namespace.svc.<cluster domain>. */
const SERVICE_HOST = /^([^.]+)\.([^.]+)\.svc\.[^.].*$/;

type Field = 'connections' | 'requestBytes' | 'responseBytes' | 'failures';

/**
 * Merges the agents' expositions into one graph, counting each connection once. Every agent reports
 * a connection it carries: the source's agent with reporter="source", the destination's with
 * reporter="destination" (the same agent twice on the same-node path). Series reported by the source
 * are always taken; series reported by the destination only when their source workload is enrolled
 * on no agent (a client outside the mesh, or `unknown`), because otherwise the source's own agent has
 * already counted it.
 *
 * Enrolment is read from WORKLOAD_ENROLLED_METRIC with a value above 0 on any agent: the agents' gauge
 * lists only workloads with enrolled pods now. A workload whose last pod left drops out of it while its
 * agent still holds its source-side counters, so its destination-side series count too from then on;
 * and an agent that was not scraped makes its workloads look unenrolled, which is what keeps their
 * traffic in the graph (from the destinations' reports) when that agent is down.
 */
export function buildServiceGraph(expositions: readonly Exposition[]): ServiceGraph {
  const enrolled = enrolledWorkloads(expositions);
  const nodes = new Map<string, GraphNode>();
  const edges = new Map<string, GraphEdge>();

  for (const exposition of expositions) {
    for (const sample of exposition.samples) {
      const field = fieldOf(sample, exposition.source);
      if (field === undefined) continue;
      const label = (name: string): string => labelOrUnknown(sample, name);
      const reporter = sample.labels.reporter;
      if (reporter !== 'source' && reporter !== 'destination') {
        throw contentError(
          exposition.source,
          sample,
          `reporter must be "source" or "destination", got ${JSON.stringify(reporter ?? '(none)')}`,
        );
      }
      if (reporter === 'destination' && enrolled.has(workloadKey(label('source_workload'), label('source_workload_namespace')))) continue;
      const value = countOf(sample, exposition.source);

      const source = sourceNode(label('source_workload'), label('source_workload_namespace'));
      const destination = destinationNode(label);
      nodes.set(source.id, source);
      nodes.set(destination.id, destination);
      const edgeKey = `${source.id}\u0000${destination.id}`;
      let edge = edges.get(edgeKey);
      if (!edge) {
        edge = {
          source: source.id,
          destination: destination.id,
          connections: 0,
          bytes: 0,
          requestBytes: 0,
          responseBytes: 0,
          failures: 0,
          failuresByFlag: {},
        };
        edges.set(edgeKey, edge);
      }
      edge[field] += value;
      if (field === 'requestBytes' || field === 'responseBytes') edge.bytes += value;
      if (field === 'failures')
        edge.failuresByFlag[sample.labels.response_flags] = (edge.failuresByFlag[sample.labels.response_flags] ?? 0) + value;
    }
  }

  return {
    nodes: [...nodes.values()].sort((a, b) => compare(a.id, b.id)),
    edges: [...edges.values()].sort((a, b) => compare(a.source, b.source) || compare(a.destination, b.destination)),
    enrolledWorkloads: [...enrolled.values()].sort(compare),
    sources: expositions.map((e) => e.source),
  };
}

/** Which edge field a sample adds to; undefined for samples the graph does not read. */
function fieldOf(sample: MetricSample, source: string): Field | undefined {
  switch (sample.name) {
    case ISTIO_TCP_METRICS.opened:
      return 'connections';
    case ISTIO_TCP_METRICS.received:
      return 'requestBytes';
    case ISTIO_TCP_METRICS.sent:
      return 'responseBytes';
    case ISTIO_TCP_METRICS.closed: {
      const flag = sample.labels.response_flags;
      if (flag === undefined || flag === '') throw contentError(source, sample, 'has no response_flags label');
      return flag === '-' ? undefined : 'failures';
    }
    default:
      return undefined;
  }
}

/** `name.namespace` keys of the workloads with enrolled pods on any agent. */
function enrolledWorkloads(expositions: readonly Exposition[]): Map<string, string> {
  const enrolled = new Map<string, string>();
  for (const exposition of expositions) {
    for (const sample of exposition.samples) {
      if (sample.name !== WORKLOAD_ENROLLED_METRIC || !(sample.value > 0)) continue;
      const { workload, namespace } = sample.labels;
      if (!workload || !namespace) throw contentError(exposition.source, sample, 'needs both a workload and a namespace label');
      enrolled.set(workloadKey(workload, namespace), `${workload}.${namespace}`);
    }
  }
  return enrolled;
}

function workloadKey(workload: string, namespace: string): string {
  return `${workload}\u0000${namespace}`;
}

/** Prometheus treats an empty label value as an absent label; both mean Istio's `unknown`. */
function labelOrUnknown(sample: MetricSample, name: string): string {
  const value = sample.labels[name];
  return value === undefined || value === '' ? UNKNOWN : value;
}

function countOf(sample: MetricSample, source: string): number {
  if (!Number.isFinite(sample.value) || sample.value < 0) {
    throw contentError(source, sample, `is a counter and cannot be ${sample.value}`);
  }
  return sample.value;
}

function sourceNode(workload: string, namespace: string): GraphNode {
  if (workload === UNKNOWN) return UNKNOWN_NODE;
  const name = `${workload}.${namespace}`;
  return { id: `workload:${name}`, kind: 'workload', name };
}

/** The Service when there is one, else the destination workload, else unknown. */
function destinationNode(label: (name: string) => string): GraphNode {
  const host = label('destination_service');
  if (host !== UNKNOWN) {
    const match = SERVICE_HOST.exec(host);
    const name = match ? `${match[1]}.${match[2]}` : host;
    return { id: `service:${name}`, kind: 'service', name };
  }
  const workload = label('destination_workload');
  if (workload === UNKNOWN) return UNKNOWN_NODE;
  const name = `${workload}.${label('destination_workload_namespace')}`;
  return { id: `workload:${name}`, kind: 'workload', name };
}

function contentError(source: string, sample: MetricSample, detail: string): MetricsContentError {
  return new MetricsContentError(`${source}: line ${sample.line}: ${sample.name} ${detail}`);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Renderings.

export const GRAPH_TABLE_HEADER = ['SOURCE', 'DESTINATION', 'CONNECTIONS', 'BYTES', 'REQUEST', 'RESPONSE', 'FAILURES'];

/** One row per edge, for printTable; a destination that is a workload (no Service) says so. */
export function serviceGraphRows(graph: ServiceGraph): string[][] {
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  const name = (id: string, markWorkload: boolean): string => {
    const node = byId.get(id) ?? UNKNOWN_NODE;
    return markWorkload && node.kind === 'workload' ? `${node.name} (workload)` : node.name;
  };
  return graph.edges.map((e) => [
    name(e.source, false),
    name(e.destination, true),
    String(e.connections),
    humanBytes(e.bytes),
    humanBytes(e.requestBytes),
    humanBytes(e.responseBytes),
    describeFailures(e),
  ]);
}

/**
 * The graph as a Graphviz digraph: workloads are boxes, Services ellipses, `unknown` dashed; each edge
 * is labelled with its connections, bytes and failures, and drawn red when any connection failed.
 */
export function serviceGraphDot(graph: ServiceGraph): string {
  const out = [
    'digraph ferry {',
    '  rankdir=LR;',
    '  node [fontname="Helvetica", fontsize=11];',
    '  edge [fontname="Helvetica", fontsize=9, color="gray30"];',
  ];
  for (const node of graph.nodes) {
    const shape = node.kind === 'service' ? 'shape=ellipse' : node.kind === 'workload' ? 'shape=box' : 'shape=box, style=dashed';
    out.push(`  ${dotString([node.id])} [label=${dotString([node.name])}, ${shape}];`);
  }
  for (const edge of graph.edges) {
    const lines = [
      `${edge.connections} ${edge.connections === 1 ? 'connection' : 'connections'}`,
      `${humanBytes(edge.bytes)} (${humanBytes(edge.requestBytes)} out, ${humanBytes(edge.responseBytes)} back)`,
    ];
    if (edge.failures > 0) lines.push(`${edge.failures} failed: ${failureBreakdown(edge)}`);
    const colour = edge.failures > 0 ? ', color="red", fontcolor="red"' : '';
    out.push(`  ${dotString([edge.source])} -> ${dotString([edge.destination])} [label=${dotString(lines)}${colour}];`);
  }
  out.push('}');
  return `${out.join('\n')}\n`;
}

/**
 * A DOT double-quoted string of centred lines. Inside one, `"` must be escaped and a backslash starts
 * an escape (Graphviz's `\n`, `\l`, `\N`…), so user text has both escaped; lines are joined with `\n`.
 */
function dotString(lines: string[]): string {
  const quote = (s: string): string => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\r?\n/g, '\\n');
  return `"${lines.map(quote).join('\\n')}"`;
}

function describeFailures(edge: GraphEdge): string {
  return edge.failures === 0 ? '0' : `${edge.failures} (${failureBreakdown(edge)})`;
}

function failureBreakdown(edge: GraphEdge): string {
  return Object.keys(edge.failuresByFlag)
    .sort()
    .map((flag) => `${flag} ${edge.failuresByFlag[flag]}`)
    .join(', ');
}

const BYTE_UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 512 B, 3.4 KiB, 1.0 MiB… (binary units, one decimal). */
export function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  let value = n;
  let unit = -1;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}
