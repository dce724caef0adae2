// Tests for src/sandbox/prometheus-config.ts: the agent pods, file_sd targets and relabel list of the sandbox's
// Prometheus, and deploy/prometheus/scrape-config.yaml kept equal to its generator. The relabelling is run here
// through a model of Prometheus' relabel.Process (the four actions used); test/integration/prometheus.test.ts
// checks the same thing against the real Prometheus.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse } from 'yaml';
import { PORTS } from '../../src/config';
import { agentPod } from '../../src/sandbox/api-objects';
import { parseManifests } from '../../src/sandbox/manifest';
import { planSandbox, type SandboxPlan } from '../../src/sandbox/plan';
import {
  AGENT_NAMESPACE,
  KUBERNETES_SCRAPE_CONFIG_FILE,
  PROMETHEUS_JOB,
  agentPodOf,
  AGENT_POD_PREFIX,
  agentScrapeAnnotations,
  fileSdTargets,
  kubernetesScrapeConfig,
  podAnnotationRelabelConfigs,
  podMetaLabel,
  renderFileSdTargets,
  renderKubernetesScrapeConfig,
  renderSandboxPrometheusConfig,
  sandboxPrometheusConfig,
  type AgentPod,
  type RelabelConfig,
} from '../../src/sandbox/prometheus-config';

/** The agent pod of every node of the plan as the API returns it, annotated for scraping on PORTS.metrics. */
function agentPods(plan: Pick<SandboxPlan, 'nodes'>): AgentPod[] {
  return plan.nodes.map((node) => ({
    namespace: AGENT_NAMESPACE,
    name: `${AGENT_POD_PREFIX}${node.name}`,
    nodeName: node.name,
    ip: node.fabricIp,
    labels: { app: 'ferry-agent' },
    annotations: agentScrapeAnnotations(),
  }));
}

function repoRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'examples', 'demo.yaml')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
  }
  throw new Error(`no repository root above ${__dirname}`);
}
const REPO = repoRoot();
const TARGETS_FILE = '/run/ferry/ftest/prometheus/targets/agents.json';

function demoPlan(): SandboxPlan {
  const file = path.join(REPO, 'examples', 'demo.yaml');
  return planSandbox(parseManifests([{ file, text: fs.readFileSync(file, 'utf8') }]), { prefix: 'ftest' });
}

/**
 * Prometheus' relabelling (model/relabel/relabel.go) for replace, keep, drop and labelmap: source label
 * values joined with ';', the regex anchored at both ends, default regex (.*) and replacement $1, and a
 * replace whose result is empty deleting the target label. Returns undefined for a dropped target.
 */
function relabel(labels: Record<string, string>, configs: readonly RelabelConfig[]): Record<string, string> | undefined {
  const out = { ...labels };
  for (const c of configs) {
    const value = (c.source_labels ?? []).map((name) => out[name] ?? '').join(';');
    const regex = new RegExp(`^(?:${c.regex ?? '(.*)'})$`);
    const match = regex.exec(value);
    switch (c.action) {
      case 'keep':
        if (!match) return undefined;
        break;
      case 'drop':
        if (match) return undefined;
        break;
      case 'replace': {
        if (!match || c.target_label === undefined) break;
        const result = (c.replacement ?? '$1').replace(/\$\{?(\d+)\}?/g, (_, n: string) => match[Number(n)] ?? '');
        if (result === '') delete out[c.target_label];
        else out[c.target_label] = result;
        break;
      }
      case 'labelmap':
        for (const [name, v] of Object.entries(out)) {
          const m = regex.exec(name);
          if (m) out[(c.replacement ?? '$1').replace(/\$\{?(\d+)\}?/g, (_, n: string) => m[Number(n)] ?? '')] = v;
        }
        break;
    }
  }
  return out;
}

/** What Prometheus does with each file_sd target: __address__ from the target, then the job's relabelling. */
function scrapeTargets(pods: readonly AgentPod[]): Array<Record<string, string>> {
  return fileSdTargets(pods)
    .flatMap((group) =>
      group.targets.map((target) =>
        relabel(
          { __address__: target, __metrics_path__: '/metrics', __scheme__: 'http', job: PROMETHEUS_JOB, ...group.labels },
          podAnnotationRelabelConfigs(),
        ),
      ),
    )
    .filter((t): t is Record<string, string> => t !== undefined);
}

describe('agent pods', () => {
  test("one per node, named and annotated like the DaemonSet pod it stands for, at the node's fabric address", () => {
    const plan = demoPlan();
    assert.deepEqual(
      agentPods(plan),
      plan.nodes.map((node) => ({
        namespace: 'ferry-system',
        name: `ferry-agent-${node.name}`,
        nodeName: node.name,
        ip: node.fabricIp,
        labels: { app: 'ferry-agent' },
        annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(PORTS.metrics), 'prometheus.io/path': '/metrics' },
      })),
    );
    assert.equal(PORTS.metrics, 15020);
  });

  test('the agent Pods of `up` carry the same annotations; as the API returns them they are scraped the same', () => {
    const plan = demoPlan();
    const returned = plan.nodes.map((node) => {
      const sent = agentPod({
        node,
        argv: ['node', 'ferry.js'],
        controller: { address: 'unix:/run/ferry/ftest/controller.sock', caFile: '/ca.pem', serverName: 'ferry-controller' },
        podNetnsDir: '/pods',
        cgroupPath: '/sys/fs/cgroup/ftest',
        handoverSocket: '/run/ferry/ftest/agent-handover.sock',
        logLevel: 'info',
        trustDomain: 'cluster.local',
        agentArgs: [],
      }) as { metadata: { annotations: Record<string, string> }; spec: { nodeName: string } };
      assert.deepEqual(sent.metadata.annotations, agentPods(plan).find((p) => p.nodeName === node.name)?.annotations);
      // What the API server answers once the kubelet has written the status of a host-network Pod (and kubectl
      // apply has added its own annotation, which pod discovery passes on like any other).
      return {
        ...sent,
        metadata: {
          ...sent.metadata,
          uid: `uid-${node.name}`,
          annotations: { ...sent.metadata.annotations, 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
        },
        status: { podIP: node.fabricIp, hostIP: node.fabricIp },
      };
    });
    const pods = returned.map(agentPodOf);
    assert.deepEqual(
      pods,
      agentPods(plan).map((p) => ({ ...p, annotations: { ...p.annotations, 'kubectl.kubernetes.io/last-applied-configuration': '{}' } })),
    );
    assert.deepEqual(
      scrapeTargets(pods).map((t) => [t.__address__, t.namespace, t.pod, t.node]),
      plan.nodes.map((n) => [`${n.fabricIp}:15020`, 'ferry-system', `ferry-agent-${n.name}`, n.name]),
    );
    assert.throws(
      () => agentPodOf({ metadata: { namespace: 'ferry-system', name: 'ferry-agent-node-a' }, spec: { nodeName: 'node-a' }, status: {} }),
      /agent Pod ferry-system\/ferry-agent-node-a has no status\.podIP yet/,
    );
  });

  test('meta label names are sanitised as Prometheus does (every non [a-zA-Z0-9_] becomes _)', () => {
    assert.equal(podMetaLabel('annotation', 'prometheus.io/scrape'), '__meta_kubernetes_pod_annotation_prometheus_io_scrape');
    assert.equal(podMetaLabel('label', 'app.kubernetes.io/name'), '__meta_kubernetes_pod_label_app_kubernetes_io_name');
    assert.equal(podMetaLabel('annotationpresent', 'a-b'), '__meta_kubernetes_pod_annotationpresent_a_b');
  });
});

describe('file_sd targets', () => {
  test("carry the pod address without a port and kubernetes_sd_configs' pod meta labels", () => {
    const groups = fileSdTargets(agentPods(demoPlan()));
    assert.deepEqual(groups[0], {
      targets: ['10.250.0.10'],
      labels: {
        __meta_kubernetes_namespace: 'ferry-system',
        __meta_kubernetes_pod_name: 'ferry-agent-node-a',
        __meta_kubernetes_pod_node_name: 'node-a',
        __meta_kubernetes_pod_ip: '10.250.0.10',
        __meta_kubernetes_pod_label_app: 'ferry-agent',
        __meta_kubernetes_pod_labelpresent_app: 'true',
        __meta_kubernetes_pod_annotation_prometheus_io_scrape: 'true',
        __meta_kubernetes_pod_annotationpresent_prometheus_io_scrape: 'true',
        __meta_kubernetes_pod_annotation_prometheus_io_port: '15020',
        __meta_kubernetes_pod_annotationpresent_prometheus_io_port: 'true',
        __meta_kubernetes_pod_annotation_prometheus_io_path: '/metrics',
        __meta_kubernetes_pod_annotationpresent_prometheus_io_path: 'true',
      },
    });
    assert.equal(groups[1]?.targets[0], '10.250.0.11');
  });

  test('the rendered file is the JSON list file_sd reads, with string label values only', () => {
    const parsed = JSON.parse(renderFileSdTargets(agentPods(demoPlan()))) as Array<{ targets: unknown; labels: Record<string, unknown> }>;
    assert.equal(parsed.length, 2);
    for (const group of parsed) {
      assert.ok(Array.isArray(group.targets));
      for (const [name, value] of Object.entries(group.labels)) {
        assert.match(name, /^[a-zA-Z_][a-zA-Z0-9_]*$/);
        assert.equal(typeof value, 'string');
      }
    }
  });
});

describe('relabelling', () => {
  test('is the standard prometheus.io/* list: keep, scheme, path, port, then namespace/pod/node', () => {
    assert.deepEqual(podAnnotationRelabelConfigs(), [
      { source_labels: ['__meta_kubernetes_pod_annotation_prometheus_io_scrape'], regex: 'true', action: 'keep' },
      {
        source_labels: ['__meta_kubernetes_pod_annotation_prometheus_io_scheme'],
        regex: '(https?)',
        target_label: '__scheme__',
        action: 'replace',
      },
      {
        source_labels: ['__meta_kubernetes_pod_annotation_prometheus_io_path'],
        regex: '(.+)',
        target_label: '__metrics_path__',
        action: 'replace',
      },
      {
        source_labels: ['__address__', '__meta_kubernetes_pod_annotation_prometheus_io_port'],
        regex: '([^:]+)(?::\\d+)?;(\\d+)',
        replacement: '$1:$2',
        target_label: '__address__',
        action: 'replace',
      },
      { source_labels: ['__meta_kubernetes_namespace'], target_label: 'namespace', action: 'replace' },
      { source_labels: ['__meta_kubernetes_pod_name'], target_label: 'pod', action: 'replace' },
      { source_labels: ['__meta_kubernetes_pod_node_name'], target_label: 'node', action: 'replace' },
    ]);
  });

  test('turns each agent pod into a scrape of NODE_FABRIC_IP:15020/metrics labelled with namespace, pod and node', () => {
    const targets = scrapeTargets(agentPods(demoPlan()));
    assert.equal(targets.length, 2);
    assert.deepEqual(
      targets.map((t) => ({
        address: t.__address__,
        path: t.__metrics_path__,
        scheme: t.__scheme__,
        namespace: t.namespace,
        pod: t.pod,
        node: t.node,
      })),
      [
        {
          address: '10.250.0.10:15020',
          path: '/metrics',
          scheme: 'http',
          namespace: AGENT_NAMESPACE,
          pod: 'ferry-agent-node-a',
          node: 'node-a',
        },
        {
          address: '10.250.0.11:15020',
          path: '/metrics',
          scheme: 'http',
          namespace: AGENT_NAMESPACE,
          pod: 'ferry-agent-node-b',
          node: 'node-b',
        },
      ],
    );
  });

  test('follows the annotations: a pod without scrape "true" is dropped; port, path and scheme are taken from them', () => {
    const base = agentPods(demoPlan())[0];
    assert.ok(base !== undefined);
    const withAnnotations = (annotations: Record<string, string>): AgentPod => ({ ...base, annotations });
    assert.deepEqual(scrapeTargets([withAnnotations({ 'prometheus.io/port': '15020' })]), []);
    assert.deepEqual(scrapeTargets([withAnnotations({ 'prometheus.io/scrape': 'false', 'prometheus.io/port': '15020' })]), []);
    const [custom] = scrapeTargets([
      withAnnotations({
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': '9102',
        'prometheus.io/path': '/stats/prometheus',
        'prometheus.io/scheme': 'https',
      }),
    ]);
    assert.equal(custom?.__address__, '10.250.0.10:9102');
    assert.equal(custom?.__metrics_path__, '/stats/prometheus');
    assert.equal(custom?.__scheme__, 'https');
    // An address that already has a port (a declared container port) gets the annotation's port instead.
    assert.equal(
      relabel(
        { __address__: '10.244.0.10:8080', __meta_kubernetes_pod_annotation_prometheus_io_port: '15020' },
        podAnnotationRelabelConfigs().slice(3, 4),
      )?.__address__,
      '10.244.0.10:15020',
    );
  });
});

describe('Prometheus configuration', () => {
  test('the sandbox job reads the file_sd targets with the shared relabel list, every 2 s', () => {
    const config = parse(renderSandboxPrometheusConfig(TARGETS_FILE)) as Record<string, unknown>;
    assert.deepEqual(config, sandboxPrometheusConfig(TARGETS_FILE));
    assert.deepEqual(config.global, { scrape_interval: '2s', scrape_timeout: '2s', evaluation_interval: '2s' });
    assert.deepEqual(config.scrape_configs, [
      {
        job_name: PROMETHEUS_JOB,
        file_sd_configs: [{ files: [TARGETS_FILE] }],
        relabel_configs: podAnnotationRelabelConfigs(),
      },
    ]);
  });

  test('the cluster job is pod discovery in ferry-system with the same relabel list', () => {
    const config = parse(renderKubernetesScrapeConfig()) as Record<string, unknown>;
    assert.deepEqual(config, kubernetesScrapeConfig());
    assert.deepEqual(config.scrape_configs, [
      {
        job_name: PROMETHEUS_JOB,
        kubernetes_sd_configs: [{ role: 'pod', namespaces: { names: [AGENT_NAMESPACE] } }],
        relabel_configs: podAnnotationRelabelConfigs(),
      },
    ]);
  });

  test(`${KUBERNETES_SCRAPE_CONFIG_FILE} is what the generator writes`, () => {
    const file = path.join(REPO, KUBERNETES_SCRAPE_CONFIG_FILE);
    assert.ok(fs.existsSync(file), `${file} is missing: run npm run build:ts && node scripts/generate-prometheus-config.js`);
    assert.equal(
      fs.readFileSync(file, 'utf8'),
      renderKubernetesScrapeConfig(),
      `${KUBERNETES_SCRAPE_CONFIG_FILE} differs from src/sandbox/prometheus-config.ts: run npm run build:ts && node scripts/generate-prometheus-config.js`,
    );
  });

  test('promtool accepts the sandbox configuration and its targets file', (t) => {
    // Debian's promtool comes with the prometheus package; it is built without kubernetes_sd_configs, so the
    // cluster file is checked above by structure only.
    assert.ok(fs.existsSync('/usr/bin/promtool'), "promtool is missing: scripts/setup.sh installs it with Debian's prometheus package");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-prom-config-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const targetsFile = path.join(dir, 'agents.json');
    const configFile = path.join(dir, 'prometheus.yml');
    fs.writeFileSync(targetsFile, renderFileSdTargets(agentPods(demoPlan())));
    fs.writeFileSync(configFile, renderSandboxPrometheusConfig(targetsFile));
    const out = execFileSync('/usr/bin/promtool', ['check', 'config', configFile], { encoding: 'utf8' });
    assert.match(out, /SUCCESS/);
    assert.doesNotMatch(out, /WARNING/);
  });
});
