// Root integration: the attacks a hostile pod or peer would try, on a real dual-stack sandbox (BPF in
// this machine's kernel, real namespaces, veths, sockets and TLS), each with its exact outcome:
// recursive calls into the agent, Ferry's port numbers, the source address apps see, the mark,
// blackholed dials, labels and vanished workloads, the limits, HTTP/2 floods, slow readers, scrape
// storms, dead peers, a killed agent and a pod that squats the agent's port to stay unmeshed.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { netnsHttpGet } from '../../src/sandbox';
import { parsePrometheusText, type MetricSample } from '../../src/telemetry';
import { FERRY, NODE, TOOLS, TestSandbox, echoCommand, eventually, ferry, sh, withSandbox } from './harness';

const PREFIX = 'ferryt-hard';
const CAPTURED = '127.0.0.1:15001';
/** An address of nothing: node-a drops what its pods send there (a blackhole route inside node-a's namespace). */
const BLACKHOLE = '10.99.0.1';
const OWN_PORT_LISTENERS = [15000, 15020, 15021, 15053];

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
metadata: { name: client-a, namespace: app }
spec: { nodeName: node-a, serviceAccountName: client, containers: [{ name: c, command: ["sleep", "infinity"] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server-a, namespace: app, labels: { app: echo-a } }
spec:
  nodeName: node-a
  serviceAccountName: server
  containers: [{ name: echo, command: ${echoCommand(7000, '::')}, env: [{ name: POD_NAME, value: server-a }], ports: [{ containerPort: 7000 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: server-b, namespace: app, labels: { app: echo-b, track: stable } }
spec:
  nodeName: node-b
  serviceAccountName: server
  containers: [{ name: echo, command: ${echoCommand(7000, '::')}, env: [{ name: POD_NAME, value: server-b }], ports: [{ containerPort: 7000 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: stubborn-b, namespace: app, labels: { app: stubborn } }
spec:
  nodeName: node-b
  serviceAccountName: server
  # Its shell ignores SIGTERM, so its processes run through the whole grace period after a deletion.
  terminationGracePeriodSeconds: 30
  containers:
    - name: echo
      command: ["sh", "-c", 'trap '''' TERM; "$0" "$@" & wait', "${NODE}", "${path.join(TOOLS, 'echo-server.js')}", "7000", "::"]
      env: [{ name: POD_NAME, value: stubborn-b }]
      ports: [{ containerPort: 7000 }]
---
apiVersion: v1
kind: Pod
metadata: { name: ports-b, namespace: app, labels: { app: ports } }
spec:
  nodeName: node-b
  serviceAccountName: ports
  containers:
${OWN_PORT_LISTENERS.map((port) => `    - { name: p${port}, command: ${echoCommand(port, '::')}, env: [{ name: POD_NAME, value: ports-b }], ports: [{ containerPort: ${port} }] }`).join('\n')}
---
apiVersion: v1
kind: Pod
metadata: { name: squat-a, namespace: app }
spec: { nodeName: node-a, serviceAccountName: squat, containers: [{ name: c, command: ["sleep", "infinity"] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: client-p, namespace: plain }
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
metadata: { name: loop, namespace: app }
spec: { selector: { app: echo-b }, ports: [{ port: 80, targetPort: 15006 }] }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-canary, namespace: app }
spec: { selector: { matchLabels: { track: canary } }, action: DENY, rules: [{}] }
`;

/** Extra `ferry agent` flags for every agent: map occupancy sampled every second, for the orig_dst check. */
const AGENT_ARGS = ['--map-sample-seconds=1'];

/** An IPv4 peer as a dual-stack (`::`) server reports it: ::ffff:a.b.c.d. */
function unmapped(ip: string | undefined): string | undefined {
  return ip?.replace(/^::ffff:(?=\d+\.)/, '');
}

/** The agent reset the connection (the RST may come before the client's connect completes). */
function wasReset(p: Probe): boolean {
  return p.outcome === 'reset' || (p.outcome === 'refused' && p.code === 'ECONNRESET');
}

interface Probe {
  outcome?: 'refused' | 'reset' | 'fin' | 'data';
  code?: string;
  ms?: number;
  remote?: string;
  error?: string;
}

interface Who {
  remote?: string;
  error?: string;
  code?: string;
  server?: { pod: string; peer: string; local: string };
}

describe('hardening: what a hostile pod or peer tries', { timeout: 1_500_000 }, () => {
  const sandbox = new TestSandbox(PREFIX, MANIFEST, ['--dual-stack', ...AGENT_ARGS.map((a) => `--agent-arg=${a}`)]);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `${PREFIX}-work-`));
  const children = new Set<ChildProcess>();
  const addresses: Record<string, string[]> = {};
  const { ip } = withSandbox(sandbox, () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    fs.rmSync(work, { recursive: true, force: true });
  });
  const nodeNetns = (node: string): string => `/run/netns/${PREFIX}-node-${node}`;
  const fabricVeth = (node: string): string =>
    (
      JSON.parse(fs.readFileSync(`/run/ferry/${PREFIX}/plan.json`, 'utf8')) as {
        nodes: Array<{ name: string; fabricVeth: string }>;
      }
    ).nodes.find((n) => n.name === node)!.fabricVeth;
  const v6 = (pod: string): string => addresses[pod].find((a) => a.includes(':'))!;

  after(() => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  });

  async function pods(): Promise<void> {
    if (Object.keys(addresses).length > 0) return;
    const status = (await sandbox.status()) as unknown as { pods: Array<{ name: string; ips: string[] }> };
    for (const p of status.pods) addresses[p.name] = p.ips;
    assert.ok(v6('client-a'), 'the sandbox is dual-stack');
  }

  async function probe(pod: string, host: string, port: number): Promise<Probe> {
    return sandbox.client(pod, ['probe', host, String(port)]) as Promise<Probe>;
  }

  async function who(pod: string, host: string, port: number): Promise<Who> {
    return sandbox.client(pod, ['who', host, String(port)]) as Promise<Who>;
  }

  async function metrics(node: string): Promise<MetricSample[]> {
    const { status, body } = await netnsHttpGet(nodeNetns(node), '127.0.0.1', 15020, '/metrics', 10_000);
    assert.equal(status, 200);
    return parsePrometheusText(body, `${node} metrics`).samples;
  }

  function value(samples: MetricSample[], name: string, labels: Record<string, string> = {}): number {
    return samples
      .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
      .reduce((sum, s) => sum + s.value, 0);
  }

  async function readiness(node: string): Promise<{ status: number; body: string }> {
    return netnsHttpGet(nodeNetns(node), '127.0.0.1', 15021, '/healthz/ready', 5000);
  }

  async function agentPid(node: string): Promise<number> {
    const pid = (await sandbox.status()).nodes.find((n) => n.name === node)?.agentPid;
    assert.ok(pid, `no agent running on ${node}`);
    return pid;
  }

  function processStats(pid: number): { fds: number; rssMiB: number } {
    const rss = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return { fds: fs.readdirSync(`/proc/${pid}/fd`).length, rssMiB: Number(rss?.[1] ?? 0) / 1024 };
  }

  /** Access records of node's agent for connections of `pod` since `from` records were there. */
  function records(node: string, pod: string, from = 0): Array<Record<string, unknown>> {
    return sandbox
      .accessRecords(node)
      .slice(from)
      .filter((r) => r.pod === pod);
  }

  /** A long-running tool in a pod (tcp-client.js MODE …), its JSON lines collected; killed at the end. */
  function background(pod: string, args: string[]): { lines: Array<Record<string, unknown>>; child: ChildProcess } {
    const child = spawn(
      NODE,
      [
        FERRY,
        'sandbox',
        'exec',
        '--prefix',
        PREFIX,
        pod,
        '--',
        'sh',
        '-c',
        'ulimit -n 16384; exec "$@"',
        'tool',
        NODE,
        path.join(TOOLS, 'tcp-client.js'),
        ...args,
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    children.add(child);
    const lines: Array<Record<string, unknown>> = [];
    let buffer = '';
    child.stdout!.on('data', (d: Buffer) => {
      buffer += d.toString();
      for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
        const line = buffer.slice(0, i).trim();
        buffer = buffer.slice(i + 1);
        if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      }
    });
    return { lines, child };
  }

  /** kubectl against the sandbox's API server, which the controller and so the agents follow. */
  async function kubectl(args: string[]): Promise<string> {
    const result = await sandbox.kubectl(args);
    assert.equal(result.code, 0, `kubectl ${args.join(' ')}:\n${result.stdout}\n${result.stderr}`);
    return result.stdout;
  }

  async function credentials(name: string, principal: string): Promise<string[]> {
    const [, ns, , sa] = principal.split('/').slice(1);
    return sandbox.forgedCredentials(work, name, { uris: [`spiffe://cluster.local/ns/${ns}/sa/${sa}`] });
  }

  async function tool(pod: string, script: string, args: string[], timeoutMs = 60_000): Promise<Record<string, unknown>> {
    const result = await sandbox.exec(
      pod,
      ['sh', '-c', 'ulimit -n 16384; exec "$@"', 'tool', NODE, path.join(TOOLS, script), ...args],
      timeoutMs,
    );
    const line = result.stdout.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new Error(`${script} ${args.join(' ')} printed no JSON (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
    }
  }

  // ---- 1. recursive and own-port calls ----------------------------------------------------------

  test('recursive calls into the agent are refused within 1 s, counted, logged at most once a second, and leave no trace', async () => {
    await pods();
    const pid = await agentPid('node-a');
    const before = processStats(pid);
    const refusedBefore = value(await metrics('node-a'), 'ferry_connections_refused_total', { reason: 'self_call' });
    const firstRecord = sandbox.accessRecords('node-a').length;
    const started = Date.now();
    const targets: Array<[string, number]> = [
      ['127.0.0.1', 15006],
      ['0.0.0.0', 15006],
      ['::1', 15006],
      ['::', 15006],
      ['::ffff:127.0.0.1', 15006],
      ['127.0.0.1', 15001],
      ['127.0.0.1', 15008],
      [ip['client-a'], 15006],
      [ip['client-a'], 15001],
      [v6('client-a'), 15006],
      ['loop.app', 80],
      [ip['server-b'], 15006],
      [ip['server-a'], 15001],
    ];
    for (const [host, port] of targets) {
      const result = await probe('app/client-a', host, port);
      assert.ok(
        result.outcome === 'reset' || result.outcome === 'refused' || result.outcome === 'fin',
        `${host}:${port} was answered: ${JSON.stringify(result)}`,
      );
      assert.notEqual(result.outcome, 'data', `${host}:${port}`);
      assert.ok((result.ms ?? Infinity) < 1000, `${host}:${port} took ${result.ms} ms to be refused`);
    }
    // A burst of the very call that used to loop: 300 of them, as fast as a pod can make them.
    const burst = await tool('app/client-a', 'tcp-client.js', ['concurrent', '127.0.0.1', '15006', '300']);
    assert.equal(burst.ok, 0, `a recursive call was answered: ${JSON.stringify(burst)}`);
    const seconds = (Date.now() - started) / 1000;

    const samples = await metrics('node-a');
    const refused = value(samples, 'ferry_connections_refused_total', { reason: 'self_call' }) - refusedBefore;
    // Every loopback, VIP and own-address form reached the agent and was refused as a self call
    // (the HBONE port on another pod is refused by its listener's own checks instead, and the
    // peer's 15006 by that peer: neither loops). Every one of the burst too.
    assert.ok(refused >= targets.length - 2 + 300, `only ${refused} self calls counted`);
    // The last window's line comes when the window closes, a second after it opened.
    const selfCallLines = (): Array<Record<string, unknown>> =>
      records('node-a', 'app/client-a', firstRecord).filter((r) => r.reason === 'self_call');
    const accounted = (): number => selfCallLines().reduce((n, r) => n + 1 + Number(r.suppressed ?? 0), 0);
    await eventually(() => accounted() >= 300, 5000, 'the access lines to account for every self call');
    const lines = selfCallLines();
    const span = (Date.now() - started) / 1000;
    assert.ok(lines.length <= Math.ceil(span) + 1, `${lines.length} self-call lines in ${span.toFixed(1)} s`);
    // Nothing of it stays in the agent.
    await eventually(
      () => {
        const now = processStats(pid);
        return now.fds <= before.fds + 4;
      },
      10_000,
      "the agent's fd count back to its baseline",
    );
    const after = processStats(pid);
    process.stdout.write(
      `# recursive calls: ${refused} refused in ${seconds.toFixed(1)} s, ${lines.length} log lines; ` +
        `agent fds ${before.fds} -> ${after.fds}, RSS ${before.rssMiB.toFixed(0)} -> ${after.rssMiB.toFixed(0)} MiB\n`,
    );
    assert.ok(after.rssMiB < before.rssMiB + 40, `agent RSS grew from ${before.rssMiB} to ${after.rssMiB} MiB`);
    // The agent still serves.
    assert.equal((await who('app/client-a', 'echo-b.app', 80)).server?.pod, 'server-b');
  });

  // ---- 2. every port meshed --------------------------------------------------------------------

  test("an app on Ferry's port numbers gets the mesh's policy: through the agent, and refused under STRICT like any port", async () => {
    await pods();
    for (const port of OWN_PORT_LISTENERS) {
      const seen = await who('plain/client-p', ip['ports-b'], port);
      assert.equal(seen.server?.pod, 'ports-b', `${port}: ${JSON.stringify(seen)}`);
      assert.equal(unmapped(seen.server?.peer), ip['client-p'], `${port}: the app sees the real client`);
      await eventually(
        () =>
          sandbox
            .accessRecords('node-b')
            .some(
              (r) =>
                r.pod === 'app/ports-b' &&
                r.path === 'plaintext' &&
                r.destination === `${ip['ports-b']}:${port}` &&
                String(r.source).startsWith(`${ip['client-p']}:`),
            ),
        5000,
        `the agent's record of plaintext to ${port}`,
      );
    }
    const strictFile = path.join(work, 'strict.yaml');
    fs.writeFileSync(
      strictFile,
      `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: ports-strict, namespace: app }
spec: { selector: { matchLabels: { app: ports } }, mtls: { mode: STRICT } }
`,
    );
    const applied = await ferry(['sandbox', 'apply', '--prefix', PREFIX, '-f', strictFile]);
    assert.equal(applied.code, 0, applied.stderr);
    try {
      for (const port of OWN_PORT_LISTENERS) {
        await eventually(
          async () => wasReset(await probe('plain/client-p', ip['ports-b'], port)),
          10_000,
          `plaintext to ${port} refused under STRICT`,
        );
        const v6Result = await probe('plain/client-p', v6('ports-b'), port);
        assert.ok(wasReset(v6Result), `IPv6 ${port}: ${JSON.stringify(v6Result)}`);
      }
      // A meshed client still gets through (mutual TLS over HBONE).
      assert.equal((await who('app/client-a', ip['ports-b'], 15020)).server?.pod, 'ports-b');
    } finally {
      const deleted = await ferry(['sandbox', 'delete', '--prefix', PREFIX, '-f', strictFile]);
      assert.equal(deleted.code, 0, deleted.stderr);
    }
  });

  // ---- 3. real client addresses ------------------------------------------------------------------

  test('apps see the real client: the source pod over HBONE and the short path, the client for plaintext, IPv4 and IPv6', async () => {
    await pods();
    const paths: Array<[string, string, string, string]> = [
      // client pod, target pod, expected peer, path on the record
      ['app/client-a', 'server-b', 'client-a', 'hbone'],
      ['app/client-a', 'server-a', 'client-a', 'short'],
      ['plain/client-p', 'server-a', 'client-p', 'plaintext'],
    ];
    for (const [client, server, peer, recordPath] of paths) {
      for (const family of [4, 6] as const) {
        const target = family === 4 ? ip[server] : v6(server);
        const expected = family === 4 ? ip[peer] : v6(peer);
        const seen = await who(client, target, 7000);
        assert.equal(seen.server?.pod, server, `${client} -> ${target}: ${JSON.stringify(seen)}`);
        const reported = unmapped(seen.server!.peer);
        assert.equal(reported, expected, `${client} -> ${server} over IPv${family} (${recordPath}): the app saw ${seen.server!.peer}`);
      }
      const node = server === 'server-b' ? 'node-b' : 'node-a';
      await eventually(() => sandbox.accessRecords(node).some((r) => r.direction === 'inbound' || r.path === 'short'), 5000, 'records');
      assert.ok(
        sandbox.accessRecords(node).some((r) => r.path === recordPath && String(r.source).includes(ip[peer])),
        `the access log of ${node} lost the ${recordPath} record from ${peer}`,
      );
    }
    // A thousand plaintext connections in a row from one client: each delivery picks a source port
    // that keeps its 4-tuple apart from the client's own connections to the app (delivery-port.ts).
    const many = await tool('plain/client-p', 'tcp-client.js', ['concurrent', ip['server-a'], '7000', '200']);
    assert.equal(many.failed, 0, JSON.stringify(many.errors));
    const sequential = await tool('plain/client-p', 'tcp-client.js', ['sequential', ip['server-a'], '7000', '1000'], 120_000);
    assert.equal(sequential.failed, 0, JSON.stringify(sequential.errors));
  });
  // ---- 10. the mark --------------------------------------------------------------------------------

  test("a pod that sets the agent's marks is captured all the same, and counted", async () => {
    await pods();
    const before = value(await metrics('node-a'), 'ferry_bpf_verdicts_total', { verdict: 'foreign_mark' });
    for (const mark of ['agent', 'delivery']) {
      const result = JSON.parse(
        (await sandbox.exec('app/client-a', [NODE, path.join(TOOLS, 'marked-connect.js'), ip['server-b'], '7000', mark])).stdout.trim(),
      ) as { remote?: string };
      assert.equal(result.remote, CAPTURED, `mark ${mark} skipped capture`);
    }
    assert.equal(value(await metrics('node-a'), 'ferry_bpf_verdicts_total', { verdict: 'foreign_mark' }) - before, 2);
    // A pod outside the mesh with the delivery mark is steered to the agent like any client: its
    // connection to an enrolled pod shows in that agent's access log.
    const from = sandbox.accessRecords('node-a').length;
    const plain = JSON.parse(
      (
        await sandbox.exec('plain/client-p', [NODE, path.join(TOOLS, 'marked-connect.js'), ip['server-a'], '7000', 'delivery'])
      ).stdout.trim(),
    ) as { remote?: string };
    assert.equal(plain.remote, `${ip['server-a']}:7000`);
    await eventually(
      () =>
        records('node-a', 'app/server-a', from).some((r) => r.path === 'plaintext' && String(r.source).startsWith(`${ip['client-p']}:`)),
      5000,
      "the marked connection in server-a's access log",
    );
  });

  // ---- 4. dials never block ------------------------------------------------------------------------

  test('32 dials to a blackhole beside steady traffic: the steady traffic has zero failures', async () => {
    await pods();
    await sh('ip', ['-n', `${PREFIX}-node-node-a`, 'route', 'add', 'blackhole', `${BLACKHOLE}/32`]);
    try {
      const before = value(await metrics('node-a'), 'istio_tcp_connections_closed_total', { response_flags: 'CONNECT' });
      const blackholed = tool('app/client-a', 'tcp-client.js', ['concurrent', BLACKHOLE, '80', '32'], 120_000);
      const steady = await tool('app/client-a', 'tcp-client.js', ['steady', 'echo-b.app', '80', '8', '25'], 120_000);
      const held = await blackholed;
      assert.equal(steady.failed, 0, `steady traffic failed beside the blackholed dials: ${JSON.stringify(steady.errors)}`);
      assert.ok(Number(steady.ok) >= 150, `only ${steady.ok} steady connections`);
      assert.equal(held.ok, 0);
      assert.equal(held.failed, 32);
      // Each blackholed dial ran into the agent's connect timeout and was reported as CONNECT.
      await eventually(
        async () => value(await metrics('node-a'), 'istio_tcp_connections_closed_total', { response_flags: 'CONNECT' }) - before >= 32,
        10_000,
        '32 CONNECT failures counted',
      );
    } finally {
      await sh('ip', ['-n', `${PREFIX}-node-node-a`, 'route', 'del', 'blackhole', `${BLACKHOLE}/32`]);
    }
  });

  // ---- 5. fail closed: labels and vanished workloads ----------------------------------------------

  test('a label change re-checks open connections like a policy change; a workload gone from the model is refused, not unmeshed', async () => {
    await pods();
    const holder = background('app/client-a', ['hold', ip['server-b'], '7000']);
    await eventually(() => holder.lines.some((l) => l.connected), 10_000, 'the held connection');
    holder.child.stdin!.write('before\n');
    await eventually(() => holder.lines.some((l) => l.echo === 'before\n'), 5000, 'the echo');

    // Relabelled into the deny-canary policy's selector: the open connection is reset, new ones denied.
    await kubectl(['-n', 'app', 'label', 'pod', 'server-b', 'track=canary', '--overwrite']);
    await eventually(() => holder.lines.some((l) => l.error !== undefined), 10_000, 'the held connection reset by the label change');
    assert.equal(holder.lines.find((l) => l.error !== undefined)?.code, 'ECONNRESET');
    assert.ok(!holder.lines.some((l) => l.ended), 'a clean end instead of a reset');
    assert.ok(wasReset(await probe('app/client-a', ip['server-b'], 7000)), 'a new connection to the relabelled pod was not reset');
    await eventually(
      () => sandbox.accessRecords('node-b').some((r) => r.pod === 'app/server-b' && r.policy === 'app/deny-canary'),
      5000,
      'the denial naming the policy',
    );
    await kubectl(['-n', 'app', 'label', 'pod', 'server-b', 'track=stable', '--overwrite']);
    await eventually(async () => (await who('app/client-a', ip['server-b'], 7000)).server?.pod === 'server-b', 10_000, 'allowed again');

    // Gone from the model while its pod runs: force-deleted from the API (`kubectl delete --force` removes the
    // object at once), its processes run on through their grace period. Refused both ways, never reachable around
    // the mesh, until its network namespace is gone.
    const netns = `${PREFIX}-pod-app-stubborn-b`;
    const held = background('app/client-a', ['hold', ip['stubborn-b'], '7000']);
    await eventually(() => held.lines.some((l) => l.connected), 10_000, 'a held connection to stubborn-b');
    await kubectl(['-n', 'app', 'delete', 'pod', 'stubborn-b', '--grace-period=0', '--force', '--wait=false']);
    await eventually(() => held.lines.some((l) => l.error !== undefined), 10_000, 'the held connection reset when the workload vanished');
    await eventually(
      async () => (await metrics('node-b')).some((s) => s.name === 'ferry_pods_refused' && s.value >= 1),
      5000,
      'stubborn-b refused',
    );
    for (const [client, target] of [
      ['app/client-a', ip['stubborn-b']],
      ['plain/client-p', ip['stubborn-b']],
      ['app/client-a', v6('stubborn-b')],
    ]) {
      const result = await probe(client, target, 7000);
      assert.ok(result.outcome === 'reset' || result.outcome === 'refused', `${client} -> ${target}: ${JSON.stringify(result)}`);
    }
    const out = (await sandbox.client('app/stubborn-b', ['probe', ip['server-a'], '7000'])) as Probe;
    assert.equal(out.outcome, 'refused', `a vanished pod reached out: ${JSON.stringify(out)}`);
    assert.equal(out.code, 'EPERM');
    // It was still running all along: the checks above saw its processes, not an empty namespace.
    assert.match(await sh('ip', ['netns', 'list']), new RegExp(`^${netns}\\b`, 'm'), 'stubborn-b stopped before its grace period ended');
    await eventually(async () => !new RegExp(`^${netns}\\b`, 'm').test(await sh('ip', ['netns', 'list'])), 45_000, `${netns} removed`);
    await eventually(async () => value(await metrics('node-b'), 'ferry_pods_refused') === 0, 10_000, 'nothing refused once it is gone');
    assert.equal((await who('app/client-a', ip['server-b'], 7000)).server?.pod, 'server-b');
  });

  // ---- 7. limits -------------------------------------------------------------------------------------

  test('limits: pending handshakes per source address, sessions per identity, connections per pod', async () => {
    await pods();
    // The attackers run in a pod outside the mesh: inside it, a connect to another pod's 15008 is
    // captured and refused as a self call before it leaves the pod.
    const evictedBefore = value(await metrics('node-b'), 'ferry_limits_exceeded_total', { limit: 'pending_handshakes_per_source' });
    // Pending handshakes: 48 TCP connections to 15008 that never say a word, from one address.
    const stalled = await tool('plain/client-p', 'hbone-client.js', [
      '--target',
      `${ip['server-b']}:15008`,
      '--mode',
      'stall',
      '--count',
      '48',
      '--hold-ms',
      '3000',
    ]);
    assert.equal(stalled.closedByServer, 16, `${stalled.closedByServer} of 48 stalled handshakes closed early (32 may wait)`);
    assert.equal(
      value(await metrics('node-b'), 'ferry_limits_exceeded_total', { limit: 'pending_handshakes_per_source' }) - evictedBefore,
      16,
    );
    // Others are not affected meanwhile: a meshed client gets its tunnel.
    assert.equal((await who('app/client-a', ip['server-b'], 7000)).server?.pod, 'server-b');

    // Sessions per identity: 132 tunnels with one workload's certificate; beyond 128 they are refused.
    const creds = await credentials('sessions', 'cluster.local/ns/app/sa/client');
    const sessions = await tool(
      'plain/client-p',
      'hbone-client.js',
      [
        '--target',
        `${ip['server-b']}:15008`,
        '--authority',
        `${ip['server-b']}:7000`,
        '--mode',
        'sessions',
        '--count',
        '132',
        '--hold-ms',
        '2000',
        ...creds,
      ],
      120_000,
    );
    assert.equal(sessions.failed, 0, JSON.stringify(sessions));
    assert.ok(Number(sessions.refused) >= 4, `${sessions.refused} of 132 sessions refused with a cap of 128`);
    assert.deepEqual(sessions.goawayCodes, [11], 'refused with GOAWAY ENHANCE_YOUR_CALM');
    assert.ok(value(await metrics('node-b'), 'ferry_limits_exceeded_total', { limit: 'hbone_sessions_per_identity' }) >= 4);

    // Connections per pod, and the idle timeout: node-a's agent restarted with a cap of 20 and
    // connections reset after 8 s without a byte either way.
    const killed = await ferry(['sandbox', 'agent', 'kill', 'node-a', '--prefix', PREFIX]);
    assert.equal(killed.code, 0, killed.stderr);
    const started = await ferry([
      'sandbox',
      'agent',
      'start',
      'node-a',
      '--prefix',
      PREFIX,
      ...[...AGENT_ARGS, '--max-connections-per-pod=20', '--idle-timeout-seconds=8'].map((a) => `--agent-arg=${a}`),
    ]);
    assert.equal(started.code, 0, started.stderr);
    try {
      const held = background('app/client-a', ['slowread', 'echo-b.app', '80', '20']);
      await eventually(() => held.lines.some((l) => l.connected === 20), 20_000, '20 held connections');
      const over = await probe('app/client-a', 'echo-b.app', 80);
      assert.ok(wasReset(over), JSON.stringify(over));
      await eventually(() => sandbox.accessRecords('node-a').some((r) => r.responseFlags === 'UO'), 5000, 'the UO record');
      assert.equal(value(await metrics('node-a'), 'ferry_limits_exceeded_total', { limit: 'connections_per_pod' }), 1);
      // Another pod on the node is not affected.
      assert.equal((await who('app/squat-a', 'echo-b.app', 80)).server?.pod, 'server-b');
      // The readers never read: once the windows are full nothing moves, and the idle timeout resets
      // every one of them — while a connection that talks stays.
      const talker = background('app/squat-a', ['hold', 'echo-b.app', '80']);
      await eventually(() => talker.lines.some((l) => l.connected), 10_000, 'a talking connection');
      const idleRecords = (): number => records('node-a', 'app/client-a').filter((r) => /idle for \d+ s/.test(String(r.error))).length;
      // Talk for longer than the idle timeout (10 s > 8 s), and until the readers are reset.
      const talkStart = Date.now();
      for (let i = 0; i < 30 && (idleRecords() < 20 || Date.now() - talkStart < 10_000); i++) {
        talker.child.stdin!.write(`tick ${i}\n`);
        await new Promise((r) => setTimeout(r, 1000));
      }
      assert.equal(idleRecords(), 20, 'the idle connections were not all reset within 30 s');
      talker.child.stdin!.write('still talking\n');
      await eventually(
        () => talker.lines.some((l) => String(l.echo ?? '').includes('still talking')),
        5000,
        'the talking connection to answer after the idle timeout',
      );
      assert.ok(
        !talker.lines.some((l) => l.error !== undefined || l.ended),
        `the talking connection was closed: ${JSON.stringify(talker.lines.at(-1))}`,
      );
      talker.child.stdin!.end('END\n');
      held.child.stdin!.end();
      await eventually(() => held.child.exitCode !== null, 10_000, 'the slow readers to go');
      assert.equal(
        held.lines.find((l) => l.closedByPeer !== undefined)?.closedByPeer,
        20,
        'the readers did not see their connections reset',
      );
      await eventually(async () => (await who('app/client-a', 'echo-b.app', 80)).server?.pod === 'server-b', 10_000, 'room again');
    } finally {
      await ferry(['sandbox', 'agent', 'kill', 'node-a', '--prefix', PREFIX]);
      const restarted = await ferry(['sandbox', 'agent', 'start', 'node-a', '--prefix', PREFIX]);
      assert.equal(restarted.code, 0, restarted.stderr);
    }
  });

  // ---- 8. HTTP/2 floods --------------------------------------------------------------------------

  test('HTTP/2 floods from a peer with a valid certificate close its session within a second; other traffic goes on', async () => {
    await pods();
    const creds = await credentials('flooder', 'cluster.local/ns/app/sa/client');
    const steady = tool('app/client-a', 'tcp-client.js', ['steady', 'echo-b.app', '80', '12', '10'], 120_000);
    const closedBefore = value(await metrics('node-b'), 'ferry_hbone_sessions_closed_total', { side: 'inbound' });
    const attacks = ['continuation', 'settings', 'ping', 'window-update-zero-conn', 'window-update-zero-stream'];
    for (const attack of attacks) {
      // From outside the mesh (a captured pod cannot reach 15008 at all); 100,000 frames at most.
      const result = await tool(
        'plain/client-p',
        'h2-flood.js',
        ['--target', `${ip['server-b']}:15008`, '--authority', `${ip['server-b']}:7000`, '--attack', attack, '--count', '100000', ...creds],
        30_000,
      );
      assert.ok(
        result.closedAfterMs !== null && Number(result.closedAfterMs) < 1000,
        `${attack}: session closed after ${result.closedAfterMs} ms` + ` (${JSON.stringify(result)})`,
      );
      assert.ok(result.goaway !== null || result.reset === true, `${attack}: ${JSON.stringify(result)}`);
      process.stdout.write(`# ${attack}: ${result.framesSent} frames sent, session closed after ${result.closedAfterMs} ms\n`);
    }
    assert.ok(
      value(await metrics('node-b'), 'ferry_hbone_sessions_closed_total', { side: 'inbound' }) - closedBefore >= attacks.length - 1,
      'the guards counted the sessions they closed',
    );
    const traffic = await steady;
    assert.equal(traffic.failed, 0, `traffic failed during the floods: ${JSON.stringify(traffic.errors)}`);
  });

  // ---- 7 (cont.). slow readers and memory --------------------------------------------------------

  test("200 slow readers cannot make the agents hold more than their tunnels' windows", async () => {
    await pods();
    const pidA = await agentPid('node-a');
    const pidB = await agentPid('node-b');
    const before = { a: processStats(pidA).rssMiB, b: processStats(pidB).rssMiB };
    const readers = background('app/client-a', ['slowread', ip['server-b'], '7000', '200']);
    await eventually(() => readers.lines.some((l) => l.connected === 200), 30_000, '200 slow readers connected');
    // Let the floods fill every window and buffer on the way.
    let peak = { a: 0, b: 0 };
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      peak = { a: Math.max(peak.a, processStats(pidA).rssMiB), b: Math.max(peak.b, processStats(pidB).rssMiB) };
    }
    readers.child.stdin!.end();
    await eventually(() => readers.child.exitCode !== null, 15_000, 'the slow readers to go');
    process.stdout.write(
      `# 200 slow readers: node-a agent RSS ${before.a.toFixed(0)} -> peak ${peak.a.toFixed(0)} MiB, ` +
        `node-b agent ${before.b.toFixed(0)} -> peak ${peak.b.toFixed(0)} MiB\n`,
    );
    // 200 streams ride 2 pooled tunnels (100 streams each): at most 2 connection windows (16 MiB) are
    // buffered for them, plus the per-connection overhead of 400 sockets and streams.
    assert.ok(peak.a - before.a < 160, `node-a's agent grew by ${(peak.a - before.a).toFixed(0)} MiB`);
    assert.ok(peak.b - before.b < 160, `node-b's agent grew by ${(peak.b - before.b).toFixed(0)} MiB`);
  });

  // ---- 9. cheap scrapes -------------------------------------------------------------------------

  test('50 concurrent scrape loops leave event-loop lag p99 under 50 ms; ferry_orig_dst holds only connects in flight', async () => {
    await pods();
    const stopAt = Date.now() + 22_000;
    let scrapes = 0;
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (Date.now() < stopAt) {
          const { status } = await netnsHttpGet(nodeNetns('node-a'), '127.0.0.1', 15020, '/metrics', 10_000);
          assert.equal(status, 200);
          scrapes += 1;
        }
      }),
    );
    const samples = await metrics('node-a');
    const p99 = value(samples, 'ferry_event_loop_lag_seconds', { quantile: '0.99' });
    process.stdout.write(`# scrape storm: ${scrapes} scrapes in 22 s by 50 loops; event-loop lag p99 ${(p99 * 1000).toFixed(1)} ms\n`);
    assert.ok(p99 < 0.05, `event-loop lag p99 ${p99 * 1000} ms under 50 scrape loops`);

    const sequential = await tool('app/client-a', 'tcp-client.js', ['sequential', 'echo-b.app', '80', '100']);
    assert.equal(sequential.failed, 0);
    // Sampled every second (--map-sample-seconds=1): once read, an entry is gone.
    await new Promise((r) => setTimeout(r, 2500));
    assert.ok(
      value(await metrics('node-a'), 'ferry_bpf_map_entries', { map: 'ferry_orig_dst' }) <= 2,
      'ferry_orig_dst kept entries of finished connections',
    );
  });

  // ---- 6. dead peers and a killed agent ----------------------------------------------------------

  test('dead peer: a stopped agent or a cut link resets held connections within 30 s, new ones fail fast, and it recovers', async () => {
    await pods();
    const cuts: Array<{ name: string; cut: () => Promise<void>; heal: () => Promise<void> }> = [
      {
        name: 'node-b agent SIGSTOP',
        cut: async () => {
          process.kill(await agentPid('node-b'), 'SIGSTOP');
        },
        heal: async () => {
          process.kill(await agentPid('node-b'), 'SIGCONT');
        },
      },
      {
        // The fabric's end of node-b's veth: node-b loses carrier, and its routes stay (only an
        // administratively downed device loses its routes).
        name: 'node-b fabric veth down',
        cut: () => sh('ip', ['-n', `${PREFIX}-fabric`, 'link', 'set', fabricVeth('node-b'), 'down']).then(() => undefined),
        heal: () => sh('ip', ['-n', `${PREFIX}-fabric`, 'link', 'set', fabricVeth('node-b'), 'up']).then(() => undefined),
      },
    ];
    for (const { name, cut, heal } of cuts) {
      const holder = background('app/client-a', ['hold', ip['server-b'], '7000']);
      await eventually(() => holder.lines.some((l) => l.connected), 10_000, `${name}: a held connection`);
      holder.child.stdin!.write('alive\n');
      await eventually(() => holder.lines.some((l) => l.echo === 'alive\n'), 5000, `${name}: the echo`);
      const cutAt = Date.now();
      await cut();
      try {
        await eventually(() => holder.lines.some((l) => l.error !== undefined), 30_000, `${name}: the held connection reset`);
        const resetAfter = Date.now() - cutAt;
        assert.equal(holder.lines.find((l) => l.error !== undefined)?.code, 'ECONNRESET', name);
        const fresh = await probe('app/client-a', ip['server-b'], 7000);
        assert.ok(fresh.outcome === 'reset' || fresh.outcome === 'refused', `${name}: a new connection ${JSON.stringify(fresh)}`);
        assert.ok((fresh.ms ?? Infinity) < 12_000, `${name}: a new connection took ${fresh.ms} ms to fail`);
        process.stdout.write(`# ${name}: held connection reset after ${resetAfter} ms, a new one failed in ${fresh.ms} ms\n`);
      } finally {
        await heal();
      }
      await eventually(
        async () => (await who('app/client-a', ip['server-b'], 7000)).server?.pod === 'server-b',
        30_000,
        `${name}: recovery`,
      );
    }
  });

  test('an agent SIGKILLed mid-transfer: the client sees a reset, never a clean end with bytes missing', async () => {
    await pods();
    for (const node of ['node-a', 'node-b']) {
      const flood = background('app/client-a', ['flood', ip['server-b'], '7000']);
      await eventually(() => flood.lines.some((l) => l.flowing), 15_000, `bytes flowing before ${node}'s agent is killed`);
      const killed = await ferry(['sandbox', 'agent', 'kill', node, '--prefix', PREFIX]);
      assert.equal(killed.code, 0, killed.stderr);
      try {
        await eventually(() => flood.lines.some((l) => l.bytes !== undefined), 30_000, `the transfer to end after ${node}'s agent died`);
        const result = flood.lines.find((l) => l.bytes !== undefined)!;
        assert.equal(result.ended, false, `${node}: the client saw a clean end after ${result.bytes} bytes`);
        assert.equal(result.code, 'ECONNRESET', `${node}: ${JSON.stringify(result)}`);
      } finally {
        const restarted = await ferry(['sandbox', 'agent', 'start', node, '--prefix', PREFIX]);
        assert.equal(restarted.code, 0, restarted.stderr);
      }
    }
    assert.equal((await who('app/client-a', ip['server-b'], 7000)).server?.pod, 'server-b');
  });

  // ---- 5. fail closed: enrolment -------------------------------------------------------------------

  test("a pod that squats the agent's port to stay out of the mesh is refused both ways until a retry enrols it", async () => {
    await pods();
    const killed = await ferry(['sandbox', 'agent', 'kill', 'node-a', '--prefix', PREFIX]);
    assert.equal(killed.code, 0, killed.stderr);
    // With the agent gone its listeners are closed: the pod takes 127.0.0.1:15001 for itself.
    // It exits when its stdin closes: that is how the test stops it inside the pod.
    const squatter = spawn(
      NODE,
      [
        FERRY,
        'sandbox',
        'exec',
        '--prefix',
        PREFIX,
        'app/squat-a',
        '--',
        NODE,
        '-e',
        'require("net").createServer((s) => s.end("squatted\\n")).listen(15001, "127.0.0.1", () => console.log("listening"));' +
          'process.stdin.resume(); process.stdin.on("end", () => process.exit(0));',
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    children.add(squatter);
    await eventually(() => squatter.stdout!.read() !== null || squatter.exitCode !== null, 10_000, 'the squatter to listen');
    assert.equal(squatter.exitCode, null, 'the squatter did not start');
    const started = await ferry(['sandbox', 'agent', 'start', 'node-a', '--prefix', PREFIX, '--no-wait']);
    assert.equal(started.code, 0, started.stderr);
    try {
      await eventually(
        async () => {
          try {
            const r = await readiness('node-a');
            return r.status === 503 && r.body.includes('app/squat-a');
          } catch {
            return false;
          }
        },
        30_000,
        'readiness 503 naming app/squat-a',
      );
      // Refused both ways; the squatter gets nothing; the node's other pods are served.
      const out = (await sandbox.client('app/squat-a', ['probe', ip['server-b'], '7000'])) as Probe;
      assert.equal(out.outcome, 'refused', JSON.stringify(out));
      assert.equal(out.code, 'EPERM');
      const inbound = await probe('plain/client-p', ip['squat-a'], 7000);
      assert.ok(inbound.outcome === 'refused' || inbound.outcome === 'reset', JSON.stringify(inbound));
      assert.equal((await who('app/client-a', 'echo-b.app', 80)).server?.pod, 'server-b');
      assert.ok(value(await metrics('node-a'), 'ferry_enrolment_failures_total', { reason: 'listeners' }) >= 1);
    } finally {
      squatter.stdin!.end();
      await eventually(() => squatter.exitCode !== null, 10_000, 'the squatter to exit');
    }
    // The retry with backoff enrols it once the port is free.
    await eventually(async () => (await readiness('node-a').catch(() => ({ status: 0 }))).status === 200, 30_000, 'ready again');
    const enrolled = (await sandbox.client('app/squat-a', ['who', 'echo-b.app', '80'])) as Who;
    assert.equal(enrolled.remote, CAPTURED);
    assert.equal(enrolled.server?.pod, 'server-b');
    assert.match(sandbox.agentLog('node-a'), /"msg":"enrolled after retrying"/);
  });
});
