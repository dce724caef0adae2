// src/telemetry: logging with run-time levels, Prometheus metrics (Istio's TCP metrics and Ferry's
// health), diagnostics channels; reading expositions back into the service graph (`ferry inspect graph`).
export { createLogging, createRootLogger, isLogLevel, LogLevels, LOG_LEVELS, type Logger, type LogLevel, type RootLogger } from './logger';
export { channels } from './channels';
export {
  ISTIO_TCP_LABELS,
  ISTIO_TCP_METRICS,
  UNKNOWN,
  canonicalRevision,
  canonicalService,
  istioTcpLabels,
  workloadName,
  type IstioTcpLabel,
  type IstioTcpLabels,
  type LabelledWorkload,
  type ResponseFlag,
  type SecurityPolicy,
  type ServiceName,
  type TrafficDescription,
  type TrafficParty,
} from './istio-labels';
export { TrafficMetrics, type ByteCounts, type TrafficMeter } from './traffic-metrics';
export { HealthMetrics, type HealthSource, type LabelledTotal, type PolicyDecision } from './health-metrics';
export { LogLimiter, type LimitedLine } from './log-limiter';
export { parsePrometheusText, type Exposition, type MetricFamily, type MetricSample, type MetricType } from './prometheus-text';
export {
  GRAPH_TABLE_HEADER,
  WORKLOAD_ENROLLED_METRIC,
  buildServiceGraph,
  humanBytes,
  serviceGraphDot,
  serviceGraphRows,
  type GraphEdge,
  type GraphNode,
  type GraphNodeKind,
  type ServiceGraph,
} from './service-graph';
export { MetricsContentError, MetricsParseError, TELEMETRY_ERROR_CODES } from './errors';
