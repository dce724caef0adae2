// Root integration: a real sandbox on its API server (`up`: BPF programs compiled by clang and loaded into
// this kernel, real namespaces, veths and sockets, agents as Pods) and traffic through Ferry's capture and node proxy.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MAP_NAMES, decodeConfig, encodeConfig, encodeU32 } from '../../src/capture/bpf-layout';
import { openPinnedMap } from '../../src/native';
import { readPlan } from '../../src/sandbox';
import { cgroup2Root } from '../../src/sandbox/system';
import { NODE, TOOLS, TestSandbox, echoCommand, eventually, ferry, sh, withSandbox } from './harness';

const PREFIX = 'ferryt-cap';
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
metadata: { name: server-a, namespace: app, labels: { app: echo-a } }
spec:
  nodeName: node-a
  containers: [{ name: echo, command: ${echoCommand(7000)}, env: [{ name: POD_NAME, value: server-a }], ports: [{ containerPort: 7000 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: server-b, namespace: app, labels: { app: echo-b } }
spec:
  nodeName: node-b
  containers: [{ name: echo, command: ${echoCommand(7000)}, env: [{ name: POD_NAME, value: server-b }], ports: [{ containerPort: 7000 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: server-p, namespace: plain, labels: { app: echo-p } }
spec:
  nodeName: node-b
  containers: [{ name: echo, command: ${echoCommand(7000)}, env: [{ name: POD_NAME, value: server-p }], ports: [{ containerPort: 7000 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: client-a, namespace: app }
spec: { nodeName: node-a, containers: [{ name: c, command: ["sleep", "infinity"] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: optout, namespace: app, annotations: { ferry.dev/mesh: disabled } }
spec: { nodeName: node-a, containers: [{ name: c, command: ["sleep", "infinity"] }] }
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
metadata: { name: echo-p, namespace: plain }
spec: { selector: { app: echo-p }, ports: [{ port: 80, targetPort: 7000 }] }
`;

const CAPTURED = '127.0.0.1:15001';

describe('capture in a two-node sandbox', { timeout: 600_000 }, () => {
  const sandbox = new TestSandbox(PREFIX, MANIFEST);

  const { ip } = withSandbox(sandbox);

  /**
   * The outbound access record the node's agent wrote for a client socket: the app's socket is on
   * loopback (captured), the record names the pod's address with that socket's port.
   */
  async function outboundRecord(node: string, pod: string, clientLocal: string): Promise<Record<string, unknown>> {
    const port = clientLocal.split(':').pop();
    let found: Record<string, unknown> | undefined;
    await eventually(
      () => {
        found = sandbox.accessRecords(node).find((r) => r.direction === 'outbound' && r.source === `${ip[pod]}:${port}`);
        return found !== undefined;
      },
      5000,
      `outbound access record for client port ${port} on ${node}`,
    );
    return found!;
  }

  /** How often the kubelet has started a node's agent container again (the agent Pod's restartCount). */
  async function agentRestarts(node: string): Promise<number> {
    const result = await sandbox.kubectl(['-n', 'ferry-system', 'get', 'pod', `ferry-agent-${node}`, '-o', 'json']);
    assert.equal(result.code, 0, result.stderr);
    const pod = JSON.parse(result.stdout) as { status?: { containerStatuses?: Array<{ name: string; restartCount: number }> } };
    const agent = pod.status?.containerStatuses?.find((c) => c.name === 'agent');
    assert.ok(agent, `ferry-agent-${node} has no status of its agent container`);
    return agent.restartCount;
  }

  /** connect4/6 and sock_ops on a node's cgroup, as bpftool lists them. */
  async function assertCgroupPrograms(cgroup: string): Promise<void> {
    const tree = await sh('bpftool', ['cgroup', 'show', cgroup]);
    assert.match(tree, /inet4_connect\s+.*ferry_connect4/);
    assert.match(tree, /inet6_connect\s+.*ferry_connect6/);
    assert.match(tree, /sock_ops\s+.*ferry_sock_ops/);
  }

  /** How many sk_lookup links of Ferry's program each pod namespace (`NS-NAME`) has, from bpftool. */
  async function skLookupLinks(): Promise<(pod: string) => number> {
    const links = JSON.parse(await sh('bpftool', ['-j', 'link', 'show'])) as Array<{ type: string; prog_id: number; netns_ino?: number }>;
    const progs = JSON.parse(await sh('bpftool', ['-j', 'prog', 'show'])) as Array<{ id: number; name: string }>;
    const skLookupIds = new Set(progs.filter((p) => p.name === 'ferry_sk_lookup').map((p) => p.id));
    // Count per pod namespace (by inode): other sandboxes on the machine have links of their own.
    return (pod: string): number => {
      const inode = fs.statSync(`/run/netns/${PREFIX}-pod-${pod}`).ino;
      return links.filter((l) => l.type === 'netns' && skLookupIds.has(l.prog_id) && l.netns_ino === inode).length;
    };
  }

  test('BPF programs are attached: connect4/6 and sock_ops on each node cgroup, one sk_lookup link per enrolled pod', async () => {
    const status = await sandbox.status();
    for (const node of status.nodes) await assertCgroupPrograms(node.cgroup);
    const linksOn = await skLookupLinks();
    for (const pod of ['app-server-a', 'app-server-b', 'app-client-a']) assert.equal(linksOn(pod), 1, `sk_lookup links on ${pod}`);
    for (const pod of ['app-optout', 'plain-client-p', 'plain-server-p']) assert.equal(linksOn(pod), 0, `sk_lookup links on ${pod}`);
  });

  test('same-node capture by Service name: client-a -> echo-a.app goes through the agent', async () => {
    const result = await sandbox.client('app/client-a', ['who', 'echo-a.app', '80']);
    assert.equal(result.error, undefined, JSON.stringify(result));
    assert.equal(result.remote, CAPTURED, 'connect() was rewritten to the pod-local outbound listener');
    assert.equal((result.server as { pod: string }).pod, 'server-a');
    const record = await outboundRecord('node-a', 'client-a', result.local as string);
    assert.equal(record.destinationService, 'echo-a.app');
    assert.equal(record.upstream, `${ip['server-a']}:7000`);
    // server-a is enrolled on the same node: the agent delivers inside itself (the short path),
    // checking policy with client-a's identity, and dials the app from inside server-a's namespace.
    assert.equal(record.path, 'short');
    assert.equal(record.sourcePrincipal, 'cluster.local/ns/app/sa/default');
    // …from client-a's address: the app sees who really called.
    assert.equal((result.server as { peer: string }).peer, ip['client-a']);
  });

  test('cross-node capture by VIP and by pod IP, with the source pod IP preserved', async () => {
    const status = await sandbox.status();
    const vip = status.services.find((s) => s.name === 'echo-b')!.vip;
    const byVip = await sandbox.client('app/client-a', ['who', vip, '80']);
    assert.equal(byVip.remote, CAPTURED);
    assert.equal((byVip.server as { pod: string }).pod, 'server-b');
    const byIp = await sandbox.client('app/client-a', ['who', ip['server-b'], '7000']);
    assert.equal(byIp.remote, CAPTURED);
    assert.equal((await outboundRecord('node-a', 'client-a', byIp.local as string)).upstream, `${ip['server-b']}:7000`);
    // To a pod outside the mesh the agent dials from inside client-a's namespace: the server sees client-a's IP.
    const toPlain = await sandbox.client('app/client-a', ['who', 'echo-p.plain', '80']);
    assert.equal(toPlain.remote, CAPTURED);
    assert.equal((toPlain.server as { peer: string }).peer, ip['client-a']);
    // And the destination agent on node-b saw the inbound side of the meshed ones.
    await eventually(
      () =>
        sandbox
          .accessRecords('node-b')
          .some((r) => r.direction === 'inbound' && r.pod === 'app/server-b' && String(r.source).startsWith(`${ip['client-a']}:`)),
      5000,
      'inbound record on node-b',
    );
  });

  test('a pod of a namespace that is not enrolled is not captured; its Service call still works', async () => {
    const before = sandbox.accessRecords('node-b').filter((r) => r.direction === 'outbound').length;
    const result = await sandbox.client('plain/client-p', ['who', 'echo-p', '80']);
    assert.equal(result.error, undefined, JSON.stringify(result));
    assert.equal(result.remote, `${ip['server-p']}:7000`, 'the VIP was translated in the kernel, not proxied');
    assert.equal((result.server as { peer: string }).peer, ip['client-p']);
    assert.equal(sandbox.accessRecords('node-b').filter((r) => r.direction === 'outbound').length, before);
  });

  test('a pod annotated ferry.dev/mesh: disabled is not captured', async () => {
    const result = await sandbox.client('app/optout', ['who', ip['server-p'], '7000']);
    assert.equal(result.remote, `${ip['server-p']}:7000`);
    assert.equal((result.server as { peer: string }).peer, ip.optout);
  });

  test('inbound plaintext from outside the mesh reaches the app on its original port through the agent', async () => {
    const result = await sandbox.client('plain/client-p', ['who', ip['server-a'], '7000']);
    assert.equal(result.remote, `${ip['server-a']}:7000`, 'the client is not captured');
    // Delivered by the agent from inside server-a's namespace, to the port the client dialled,
    // with the client's own address as source.
    assert.equal((result.server as { local: string }).local, `${ip['server-a']}:7000`);
    assert.equal((result.server as { peer: string }).peer, ip['client-p']);
    await eventually(
      () =>
        sandbox
          .accessRecords('node-a')
          .some(
            (r) =>
              r.direction === 'inbound' &&
              r.pod === 'app/server-a' &&
              String(r.source).startsWith(`${ip['client-p']}:`) &&
              r.destination === `${ip['server-a']}:7000`,
          ),
      5000,
      'inbound record',
    );
  });

  test("a pod that sets the agent's mark on its socket is captured all the same: the mark counts only in the agent's cgroup", async () => {
    const tool = [NODE, path.join(TOOLS, 'marked-connect.js'), ip['server-b'], '7000'];
    for (const mark of ['agent', 'delivery', '0']) {
      const result = JSON.parse((await sandbox.exec('app/client-a', [...tool, mark])).stdout.trim());
      assert.equal(result.remote, CAPTURED, `mark ${mark}: ${JSON.stringify(result)}`);
    }
  });

  test("during a hand-over the other agent's cgroup passes too: a marked socket from the cgroup named as peer is not captured; cleared, it is again", async () => {
    // The kernel's side of a hand-over whose two agents run in different cgroups (a DaemonSet surge): the
    // successor names its predecessor's cgroup in ferry_config (CaptureEngine.setPeerCgroup). Here client-a's
    // cgroup plays the predecessor's, written to node-a's pinned config map, and restored after.
    const membership = (await sandbox.exec('app/client-a', ['cat', '/proc/self/cgroup'])).stdout
      .split('\n')
      .find((l) => l.startsWith('0::'));
    assert.ok(membership, 'client-a runs in a cgroup v2 cgroup');
    const podCgroup = fs.statSync(path.join(cgroup2Root(), membership.slice(3)), { bigint: true }).ino;
    const node = readPlan(PREFIX).nodes.find((n) => n.name === 'node-a');
    assert.ok(node);
    const config = openPinnedMap(path.join(node.bpfPinDir, 'maps', MAP_NAMES.config));
    const key = encodeU32(0);
    const saved = config.lookup(key);
    assert.ok(saved);
    const held = decodeConfig(saved);
    assert.equal(held.peerCgroupId, 0n, 'no hand-over in progress');
    const tool = [NODE, path.join(TOOLS, 'marked-connect.js'), ip['server-b'], '7000'];
    const connect = async (mark: string) => JSON.parse((await sandbox.exec('app/client-a', [...tool, mark])).stdout.trim());
    try {
      config.update(key, encodeConfig(held.flags, held.agentCgroupId, podCgroup), 0);
      // (Only the socket mark shows it: the delivery mark is routed back into the pod by its reply rule.)
      assert.equal((await connect('agent')).remote, `${ip['server-b']}:7000`, 'the socket mark from the peer cgroup passes');
      assert.equal((await connect('0')).remote, CAPTURED, 'an unmarked socket of the peer cgroup is captured');
    } finally {
      config.update(key, saved, 0);
    }
    assert.deepEqual(decodeConfig(config.lookup(key) as Buffer), held);
    assert.equal((await connect('agent')).remote, CAPTURED, 'with the peer cleared the mark counts for nothing again');
    config.close();
  });

  test("half-close: the client's FIN reaches the server and the server's reply after it comes back", async () => {
    for (const target of [
      ['echo-a.app', '80'],
      ['echo-b.app', '80'],
    ]) {
      const result = await sandbox.client('app/client-a', ['halfclose', ...target]);
      assert.equal(result.remote, CAPTURED);
      assert.equal(result.body, 'hello before fin\nBYE-AFTER-FIN\n');
    }
  });

  test('64 MiB each way cross-node, checked by hash', async () => {
    const bytes = 64 * 1024 * 1024;
    const result = await sandbox.client('app/client-a', ['hash', 'echo-b.app', '80', String(bytes)], 300_000);
    assert.equal(result.remote, CAPTURED);
    assert.equal(result.receivedBytes, result.expectedBytes);
    assert.equal(result.match, true, 'echoed bytes differ from those sent');
  });

  test('200 concurrent connections through the agent', async () => {
    const result = await sandbox.client('app/client-a', ['concurrent', 'echo-b.app', '80', '200'], 120_000);
    assert.equal(result.failed, 0, JSON.stringify(result.errors));
    assert.equal(result.ok, 200);
    assert.deepEqual(result.remotes, [CAPTURED]);
  });

  test('SIGTERM drains: new connections refused at once, open ones finish, then the agent exits', async () => {
    const holder = sandbox.hold('app/client-a', 'echo-b.app', 80);
    const lines: Array<Record<string, unknown>> = [];
    holder.stdout.on('data', (d: Buffer) => {
      for (const l of d.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
    });
    await eventually(() => lines.some((l) => l.connected), 10_000, 'held connection');
    const agentPid = (await sandbox.status()).nodes.find((n) => n.name === 'node-a')!.agentPid!;
    const restartsBefore = await agentRestarts('node-a');
    process.kill(agentPid, 'SIGTERM');
    await eventually(() => sandbox.agentLog('node-a').includes('"msg":"draining"'), 5000, 'drain start');
    const refused = await sandbox.client('app/client-a', ['who', 'echo-b.app', '80']);
    assert.equal(refused.code, 'ECONNREFUSED', `new connection during drain: ${JSON.stringify(refused)}`);
    holder.stdin.write('still flowing\n');
    await eventually(() => lines.some((l) => l.echo === 'still flowing\n'), 5000, 'echo on the held connection');
    holder.stdin.write('END\n');
    await eventually(() => lines.some((l) => l.ended), 5000, 'held connection end');
    await eventually(
      () => {
        try {
          process.kill(agentPid, 0);
          return false;
        } catch {
          return true;
        }
      },
      10_000,
      'agent exit',
    );
    assert.match(sandbox.agentLog('node-a'), /"finished":true/);
    // The agent is its Pod's container: the kubelet starts it again, once, and it becomes ready (its pins re-adopted).
    await eventually(
      async () => {
        const node = (await sandbox.status()).nodes.find((n) => n.name === 'node-a');
        return node?.agentPid !== undefined && node.agentPid !== agentPid && node.ready;
      },
      30_000,
      'the agent started again by its kubelet, and ready',
    );
    assert.equal(await agentRestarts('node-a'), restartsBefore + 1, 'the agent Pod restarted its container once');
    const ready = await sandbox.kubectl(['-n', 'ferry-system', 'wait', '--for=condition=Ready', '--timeout=30s', 'pod/ferry-agent-node-a']);
    assert.equal(ready.code, 0, ready.stderr);
    const again = await sandbox.client('app/client-a', ['who', 'echo-b.app', '80']);
    assert.equal(again.remote, CAPTURED);
    assert.equal((again.server as { pod: string }).pod, 'server-b');
  });

  test('agent killed: connections refused (never unmeshed); restarted: served again', async () => {
    const kill = await ferry(['sandbox', 'agent', 'kill', 'node-a', '--prefix', PREFIX]);
    assert.equal(kill.code, 0, kill.stderr);
    // Gone, and kept gone by its kubelet (the Pod is marked stopped); its pinned programs stay attached.
    const down = (await sandbox.status()).nodes.find((n) => n.name === 'node-a')!;
    assert.equal(down.agentPid, undefined, 'no agent process on node-a');
    await assertCgroupPrograms(down.cgroup);
    const linksOn = await skLookupLinks();
    for (const pod of ['app-server-a', 'app-client-a']) assert.equal(linksOn(pod), 1, `sk_lookup links on ${pod} with the agent gone`);
    const outbound = await sandbox.client('app/client-a', ['who', 'echo-b.app', '80']);
    assert.equal(outbound.code, 'ECONNREFUSED', `outbound with the agent gone: ${JSON.stringify(outbound)}`);
    const inbound = await sandbox.client('plain/client-p', ['who', ip['server-a'], '7000']);
    assert.ok(
      inbound.code === 'ECONNREFUSED' || inbound.code === 'ECONNRESET',
      `inbound to an enrolled pod with its agent gone must be refused: ${JSON.stringify(inbound)}`,
    );
    const start = await ferry(['sandbox', 'agent', 'start', 'node-a', '--prefix', PREFIX]);
    assert.equal(start.code, 0, start.stderr);
    const again = await sandbox.client('app/client-a', ['who', 'echo-b.app', '80']);
    assert.equal(again.remote, CAPTURED);
    assert.equal((again.server as { pod: string }).pod, 'server-b');
    const inboundAgain = await sandbox.client('plain/client-p', ['who', ip['server-a'], '7000']);
    assert.equal((inboundAgain.server as { pod: string }).pod, 'server-a');
  });
});
