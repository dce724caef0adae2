// Root integration: `ferry sandbox up --prometheus` runs Debian's Prometheus in its own namespace on the fabric,
// scraping every agent Pod through the prometheus.io/* relabelling; `ferry sandbox query` reads what it scraped:
// `up` per agent with the namespace/pod/node labels, and Istio's TCP metrics for known client→server traffic.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { TestSandbox, echoCommand, ferry, sh, withSandbox } from './harness';
import { stopPrometheus } from '../../src/sandbox';

const PREFIX = 'ferryt-prom';
const PROM_NETNS = `${PREFIX}-prom`;
const JOB = 'ferry-agents';
const CONNECTIONS = 7;
const POLL_MS = 30_000;
const MANIFEST = `
apiVersion: v1
kind: Namespace
metadata: { name: app, annotations: { ferry.dev/mesh: enabled } }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: app, labels: { app: echo, version: v1 } }
spec:
  nodeName: node-b
  serviceAccountName: server
  containers: [{ name: echo, command: ${echoCommand(7000)}, env: [{ name: POD_NAME, value: server }], ports: [{ containerPort: 7000 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: app, labels: { app: client, version: v2 } }
spec: { nodeName: node-a, serviceAccountName: client, containers: [{ name: c, command: ["sleep", "infinity"] }] }
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: app }
spec: { selector: { app: echo }, ports: [{ port: 80, targetPort: 7000 }] }
`;

interface Series {
  metric: Record<string, string>;
  value: [number, string];
}

async function query(promql: string): Promise<Series[]> {
  const result = await ferry(['sandbox', 'query', promql, '--prefix', PREFIX, '-o', 'json']);
  assert.equal(result.code, 0, `query ${promql} failed:\n${result.stderr}`);
  const body = JSON.parse(result.stdout) as { status: string; data: { resultType: string; result: Series[] } };
  assert.equal(body.status, 'success');
  assert.equal(body.data.resultType, 'vector');
  return body.data.result;
}

/** Poll an instant query until `done` holds (bounded); returns the last result, which the caller then asserts on. */
async function pollQuery(promql: string, done: (series: Series[]) => boolean): Promise<Series[]> {
  const deadline = Date.now() + POLL_MS;
  let last = await query(promql);
  while (!done(last) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    last = await query(promql);
  }
  return last;
}

const value = (series: Series | undefined): number => Number(series?.value[1] ?? 0);

/** The bytes `tcp-client sequential` sends on connection i ("message I <16 hex>\n"), and the echo's trailer. */
const messageBytes = (i: number): number => `message ${i} `.length + 16 + 1;
const TRAILER_BYTES = 'BYE-AFTER-FIN\n'.length;

describe('Prometheus in a two-node sandbox', { timeout: 600_000 }, () => {
  const sandbox = new TestSandbox(PREFIX, MANIFEST, ['--prometheus']);
  withSandbox(sandbox);

  const fabricIps = (): Record<string, string> => {
    const plan = JSON.parse(fs.readFileSync(`/run/ferry/${PREFIX}/plan.json`, 'utf8')) as {
      nodes: Array<{ name: string; fabricIp: string }>;
    };
    return Object.fromEntries(plan.nodes.map((n) => [n.name, n.fabricIp]));
  };

  test('status shows it ready in its own namespace, reachable on the fabric only', async () => {
    const result = await ferry(['sandbox', 'status', '--prefix', PREFIX, '-o', 'json']);
    assert.equal(result.code, 0, result.stderr);
    const { prometheus } = JSON.parse(result.stdout) as {
      prometheus?: { netns: string; address: string; pid?: number; running: boolean; ready: boolean };
    };
    assert.ok(prometheus, `no prometheus in status: ${result.stdout}`);
    assert.equal(prometheus.netns, PROM_NETNS);
    assert.equal(prometheus.address, '10.250.0.250:9090');
    assert.equal(prometheus.running, true);
    assert.equal(prometheus.ready, true);
    // Its process is in the sandbox's cgroup, never the root one.
    assert.match(fs.readFileSync(`/proc/${prometheus.pid}/cgroup`, 'utf8'), new RegExp(`^0::/${PREFIX}/prometheus$`, 'm'));
    // One on-link route, the fabric's; no default route; and nothing of it in the host's namespace.
    const routes = (await sh('ip', ['-n', PROM_NETNS, '-4', 'route', 'show'])).trim().split('\n');
    assert.deepEqual(
      routes.map((r) => r.split(' ')[0]),
      ['10.250.0.0/24'],
    );
    assert.doesNotMatch(await sh('ip', ['-4', 'route', 'show']), /10\.250\./);
    const table = await ferry(['sandbox', 'status', '--prefix', PREFIX]);
    assert.match(table.stdout, /PROMETHEUS\s+NETNS\s+PROCESS\s+READY\s+TARGETS/);
    assert.match(table.stdout, new RegExp(`10\\.250\\.0\\.250:9090\\s+${PROM_NETNS}\\s+pid \\d+\\s+yes`));
  });

  test('up is 1 for every agent, with namespace, pod and node from the annotation relabelling', async () => {
    const ips = fabricIps();
    // The agents are Pods: their annotations are what Prometheus follows, their host-network IP the node's address.
    const agents = await sandbox.kubectl(['-n', 'ferry-system', 'get', 'pods', '-l', 'app=ferry-agent', '-o', 'json']);
    assert.equal(agents.code, 0, agents.stderr);
    const agentPods = (
      JSON.parse(agents.stdout) as {
        items: Array<{
          metadata: { name: string; annotations?: Record<string, string> };
          spec: { nodeName: string };
          status: { podIP: string };
        }>;
      }
    ).items;
    assert.deepEqual(agentPods.map((p) => p.metadata.name).sort(), ['ferry-agent-node-a', 'ferry-agent-node-b']);
    for (const pod of agentPods) {
      assert.equal(pod.metadata.name, `ferry-agent-${pod.spec.nodeName}`);
      assert.equal(pod.status.podIP, ips[pod.spec.nodeName], `${pod.metadata.name}: a host-network Pod has its node's address`);
      const annotations = pod.metadata.annotations ?? {};
      assert.deepEqual(
        [annotations['prometheus.io/scrape'], annotations['prometheus.io/port'], annotations['prometheus.io/path']],
        ['true', '15020', '/metrics'],
        pod.metadata.name,
      );
    }
    const series = await pollQuery(`up{job="${JOB}"}`, (s) => s.length === 2 && s.every((x) => value(x) === 1));
    const byNode = Object.fromEntries(series.map((s) => [s.metric.node, s]));
    assert.deepEqual(Object.keys(byNode).sort(), ['node-a', 'node-b'], JSON.stringify(series));
    for (const node of ['node-a', 'node-b']) {
      assert.deepEqual(byNode[node]?.metric, {
        __name__: 'up',
        job: JOB,
        instance: `${ips[node]}:15020`,
        namespace: 'ferry-system',
        pod: `ferry-agent-${node}`,
        node,
      });
      assert.equal(value(byNode[node]), 1, `agent on ${node} not scraped: ${JSON.stringify(byNode[node])}`);
    }
    const table = await ferry(['sandbox', 'query', `up{job="${JOB}"}`, '--prefix', PREFIX]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^instance\s+node\s+pod\s+value$/);
    assert.equal(lines.length, 3);
  });

  test(`${CONNECTIONS} client→server connections show in istio_tcp_* with Istio's labels, from both agents`, async () => {
    const edge = 'source_workload="client",destination_workload="server"';
    const before = await query(`istio_tcp_connections_opened_total{${edge}}`);
    const opened0 = (reporter: string): number => value(before.find((s) => s.metric.reporter === reporter));
    assert.equal(opened0('source'), 0);

    const result = await sandbox.client('app/client', ['sequential', 'echo.app', '80', String(CONNECTIONS)]);
    assert.deepEqual(result, { ok: CONNECTIONS, failed: 0, errors: [] });

    const opened = await pollQuery(
      `istio_tcp_connections_opened_total{${edge}}`,
      (s) => s.length === 2 && s.every((x) => value(x) === CONNECTIONS),
    );
    const byReporter = Object.fromEntries(opened.map((s) => [s.metric.reporter, s]));
    assert.deepEqual(Object.keys(byReporter).sort(), ['destination', 'source'], JSON.stringify(opened));
    const common = {
      source_workload: 'client',
      source_workload_namespace: 'app',
      source_principal: 'spiffe://cluster.local/ns/app/sa/client',
      source_app: 'client',
      source_version: 'v2',
      destination_service: 'echo.app.svc.cluster.local',
      destination_service_name: 'echo',
      destination_service_namespace: 'app',
      destination_workload: 'server',
      destination_workload_namespace: 'app',
      destination_principal: 'spiffe://cluster.local/ns/app/sa/server',
      request_protocol: 'tcp',
      response_flags: '-',
      // Cross-node between enrolled pods: HBONE, mutual TLS.
      connection_security_policy: 'mutual_tls',
      job: JOB,
      namespace: 'ferry-system',
    };
    const expected = { source: 'node-a', destination: 'node-b' } as const;
    for (const [reporter, node] of Object.entries(expected)) {
      const series = byReporter[reporter];
      assert.ok(series, `no ${reporter} series: ${JSON.stringify(opened)}`);
      const subset = Object.fromEntries(Object.keys(common).map((k) => [k, series.metric[k]]));
      assert.deepEqual(subset, common, `${reporter} series labels`);
      assert.equal(series.metric.reporter, reporter);
      assert.equal(series.metric.node, node, `the ${reporter} series comes from the agent on ${node}`);
      assert.equal(series.metric.pod, `ferry-agent-${node}`);
      assert.equal(value(series), CONNECTIONS, `${reporter} opened`);
    }

    // Every connection closed; bytes per direction: "received" is what the source sent, "sent" what came back.
    const requestBytes = Array.from({ length: CONNECTIONS }, (_, i) => messageBytes(i)).reduce((a, b) => a + b, 0);
    const checks: Array<[string, number]> = [
      ['istio_tcp_connections_closed_total', CONNECTIONS],
      ['istio_tcp_received_bytes_total', requestBytes],
      ['istio_tcp_sent_bytes_total', requestBytes + CONNECTIONS * TRAILER_BYTES],
    ];
    for (const [metric, want] of checks) {
      const series = await pollQuery(`${metric}{${edge}}`, (s) => s.length === 2 && s.every((x) => value(x) === want));
      assert.deepEqual(
        series.map((s) => [s.metric.reporter, value(s)]).sort(),
        [
          ['destination', want],
          ['source', want],
        ],
        metric,
      );
    }

    // The README's dashboard queries: one edge per (source workload, destination service).
    const edges = await query(
      'sum by (source_workload, source_workload_namespace, destination_service) ' +
        '(istio_tcp_connections_opened_total{reporter="source"})',
    );
    assert.deepEqual(
      edges.map((s) => [s.metric, value(s)]),
      [[{ source_workload: 'client', source_workload_namespace: 'app', destination_service: 'echo.app.svc.cluster.local' }, CONNECTIONS]],
    );
    await query(
      'sum by (source_workload, source_workload_namespace, destination_service) ' +
        '(rate(istio_tcp_connections_opened_total{reporter="source"}[1m]))',
    );
  });

  test('a query Prometheus refuses fails with its error', async () => {
    const result = await ferry(['sandbox', 'query', 'up{', '--prefix', PREFIX]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /refused \(HTTP 400\): bad_data: .*parse error/);
  });

  test('stopping it removes its process, namespace, veth, cgroup and files; the rest stays up', async () => {
    const before = await ferry(['sandbox', 'status', '--prefix', PREFIX, '-o', 'json']);
    const pid = (JSON.parse(before.stdout) as { prometheus: { pid: number } }).prometheus.pid;
    await stopPrometheus(PREFIX, () => undefined);
    assert.ok(!fs.existsSync(`/proc/${pid}`) || !fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('prometheus'));
    assert.doesNotMatch(await sh('ip', ['netns', 'list']), new RegExp(`^${PROM_NETNS}\\b`, 'm'));
    assert.doesNotMatch(await sh('ip', ['-n', `${PREFIX}-fabric`, 'link', 'show']), /fab-prom/);
    assert.ok(!fs.existsSync(`/run/ferry/${PREFIX}/prometheus`));
    const after = await ferry(['sandbox', 'status', '--prefix', PREFIX, '-o', 'json']);
    const status = JSON.parse(after.stdout) as { prometheus?: unknown; nodes: Array<{ ready: boolean }> };
    assert.equal(status.prometheus, undefined);
    assert.ok(status.nodes.every((n) => n.ready));
    const refused = await ferry(['sandbox', 'query', 'up', '--prefix', PREFIX]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /has no Prometheus/);
  });
});
