// Root integration: a dual-stack sandbox (`up --dual-stack`). Every pod has an IPv4 and an IPv6 address, the agents
// enrol both, and IPv6 works between pods on one node and across nodes — over HBONE between enrolled pods, the short
// path on one node, plaintext inbound from pods that are not enrolled — while Services stay IPv4.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { TestSandbox, echoCommand, eventually, ferry, sh, withSandbox } from './harness';

const PREFIX = 'ferryt-dual';
// The servers listen on `::`, so one socket takes both families.
const MANIFEST = `
apiVersion: v1
kind: Namespace
metadata: { name: mesh, annotations: { ferry.dev/mesh: enabled } }
---
apiVersion: v1
kind: Namespace
metadata: { name: plain }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: mesh }
spec: { nodeName: node-a, serviceAccountName: client, containers: [{ name: c, command: ["sleep", "infinity"] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server-a, namespace: mesh, labels: { app: echo } }
spec:
  nodeName: node-a
  serviceAccountName: server
  containers: [{ name: echo, command: ${echoCommand(7000, '::')}, env: [{ name: POD_NAME, value: server-a }], ports: [{ containerPort: 7000 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: server-b, namespace: mesh, labels: { app: echo } }
spec:
  nodeName: node-b
  serviceAccountName: server
  containers: [{ name: echo, command: ${echoCommand(7000, '::')}, env: [{ name: POD_NAME, value: server-b }], ports: [{ containerPort: 7000 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: plain-b, namespace: plain }
spec:
  nodeName: node-b
  containers: [{ name: echo, command: ${echoCommand(7000, '::')}, env: [{ name: POD_NAME, value: plain-b }], ports: [{ containerPort: 7000 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: outsider, namespace: plain }
spec: { nodeName: node-b, containers: [{ name: c, command: ["sleep", "infinity"] }] }
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: mesh }
spec: { selector: { app: echo }, ports: [{ port: 80, targetPort: 7000 }] }
`;

/** The nodes of plan.json (the fabric's shape); pods and Services come from the API server via `status`. */
interface PlanFile {
  nodes: Array<{ name: string; netns: string; fabricIp6: string; podCidr: string; podCidr6: string; podGateway6: string }>;
}

interface Status {
  dualStack: boolean;
  pods: Array<{ namespace: string; name: string; netns: string; ip: string; ips: string[] }>;
  services: Array<{ namespace: string; name: string; vip: string; endpoints: string[] }>;
}

interface Who {
  remote?: string;
  error?: string;
  server?: { pod: string; peer: string; local: string };
}

describe('a dual-stack sandbox', { timeout: 600_000 }, () => {
  const sandbox = new TestSandbox(PREFIX, MANIFEST, ['--dual-stack']);
  withSandbox(sandbox);
  const plan = (): PlanFile => JSON.parse(fs.readFileSync(`/run/ferry/${PREFIX}/plan.json`, 'utf8')) as PlanFile;
  let status: Status | undefined;
  /** The sandbox's pods and Services as the API server has them (the pods do not move, so read once). */
  const sandboxStatus = async (): Promise<Status> => {
    status ??= (await sandbox.status()) as unknown as Status;
    return status;
  };
  const podOf = async (id: string): Promise<{ netns: string; ip: string; ip6: string }> => {
    const found = (await sandboxStatus()).pods.find((p) => `${p.namespace}/${p.name}` === id);
    assert.ok(found, `pod ${id} in the sandbox`);
    const ip6 = found.ips.find((ip) => ip.includes(':'));
    assert.ok(ip6, `pod ${id} has an IPv6 address: ${found.ips.join(', ')}`);
    return { netns: found.netns, ip: found.ip, ip6 };
  };
  const nodeOf = (name: string): PlanFile['nodes'][number] => {
    const found = plan().nodes.find((n) => n.name === name);
    assert.ok(found, `node ${name} in the plan`);
    return found;
  };
  const who = async (from: string, host: string, port = 7000): Promise<Who> =>
    (await sandbox.client(from, ['who', host, String(port)])) as Who;
  /** The one access record of `node` for a connection to `destination` in `direction`, once it is written. */
  const accessRecord = async (node: string, direction: string, destination: string): Promise<Record<string, unknown>> => {
    const find = (): Record<string, unknown> | undefined =>
      sandbox
        .accessRecords(node)
        .filter((r) => r.direction === direction && r.destination === destination)
        .at(-1);
    await eventually(() => find() !== undefined, 5000, `${direction} access record for ${destination} on ${node}`);
    return find() ?? {};
  };

  test('every pod has both addresses, IPv4 first, and each agent enrols both', async () => {
    const { dualStack, pods } = await sandboxStatus();
    assert.equal(dualStack, true);
    const nodeOfPod: Record<string, string> = {
      client: 'node-a',
      'server-a': 'node-a',
      'server-b': 'node-b',
      'plain-b': 'node-b',
      outsider: 'node-b',
    };
    for (const p of pods) {
      const node = plan().nodes.find((n) => n.name === nodeOfPod[p.name]);
      assert.ok(node, `${p.namespace}/${p.name} is a pod of the manifest`);
      // IPv4 first, from the node's pod CIDR, then its IPv6 twin in the node's IPv6 pod CIDR.
      const host = p.ip.split('.')[3];
      assert.equal(p.ips.length, 2, `${p.name}: ${p.ips.join(', ')}`);
      assert.equal(p.ips[0], p.ip);
      assert.equal(`${p.ip.split('.').slice(0, 3).join('.')}.0/24`, node.podCidr, `${p.name}: ${p.ip}`);
      assert.equal(p.ips[1], `${node.podCidr6.replace(/\/64$/, '')}${host}`, `${p.name}: ${p.ips.join(', ')}`);
    }
    for (const node of ['node-a', 'node-b']) {
      const result = await ferry(['sandbox', 'inspect', '--prefix', PREFIX, node, 'workloads', '-o', 'json']);
      assert.equal(result.code, 0, result.stderr);
      const workloads = JSON.parse(result.stdout) as Array<{
        namespace: string;
        name: string;
        node: string;
        ips: string[];
        enrolled: boolean;
      }>;
      const enrolled = workloads.filter((w) => w.enrolled);
      assert.deepEqual(enrolled.map((w) => w.name).sort(), node === 'node-a' ? ['client', 'server-a'] : ['server-b']);
      for (const w of enrolled) {
        const pod = await podOf(`${w.namespace}/${w.name}`);
        assert.deepEqual(w.ips, [pod.ip, pod.ip6]);
      }
    }
    // Services keep their IPv4 ClusterIP and IPv4 endpoints.
    const echo = (await sandboxStatus()).services.find((s) => s.name === 'echo');
    assert.match(echo?.vip ?? '', /^10\.96\./);
    assert.equal(echo?.endpoints.length, 2, JSON.stringify(echo));
    assert.ok(
      echo?.endpoints.every((e) => /^10\.244\./.test(e)),
      JSON.stringify(echo),
    );
  });

  test("IPv6 is configured inside the sandbox's namespaces only: usable addresses, mirrored routes, forwarding", async () => {
    const client = await podOf('mesh/client');
    const a = nodeOf('node-a');
    const b = nodeOf('node-b');
    const addresses = JSON.parse(await sh('ip', ['-j', '-n', client.netns, '-6', 'addr', 'show', 'dev', 'eth0'])) as Array<{
      addr_info: Array<{ local: string; prefixlen: number; scope: string; tentative?: boolean; dadfailed?: boolean }>;
    }>;
    const global = addresses[0]?.addr_info.filter((i) => i.scope === 'global') ?? [];
    assert.deepEqual(
      global.map((i) => [i.local, i.prefixlen, i.tentative === true, i.dadfailed === true]),
      [[client.ip6, 128, false, false]],
    );
    const podRoutes = (await sh('ip', ['-n', client.netns, '-6', 'route', 'show'])).split('\n');
    assert.ok(
      podRoutes.some((r) => r.startsWith(`default via ${a.podGateway6} dev eth0`)),
      podRoutes.join('\n'),
    );
    assert.ok(
      podRoutes.some((r) => r.startsWith(`${a.podGateway6} dev eth0`)),
      podRoutes.join('\n'),
    );
    const nodeRoutes = (await sh('ip', ['-n', a.netns, '-6', 'route', 'show'])).split('\n');
    assert.ok(
      nodeRoutes.some((r) => r.startsWith(`${b.podCidr6} via ${b.fabricIp6} dev eth0`)),
      nodeRoutes.join('\n'),
    );
    assert.ok(
      nodeRoutes.some((r) => r.startsWith(`${client.ip6} dev v`)),
      nodeRoutes.join('\n'),
    );
    assert.equal((await sh('ip', ['netns', 'exec', a.netns, 'sysctl', '-n', 'net.ipv6.conf.all.forwarding'])).trim(), '1');
    assert.doesNotMatch(await sh('ip', ['-6', 'route', 'show']), /fd10:/);
    assert.doesNotMatch(await sh('ip', ['-6', 'addr', 'show']), /fd10:/);
  });

  test('enrolled pods on two nodes talk IPv6 through HBONE with mutual TLS, bytes intact', async () => {
    const server = await podOf('mesh/server-b');
    const answer = await who('mesh/client', server.ip6);
    assert.equal(answer.server?.pod, 'server-b', JSON.stringify(answer));
    assert.equal(answer.server?.local, `${server.ip6}:7000`);
    const inbound = await accessRecord('node-b', 'inbound', `[${server.ip6}]:7000`);
    assert.deepEqual([inbound.path, inbound.security], ['hbone', 'mutual_tls']);
    assert.match(String(inbound.source), new RegExp(`^\\[${(await podOf('mesh/client')).ip6}\\]:\\d+$`));
    const outbound = await accessRecord('node-a', 'outbound', `[${server.ip6}]:7000`);
    assert.deepEqual([outbound.path, outbound.responseFlags], ['hbone', '-']);
    const hash = await sandbox.client('mesh/client', ['hash', server.ip6, '7000', String(1 << 20)]);
    assert.equal(hash.match, true, JSON.stringify(hash));
  });

  test('enrolled pods on one node talk IPv6 over the short path', async () => {
    const server = await podOf('mesh/server-a');
    const answer = await who('mesh/client', server.ip6);
    assert.equal(answer.server?.pod, 'server-a', JSON.stringify(answer));
    const record = await accessRecord('node-a', 'outbound', `[${server.ip6}]:7000`);
    assert.deepEqual([record.path, record.security], ['short', 'mutual_tls']);
  });

  test('a pod that is not enrolled reaches an enrolled pod (plaintext inbound) and another plain pod over IPv6', async () => {
    const outsider = await podOf('plain/outsider');
    const server = await podOf('mesh/server-a');
    const answer = await who('plain/outsider', server.ip6);
    assert.equal(answer.server?.pod, 'server-a', JSON.stringify(answer));
    const record = await accessRecord('node-a', 'inbound', `[${server.ip6}]:7000`);
    assert.equal(record.path, 'plaintext');
    assert.match(String(record.source), new RegExp(`^\\[${outsider.ip6}\\]:\\d+$`));
    // Neither end enrolled: nothing captures it, and the server sees the client's own IPv6 address.
    const plain = await who('plain/outsider', (await podOf('plain/plain-b')).ip6);
    assert.deepEqual([plain.server?.pod, plain.server?.peer], ['plain-b', outsider.ip6]);
  });

  test('IPv4 and the Service VIP work as in a single-stack sandbox', async () => {
    const server = await podOf('mesh/server-b');
    const direct = await who('mesh/client', server.ip);
    assert.equal(direct.server?.pod, 'server-b', JSON.stringify(direct));
    assert.equal(direct.server?.local, `::ffff:${server.ip}:7000`);
    const vip = (await sandboxStatus()).services.find((s) => s.name === 'echo')?.vip ?? '';
    const viaService = await who('mesh/client', vip, 80);
    assert.ok(['server-a', 'server-b'].includes(viaService.server?.pod ?? ''), JSON.stringify(viaService));
  });
});
