// What Prometheus scrapes and how, by Kubernetes' `prometheus.io/*` pod annotation convention: the sandbox
// writes file_sd targets carrying the meta labels `kubernetes_sd_configs` would for each agent's pod (on the API
// server, the agent Pods as it returns them; otherwise the DaemonSet pod each agent stands for); one relabel list
// serves that job and deploy/prometheus/scrape-config.yaml.
// Pure and deterministic; src/sandbox/prometheus.ts runs the Prometheus that reads it.
import { Document, isScalar, isSeq, visit } from 'yaml';
import { PORTS } from '../config';
import { SandboxAgentError } from './runtime-errors';

/** The namespace the agents' DaemonSet runs in, as on a cluster. */
export const AGENT_NAMESPACE = 'ferry-system';
/** An agent pod is `ferry-agent-<node>`: what the sandbox calls the agent of each node. */
export const AGENT_POD_PREFIX = 'ferry-agent-';
/** Prometheus's job for the agents; every series it scrapes carries job="ferry-agents". */
export const PROMETHEUS_JOB = 'ferry-agents';
/** Short, so that a test sees a connection in Prometheus within seconds; a cluster keeps its own interval. */
export const SANDBOX_SCRAPE_INTERVAL = '2s';
/** Where the cluster version of the job lives in the repository (generated; a unit test keeps it current). */
export const KUBERNETES_SCRAPE_CONFIG_FILE = 'deploy/prometheus/scrape-config.yaml';

/** The annotations Prometheus' Kubernetes convention reads (prometheus/documentation/examples/prometheus-kubernetes.yml). */
export const SCRAPE_ANNOTATIONS = {
  scrape: 'prometheus.io/scrape',
  scheme: 'prometheus.io/scheme',
  path: 'prometheus.io/path',
  port: 'prometheus.io/port',
} as const;

/** The pod an agent stands for: what kubernetes_sd_configs (role: pod) would see of the DaemonSet's pod. */
export interface AgentPod {
  namespace: string;
  name: string;
  nodeName: string;
  /** The agent uses its node's network (hostNetwork), so its pod IP is the node's address. */
  ip: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** One `file_sd_configs` entry: Prometheus reads a JSON list of these (docs: file_sd_config). */
export interface FileSdTargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

/** One `relabel_configs` entry, with Prometheus' YAML field names. */
export interface RelabelConfig {
  source_labels?: string[];
  regex?: string;
  target_label?: string;
  replacement?: string;
  action: 'replace' | 'keep' | 'drop' | 'labelmap';
}

/** What an agent's pod is annotated with, on a cluster and in the sandbox: scrape PORTS.metrics at /metrics. */
export function agentScrapeAnnotations(): Record<string, string> {
  return {
    [SCRAPE_ANNOTATIONS.scrape]: 'true',
    [SCRAPE_ANNOTATIONS.port]: String(PORTS.metrics),
    [SCRAPE_ANNOTATIONS.path]: '/metrics',
  };
}

/** The fields of a Pod, as the API server returns it, that pod discovery reads. */
export interface ApiPodFields {
  metadata?: { namespace?: string; name?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: { nodeName?: string };
  status?: { podIP?: string };
}

/**
 * A Pod as kubernetes_sd_configs (role: pod) sees it: namespace, name, `spec.nodeName`, `status.podIP` (for a
 * host-network Pod, its node's address), and all its labels and annotations. A Pod without an IP yet is refused.
 */
export function agentPodOf(pod: ApiPodFields): AgentPod {
  const namespace = pod.metadata?.namespace ?? '';
  const name = pod.metadata?.name ?? '';
  const ip = pod.status?.podIP ?? '';
  if (ip === '') throw new SandboxAgentError(`agent Pod ${namespace}/${name} has no status.podIP yet: Prometheus has no address to scrape`);
  return {
    namespace,
    name,
    nodeName: pod.spec?.nodeName ?? '',
    ip,
    labels: { ...(pod.metadata?.labels ?? {}) },
    annotations: { ...(pod.metadata?.annotations ?? {}) },
  };
}

/** Prometheus' strutil.SanitizeLabelName: every character outside [a-zA-Z0-9_] becomes `_`. */
function sanitizeLabelName(name: string): string {
  return name.replace(/[^a-zA-Z0-9_]/g, '_');
}

/** `__meta_kubernetes_pod_annotation_prometheus_io_port` for `prometheus.io/port`, and the like for labels. */
export function podMetaLabel(kind: 'label' | 'labelpresent' | 'annotation' | 'annotationpresent', key: string): string {
  return `__meta_kubernetes_pod_${kind}_${sanitizeLabelName(key)}`;
}

/**
 * The file_sd targets for these pods: each pod's IP as the address (no port: a pod without declared
 * container ports looks like this to kubernetes_sd_configs) and the pod's meta labels as role: pod
 * sets them, so the relabel list below works on them unchanged.
 */
export function fileSdTargets(pods: readonly AgentPod[]): FileSdTargetGroup[] {
  return pods.map((pod) => {
    const labels: Record<string, string> = {
      __meta_kubernetes_namespace: pod.namespace,
      __meta_kubernetes_pod_name: pod.name,
      __meta_kubernetes_pod_node_name: pod.nodeName,
      __meta_kubernetes_pod_ip: pod.ip,
    };
    for (const [key, value] of Object.entries(pod.labels)) {
      labels[podMetaLabel('label', key)] = value;
      labels[podMetaLabel('labelpresent', key)] = 'true';
    }
    for (const [key, value] of Object.entries(pod.annotations)) {
      labels[podMetaLabel('annotation', key)] = value;
      labels[podMetaLabel('annotationpresent', key)] = 'true';
    }
    return { targets: [pod.ip], labels };
  });
}

/**
 * The standard relabelling of the `prometheus.io/*` convention, for targets with kubernetes_sd_configs'
 * pod meta labels — the one definition both the sandbox's file_sd job and the cluster's job use:
 *   keep pods annotated `prometheus.io/scrape: "true"`; take `prometheus.io/scheme` (http or https) and
 *   `prometheus.io/path` when set; replace the address's port with `prometheus.io/port`; then label each
 *   series with its pod's namespace, pod and node.
 * The address rule is the classic `([^:]+)…`, which reads IPv4 pod addresses (the sandbox has IPv4 only).
 */
export function podAnnotationRelabelConfigs(): RelabelConfig[] {
  return [
    { source_labels: [podMetaLabel('annotation', SCRAPE_ANNOTATIONS.scrape)], regex: 'true', action: 'keep' },
    {
      source_labels: [podMetaLabel('annotation', SCRAPE_ANNOTATIONS.scheme)],
      regex: '(https?)',
      target_label: '__scheme__',
      action: 'replace',
    },
    {
      source_labels: [podMetaLabel('annotation', SCRAPE_ANNOTATIONS.path)],
      regex: '(.+)',
      target_label: '__metrics_path__',
      action: 'replace',
    },
    {
      source_labels: ['__address__', podMetaLabel('annotation', SCRAPE_ANNOTATIONS.port)],
      regex: '([^:]+)(?::\\d+)?;(\\d+)',
      replacement: '$1:$2',
      target_label: '__address__',
      action: 'replace',
    },
    { source_labels: ['__meta_kubernetes_namespace'], target_label: 'namespace', action: 'replace' },
    { source_labels: ['__meta_kubernetes_pod_name'], target_label: 'pod', action: 'replace' },
    { source_labels: ['__meta_kubernetes_pod_node_name'], target_label: 'node', action: 'replace' },
  ];
}

/** Prometheus' configuration for a sandbox: the agents' job over the file_sd targets file, scraped every 2 s. */
export function sandboxPrometheusConfig(targetsFile: string): Record<string, unknown> {
  return {
    global: {
      scrape_interval: SANDBOX_SCRAPE_INTERVAL,
      scrape_timeout: SANDBOX_SCRAPE_INTERVAL,
      evaluation_interval: SANDBOX_SCRAPE_INTERVAL,
    },
    scrape_configs: [
      {
        job_name: PROMETHEUS_JOB,
        file_sd_configs: [{ files: [targetsFile] }],
        relabel_configs: podAnnotationRelabelConfigs(),
      },
    ],
  };
}

/** The same job for a cluster: Kubernetes pod discovery in the agents' namespace, the same relabelling. */
export function kubernetesScrapeConfig(): Record<string, unknown> {
  return {
    scrape_configs: [
      {
        job_name: PROMETHEUS_JOB,
        kubernetes_sd_configs: [{ role: 'pod', namespaces: { names: [AGENT_NAMESPACE] } }],
        relabel_configs: podAnnotationRelabelConfigs(),
      },
    ],
  };
}

/** Lists of names, written `[a, b]` as Prometheus' own examples write them. */
const FLOW_LISTS = new Set(['source_labels', 'names', 'files', 'targets']);

function renderYaml(header: string[], value: unknown): string {
  const doc = new Document(value);
  visit(doc, {
    Pair(_, pair) {
      if (isScalar(pair.key) && FLOW_LISTS.has(String(pair.key.value)) && isSeq(pair.value)) pair.value.flow = true;
    },
  });
  return `${header.map((line) => `# ${line}`.trimEnd()).join('\n')}\n${doc.toString({ lineWidth: 0, flowCollectionPadding: false })}`;
}

export function renderSandboxPrometheusConfig(targetsFile: string): string {
  return renderYaml(
    [
      'Written by `ferry sandbox up --prometheus`; removed by `ferry sandbox down`.',
      `The agents are described as the DaemonSet pods they stand for in ${targetsFile}.`,
    ],
    sandboxPrometheusConfig(targetsFile),
  );
}

/** deploy/prometheus/scrape-config.yaml, byte for byte. */
export function renderKubernetesScrapeConfig(): string {
  return renderYaml(
    [
      "Prometheus scrape job for Ferry's agents on a Kubernetes cluster. Generated from",
      'src/sandbox/prometheus-config.ts (node scripts/generate-prometheus-config.js after npm run build:ts);',
      'test/unit/sandbox-prometheus.test.ts fails when this file and the generator differ. Do not edit by hand.',
      '',
      `The agent DaemonSet's pods (namespace ${AGENT_NAMESPACE}) carry the annotations`,
      `  ${SCRAPE_ANNOTATIONS.scrape}: "true"`,
      `  ${SCRAPE_ANNOTATIONS.port}: "${PORTS.metrics}"`,
      `  ${SCRAPE_ANNOTATIONS.path}: /metrics`,
      'and the relabelling below is the standard one for them; `ferry sandbox up --prometheus` runs the same',
      'relabelling over file_sd targets that carry the same meta labels. Merge `scrape_configs` into your',
      'prometheus.yml (or pass the list to the Prometheus Operator as additionalScrapeConfigs). Without',
      '`namespaces`, the job scrapes every pod annotated this way, as the usual kubernetes-pods job does.',
    ],
    kubernetesScrapeConfig(),
  );
}

export function renderFileSdTargets(pods: readonly AgentPod[]): string {
  return `${JSON.stringify(fileSdTargets(pods), null, 2)}\n`;
}
