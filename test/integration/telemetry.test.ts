// Root integration: what the agents of a two-node sandbox report about known traffic — Istio's TCP
// metrics on :15020 (exact values and labels, same node and across nodes, captured and
// passthrough), the access log, readiness against the kernel's real link state, the admin API's
// reach, and `ferry sandbox inspect`.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parsePrometheusText, type MetricSample } from '../../src/telemetry';
import { caIssuerFromFiles, readCaFiles } from '../fixtures/memory-ca';
import { TestSandbox, echoCommand, eventually, ferry, sh, withSandbox } from './harness';

/** Whether each certificate of `chainPem` (leaf first) is signed by the next, and the last by one of `rootsPem`. */
function chainsTo(chainPem: string[], rootsPem: string[]): boolean {
  const chain = chainPem.map((pem) => new X509Certificate(pem));
  const roots = rootsPem.map((pem) => new X509Certificate(pem));
  const signedBy = (cert: X509Certificate, issuer: X509Certificate): boolean => cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  const last = chain.at(-1);
  return (
    last !== undefined &&
    chain.slice(0, -1).every((cert, i) => signedBy(cert, chain[i + 1] as X509Certificate)) &&
    roots.some((root) => last.fingerprint256 === root.fingerprint256 || signedBy(last, root))
  );
}

const PREFIX = 'ferryt-tel';
const MANIFEST = `
apiVersion: v1
kind: Namespace
metadata: { name: app, annotations: { ferry.dev/mesh: enabled } }
---
apiVersion: v1
kind: Namespace
metadata: { name: plain }
---
apiVersion: v1
kind: Pod
metadata: { name: client-a, namespace: app, labels: { app: client, version: v1 } }
spec: { nodeName: node-a, serviceAccountName: client, containers: [{ name: c, command: ["sleep", "infinity"] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server-a, namespace: app, labels: { app: echo-a } }
spec:
  nodeName: node-a
  serviceAccountName: server
  containers: [{ name: echo, command: ${echoCommand(7000)}, ports: [{ containerPort: 7000 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: server-b, namespace: app, labels: { app: echo-b } }
spec:
  nodeName: node-b
  serviceAccountName: server
  containers: [{ name: echo, command: ${echoCommand(7000)}, ports: [{ containerPort: 7000 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: plain-b, namespace: plain, labels: { app: plain-echo } }
spec:
  nodeName: node-b
  containers: [{ name: echo, command: ${echoCommand(7000)}, ports: [{ containerPort: 7000 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: outsider, namespace: plain }
spec: { nodeName: node-b, containers: [{ name: c, command: ["sleep", "infinity"] }] }
---
apiVersion: v1
kind: Service
metadata: { name: echo-a, namespace: app }
spec: { selector: { app: echo-a }, ports: [{ port: 80, targetPort: 7000 }] }
---
apiVersion: v1
kind: Service
metadata: { name: echo-b, namespace: app }
spec: { selector: { app: echo-b }, ports: [{ port: 80, targetPort: 7000 }] }
---
apiVersion: v1
kind: Service
metadata: { name: plain-echo, namespace: plain }
spec: { selector: { app: plain-echo }, ports: [{ port: 80, targetPort: 7000 }] }
`;

/** tcp-client's `sequential` sends `message <i> <16 hex>\n` (27 bytes for i < 10); the echo server returns it and a 14-byte trailer. */
const N = 5;
const REQUEST_BYTES = 27;
const RESPONSE_BYTES = REQUEST_BYTES + 'BYE-AFTER-FIN\n'.length;
const SPIFFE_CLIENT = 'spiffe://cluster.local/ns/app/sa/client';
const SPIFFE_SERVER = 'spiffe://cluster.local/ns/app/sa/server';

type Sample = MetricSample;

describe('telemetry of a two-node sandbox', { timeout: 600_000 }, () => {
  const sandbox = new TestSandbox(PREFIX, MANIFEST);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `${PREFIX}-out-`));
  const { ip } = withSandbox(sandbox, () => fs.rmSync(work, { recursive: true, force: true }));
  const nodeNetns = (node: string): string => `${PREFIX}-node-${node}`;
  /** The nodes of plan.json (the fabric's shape); pods and Services come from the API server via `status`. */
  const plan = (): { nodes: Array<{ name: string; fabricIp: string; podGateway: string }> } =>
    JSON.parse(fs.readFileSync(`/run/ferry/${PREFIX}/plan.json`, 'utf8'));
  const vips: Record<string, string> = {};
  const vip = (service: string): string => {
    const found = vips[service];
    assert.ok(found, `service ${service} in the sandbox`);
    return found;
  };
  const podNode: Record<string, string> = {};
  before(async () => {
    const status = (await sandbox.status()) as unknown as {
      pods: Array<{ namespace: string; name: string; node: string }>;
      services: Array<{ namespace: string; name: string; vip: string }>;
    };
    for (const s of status.services) vips[s.name] = s.vip;
    for (const p of status.pods) podNode[`${p.namespace}/${p.name}`] = p.node;
  });

  /** curl inside a node's namespace, where the agent's own ports are. */
  async function curlInNode(node: string, url: string, extra: string[] = []): Promise<string> {
    return sh('ip', ['netns', 'exec', nodeNetns(node), 'curl', '-sS', '--max-time', '10', ...extra, url]);
  }

  async function metrics(node: string): Promise<Sample[]> {
    // The same strict parser `ferry inspect graph` uses: a malformed exposition fails here too.
    return parsePrometheusText(await curlInNode(node, 'http://127.0.0.1:15020/metrics'), `${node} metrics`).samples;
  }

  function istio(samples: Sample[], metric: string, match: Record<string, string>): Sample[] {
    return samples.filter((s) => s.name === metric && Object.entries(match).every(([k, v]) => s.labels[k] === v));
  }

  /** Exactly one series of each of the four counters matches, with these values. */
  async function expectCounters(
    node: string,
    match: Record<string, string>,
    expected: { connections: number; request: number; response: number },
  ): Promise<Sample[]> {
    let samples: Sample[] = [];
    await eventually(
      async () => {
        samples = await metrics(node);
        return istio(samples, 'istio_tcp_connections_closed_total', match).reduce((n, s) => n + s.value, 0) >= expected.connections;
      },
      15_000,
      `${expected.connections} closed connections on ${node} matching ${JSON.stringify(match)}`,
    );
    const one = (metric: string): Sample => {
      const found = istio(samples, metric, match);
      assert.equal(found.length, 1, `${node} ${metric} ${JSON.stringify(match)}: ${JSON.stringify(found)}`);
      return found[0];
    };
    assert.equal(one('istio_tcp_connections_opened_total').value, expected.connections);
    assert.equal(one('istio_tcp_connections_closed_total').value, expected.connections);
    assert.equal(one('istio_tcp_received_bytes_total').value, expected.request, 'received_bytes is what the source sent');
    assert.equal(one('istio_tcp_sent_bytes_total').value, expected.response, 'sent_bytes is what the destination sent back');
    return samples;
  }

  async function sequential(pod: string, host: string, port: number, count = N): Promise<void> {
    const result = await sandbox.client(pod, ['sequential', host, String(port), String(count)]);
    assert.deepEqual([result.ok, result.failed], [count, 0], JSON.stringify(result));
  }

  const traffic = { connections: N, request: N * REQUEST_BYTES, response: N * RESPONSE_BYTES };

  test('same node, through the short path: exact counters, reported once as source and once as destination', async () => {
    await sequential('app/client-a', vip('echo-a'), 80);
    const match = {
      source_workload: 'client-a',
      source_workload_namespace: 'app',
      source_app: 'client',
      source_version: 'v1',
      source_principal: SPIFFE_CLIENT,
      destination_service: 'echo-a.app.svc.cluster.local',
      destination_service_name: 'echo-a',
      destination_service_namespace: 'app',
      destination_workload: 'server-a',
      destination_workload_namespace: 'app',
      destination_app: 'echo-a',
      destination_principal: SPIFFE_SERVER,
      request_protocol: 'tcp',
      response_flags: '-',
      connection_security_policy: 'mutual_tls',
    };
    await expectCounters('node-a', { ...match, reporter: 'source' }, traffic);
    await expectCounters('node-a', { ...match, reporter: 'destination' }, traffic);

    const records = sandbox.accessRecords('node-a').filter((r) => r.destinationService === 'echo-a.app');
    assert.equal(records.length, N, 'one access line per connection');
    for (const r of records) {
      assert.deepEqual(
        [
          r.direction,
          r.path,
          r.security,
          r.sourceWorkload,
          r.sourceNamespace,
          r.destinationWorkload,
          r.destinationNamespace,
          r.sourcePrincipal,
          r.destinationPrincipal,
          r.bytesSent,
          r.bytesReceived,
          r.responseFlags,
          r.error,
        ],
        [
          'outbound',
          'short',
          'mutual_tls',
          'client-a',
          'app',
          'server-a',
          'app',
          'cluster.local/ns/app/sa/client',
          'cluster.local/ns/app/sa/server',
          REQUEST_BYTES,
          RESPONSE_BYTES,
          '-',
          undefined,
        ],
      );
      assert.match(String(r.source), new RegExp(`^${ip['client-a'].replace(/\./g, '\\.')}:\\d+$`));
      assert.equal(r.destination, `${vip('echo-a')}:80`);
      assert.equal(typeof r.durationMs, 'number');
    }
  });

  test('across nodes, through HBONE: the source agent reports source, the destination agent destination', async () => {
    await sequential('app/client-a', vip('echo-b'), 80);
    const match = {
      source_workload: 'client-a',
      source_principal: SPIFFE_CLIENT,
      destination_service: 'echo-b.app.svc.cluster.local',
      destination_workload: 'server-b',
      destination_principal: SPIFFE_SERVER,
      connection_security_policy: 'mutual_tls',
      response_flags: '-',
    };
    await expectCounters('node-a', { ...match, reporter: 'source' }, traffic);
    await expectCounters('node-b', { ...match, reporter: 'destination' }, traffic);
    assert.deepEqual(
      istio(await metrics('node-a'), 'istio_tcp_connections_opened_total', { destination_workload: 'server-b', reporter: 'destination' }),
      [],
    );

    const outbound = sandbox.accessRecords('node-a').filter((r) => r.destinationService === 'echo-b.app');
    const inbound = sandbox.accessRecords('node-b').filter((r) => r.direction === 'inbound' && r.sourceWorkload === 'client-a');
    assert.equal(outbound.length, N);
    assert.equal(inbound.length, N);
    for (const r of [...outbound, ...inbound]) {
      assert.equal(r.path, 'hbone');
      assert.equal(r.bytesSent, REQUEST_BYTES);
      assert.equal(r.bytesReceived, RESPONSE_BYTES);
      assert.match(String(r.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    }
    // The two halves of each connection share its traceparent.
    assert.deepEqual(outbound.map((r) => r.traceparent).sort(), inbound.map((r) => r.traceparent).sort());
    for (const r of inbound) assert.equal(r.destinationService, 'echo-b.app', 'inbound names the Service selecting the port');
  });

  test('to a pod outside the mesh: passthrough, reported by the source only, no principals', async () => {
    await sequential('app/client-a', vip('plain-echo'), 80);
    await expectCounters(
      'node-a',
      {
        reporter: 'source',
        source_workload: 'client-a',
        source_principal: 'unknown',
        destination_service: 'plain-echo.plain.svc.cluster.local',
        destination_workload: 'plain-b',
        destination_workload_namespace: 'plain',
        destination_principal: 'unknown',
        connection_security_policy: 'unknown',
      },
      traffic,
    );
    assert.deepEqual(
      istio(await metrics('node-b'), 'istio_tcp_connections_opened_total', { destination_workload: 'plain-b' }),
      [],
      'node-b does not enrol plain-b, so it reports nothing for it',
    );
    const records = sandbox.accessRecords('node-a').filter((r) => r.destinationService === 'plain-echo.plain');
    assert.deepEqual(
      records.map((r) => [r.path, r.security, r.sourcePrincipal, r.destinationWorkload]),
      Array(N).fill(['passthrough', 'none', undefined, 'plain-b']),
    );
  });

  test('into the mesh from outside it: captured inbound plaintext, reported by the destination', async () => {
    await sequential('plain/outsider', vip('echo-b'), 80);
    await expectCounters(
      'node-b',
      {
        reporter: 'destination',
        source_workload: 'outsider',
        source_workload_namespace: 'plain',
        source_principal: 'unknown',
        destination_workload: 'server-b',
        destination_service: 'echo-b.app.svc.cluster.local',
        destination_principal: 'unknown',
        connection_security_policy: 'unknown',
      },
      traffic,
    );
    const records = sandbox.accessRecords('node-b').filter((r) => r.sourceWorkload === 'outsider');
    assert.equal(records.length, N);
    for (const r of records)
      assert.deepEqual([r.direction, r.path, r.bytesSent, r.bytesReceived], ['inbound', 'plaintext', REQUEST_BYTES, RESPONSE_BYTES]);
  });

  test('ferry sandbox inspect graph: edges from workloads to services with the traffic sent, as a table, DOT and SVG', async () => {
    const out = path.join(work, 'graph.dot');
    const result = await ferry(['sandbox', 'inspect', '--prefix', PREFIX, 'graph', '--out', out, '-o', 'json']);
    assert.equal(result.code, 0, result.stderr);
    const graph = JSON.parse(result.stdout) as {
      edges: Array<{
        source: string;
        destination: string;
        connections: number;
        requestBytes: number;
        responseBytes: number;
        failures: number;
      }>;
    };
    // Each connection once: the four kinds of traffic sent so far, with their exact sizes.
    const each = [N, N * REQUEST_BYTES, N * RESPONSE_BYTES, 0];
    assert.deepEqual(graph.edges.map((e) => [e.source, e.destination, e.connections, e.requestBytes, e.responseBytes, e.failures]).sort(), [
      ['workload:client-a.app', 'service:echo-a.app', ...each],
      ['workload:client-a.app', 'service:echo-b.app', ...each],
      ['workload:client-a.app', 'service:plain-echo.plain', ...each],
      ['workload:outsider.plain', 'service:echo-b.app', ...each],
    ]);
    const dot = fs.readFileSync(out, 'utf8');
    assert.match(dot, /^digraph/);
    assert.match(dot, /client-a\.app.*->.*echo-a\.app/);
    // scripts/setup.sh installs graphviz, so the SVG is always made here.
    assert.match(fs.readFileSync(out.replace(/\.dot$/, '.svg'), 'utf8'), /<svg/);
    const table = await ferry(['sandbox', 'inspect', '--prefix', PREFIX, 'graph', '--out', out]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /client-a\.app\s+echo-a\.app\s+5\b/);
  });

  test('health metrics: enrolled pods, BPF maps, certificates, tunnels, readiness', async () => {
    const samples = await metrics('node-a');
    const value = (name: string, labels: Record<string, string> = {}): number | undefined =>
      samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
    assert.equal(value('ferry_enrolled_pods'), 2);
    assert.equal(value('ferry_workload_enrolled', { namespace: 'app', workload: 'client-a' }), 1);
    assert.equal(value('ferry_workload_enrolled', { namespace: 'app', workload: 'server-a' }), 1);
    assert.equal(value('ferry_bpf_map_entries', { map: 'ferry_pods' }), 2, 'one ferry_pods entry per enrolled pod');
    assert.ok((value('ferry_bpf_map_max_entries', { map: 'ferry_orig_dst' }) ?? 0) > 0);
    assert.equal(value('ferry_bpf_links_attached', { program: 'connect4' }), 1);
    assert.equal(value('ferry_bpf_links_attached', { program: 'sk_lookup' }), 2);
    const expiry = value('ferry_certificate_expiry_timestamp_seconds', { principal: 'cluster.local/ns/app/sa/client' }) ?? 0;
    assert.ok(expiry * 1000 > Date.now() && expiry * 1000 < Date.now() + 25 * 3600_000, `client certificate expiry ${expiry}`);
    assert.equal(value('ferry_hbone_connections', { direction: 'outbound' }), 1, 'the pooled tunnel to server-b');
    assert.equal(value('ferry_ready'), 1);
    assert.ok(
      (value('ferry_policy_decisions_total', { decision: 'allow', mode: 'enforced' }) ?? 0) >= N,
      'short-path connections were authorized',
    );
    assert.ok(value('process_cpu_seconds_total') !== undefined);
    assert.ok(value('ferry_event_loop_lag_seconds', { quantile: '0.99' }) !== undefined);
  });

  test("the admin API answers on the node's loopback only: refused from pods and from the other node", async () => {
    const dump = JSON.parse(await curlInNode('node-a', 'http://127.0.0.1:15000/config_dump')) as { node: string };
    assert.equal(dump.node, 'node-a');
    const listening = await sh('ip', ['netns', 'exec', nodeNetns('node-a'), 'ss', '-Hltn', 'sport = :15000']);
    assert.deepEqual(
      listening
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/)[3]),
      ['127.0.0.1:15000'],
    );

    const nodeA = plan().nodes.find((n) => n.name === 'node-a');
    assert.ok(nodeA);
    // From the other node, at node-a's fabric address: curl's exit 7 is "connection refused".
    const crossNode = await sh('sh', [
      '-c',
      `ip netns exec ${nodeNetns('node-b')} curl -sS --max-time 5 http://${nodeA.fabricIp}:15000/config_dump 2>&1; echo " exit=$?"`,
    ]);
    assert.match(crossNode, /exit=7/, `node-b reached node-a's admin port: ${crossNode}`);
    // From pods, at their node's address (their gateway): a meshed pod's connection is captured and
    // the agent's dial from inside the pod is refused (the client sees a reset); an unmeshed pod's is refused outright.
    for (const [pod, code] of [
      ['app/client-a', 'ECONNRESET'],
      ['plain/outsider', 'ECONNREFUSED'],
    ]) {
      const gateway = plan().nodes.find((n) => n.name === podNode[pod])?.podGateway;
      assert.ok(gateway);
      const result = await sandbox.client(pod, ['send', gateway, '15000', 'GET /config_dump HTTP/1.0\r\n\r\n']);
      assert.equal(result.code, code, `${pod}: ${JSON.stringify(result)}`);
      assert.equal(result.body, undefined);
    }
  });

  test('readiness follows the kernel: a detached capture program makes the agent unready until it is re-attached', async () => {
    const ready = (): Promise<string> => curlInNode('node-a', 'http://127.0.0.1:15021/healthz/ready', ['-w', '%{http_code}']);
    assert.match(await ready(), /ready\n200$/);
    const dump = JSON.parse(await curlInNode('node-a', 'http://127.0.0.1:15000/config_dump')) as {
      bpf: { links: Array<{ program: string; linkId: number; attached: boolean }> };
    };
    const connect4 = dump.bpf.links.find((l) => l.program === 'connect4');
    assert.ok(connect4?.attached, JSON.stringify(dump.bpf.links));
    await sh('bpftool', ['link', 'detach', 'id', String(connect4.linkId)]);
    try {
      const answer = await ready();
      assert.match(answer, /not ready: BPF link detached: connect4 .*503$/s);
      // And capture really is gone: client-a's connection to server-b's address is no longer seen by node-a.
      const before = sandbox.accessRecords('node-a').length;
      await sequential('app/client-a', ip['server-b'], 7000, 1);
      await eventually(
        () => sandbox.accessRecords('node-b').some((r) => r.path === 'plaintext' && r.sourceWorkload === 'client-a'),
        5000,
        'node-b to see client-a arrive in plaintext',
      );
      assert.equal(sandbox.accessRecords('node-a').length, before, 'node-a proxied a connection with connect4 detached');
    } finally {
      // A restarted agent replaces the detached pinned link with a new one.
      assert.equal((await ferry(['sandbox', 'agent', 'kill', '--prefix', PREFIX, 'node-a'])).code, 0);
      const started = await ferry(['sandbox', 'agent', 'start', '--prefix', PREFIX, 'node-a']);
      assert.equal(started.code, 0, started.stderr);
    }
    assert.match(await ready(), /ready\n200$/);
    const links = (JSON.parse(await curlInNode('node-a', 'http://127.0.0.1:15000/config_dump')) as typeof dump).bpf.links;
    assert.ok(
      links.every((l) => l.attached),
      JSON.stringify(links),
    );
  });

  test('log levels change at run time through the admin API', async () => {
    const quiet = await curlInNode('node-b', 'http://127.0.0.1:15000/logging?level=warn&component=access', ['-X', 'POST']);
    assert.deepEqual(JSON.parse(quiet), { level: 'debug', components: { access: 'warn' } });
    const before = sandbox.accessRecords('node-b').length;
    await sequential('plain/outsider', vip('echo-b'), 80, 2);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(sandbox.accessRecords('node-b').length, before, 'access lines written at warn');
    await curlInNode('node-b', 'http://127.0.0.1:15000/logging?level=reset&component=access', ['-X', 'POST']);
    await sequential('plain/outsider', vip('echo-b'), 80, 2);
    await eventually(() => sandbox.accessRecords('node-b').length === before + 2, 5000, 'access lines again');
    const bad = await curlInNode('node-b', 'http://127.0.0.1:15000/logging?level=loud', ['-X', 'POST', '-w', ' %{http_code}']);
    assert.match(bad, /level "loud" is not one of .* 400$/s);
  });

  test("ferry sandbox inspect: json matches the agent's state", async () => {
    const inspect = async (args: string[]): Promise<unknown> => {
      const result = await ferry(['sandbox', 'inspect', '--prefix', PREFIX, ...args, '-o', 'json']);
      assert.equal(result.code, 0, result.stderr);
      return JSON.parse(result.stdout);
    };
    const workloads = (await inspect(['node-a', 'workloads'])) as Array<{
      name: string;
      enrolled: boolean;
      protocol: string;
      node: string;
      ips: string[];
      identity: string;
    }>;
    assert.deepEqual(
      workloads
        .filter((w) => w.enrolled)
        .map((w) => w.name)
        .sort(),
      ['client-a', 'server-a'],
    );
    const client = workloads.find((w) => w.name === 'client-a');
    assert.deepEqual([client?.node, client?.ips, client?.identity, client?.protocol], ['node-a', [ip['client-a']], SPIFFE_CLIENT, 'HBONE']);
    assert.equal(workloads.find((w) => w.name === 'plain-b')?.protocol, 'TCP');

    const certs = (await inspect(['node-a', 'certs'])) as Array<{ identity: string; state: string; notAfter: string; chain: string[] }>;
    assert.deepEqual(certs.map((c) => c.identity).sort(), [SPIFFE_CLIENT, SPIFFE_SERVER]);
    // Issued by the controller's CA: each chain leads from its leaf to a root of the CA Secret.
    const { roots } = caIssuerFromFiles(readCaFiles(await sandbox.caFilesDir()), 'the CA Secret');
    for (const c of certs) assert.ok(chainsTo(c.chain, roots), `${c.identity}: its chain does not lead to a root of the mesh CA`);
    for (const c of certs) {
      assert.equal(c.state, 'valid');
      assert.ok(c.chain.every((pem) => !pem.includes('PRIVATE KEY')));
    }

    const services = (await inspect(['node-a', 'services'])) as Array<{ name: string; vips: string[] }>;
    assert.deepEqual(services.map((s) => [s.name, s.vips]).sort(), [
      ['echo-a', [vip('echo-a')]],
      ['echo-b', [vip('echo-b')]],
      // The API server's own Service, which every cluster has.
      ['kubernetes', ['10.96.0.1']],
      ['plain-echo', [vip('plain-echo')]],
    ]);

    // An open connection shows with its parties and live byte counts.
    const held = sandbox.hold('app/client-a', vip('echo-b'), 80);
    try {
      held.stdin.write('hello\n');
      await new Promise<void>((resolve) => held.stdout.once('data', () => resolve()));
      let connections: Array<{
        direction: string;
        path: string;
        sourceWorkload: string;
        destinationService: string;
        destinationWorkload: string;
        bytesSent: number;
        bytesReceived: number;
      }> = [];
      await eventually(
        async () => {
          connections = (await inspect(['node-a', 'connections'])) as typeof connections;
          return connections.length > 0;
        },
        5000,
        'the held connection in /connections',
      );
      assert.deepEqual(
        connections.map((c) => [
          c.direction,
          c.path,
          c.sourceWorkload,
          c.destinationService,
          c.destinationWorkload,
          c.bytesSent,
          c.bytesReceived,
        ]),
        [['outbound', 'hbone', 'client-a', 'echo-b.app', 'server-b', 'hello\n'.length, 'hello\n'.length]],
      );
    } finally {
      held.stdin.end();
      held.kill();
    }
  });
});
