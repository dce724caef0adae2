// Tests for src/sandbox/plan.ts: the names and addresses (IPv4, and IPv6 in a dual-stack plan) of the fabric, the
// nodes and the pods the kubelet places (placePod), the pods' DNS files, the warnings of Services left without
// endpoints, and the manifests that cannot be laid out. Pure computation; nothing here touches the system.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { formatIpv6, ipv6ToBigInt } from '../../src/net';
import { parseManifests, type SandboxManifest, type SandboxPod } from '../../src/sandbox/manifest';
import {
  hostsFile,
  placePod,
  planPrometheus,
  planSandbox,
  podHostVethName,
  resolvConf,
  FABRIC_SUBNET6,
  INTERFACE_NAME_MAX,
  MAX_PODS_PER_NODE,
  MAX_NODES,
  POD_HOST_OFFSET,
  POD_CIDR6_PREFIX,
  PROMETHEUS_FABRIC_HOST,
  type SandboxPlan,
} from '../../src/sandbox/plan';
import { PlanError, SandboxArgumentError } from '../../src/sandbox/errors';

function repoRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'examples', 'demo.yaml')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
  }
  throw new Error(`no repository root above ${__dirname}`);
}
const DEMO = path.join(repoRoot(), 'examples', 'demo.yaml');
// Not the CLI's default "ferry", so that nothing computed here could name a user's sandbox.
const PREFIX = 'ftest';

function demoManifest(): SandboxManifest {
  return parseManifests([{ file: DEMO, text: fs.readFileSync(DEMO, 'utf8') }]);
}

function demoPlan(): SandboxPlan {
  return planSandbox(demoManifest(), { prefix: PREFIX });
}

function dualStackDemoPlan(): SandboxPlan {
  return planSandbox(demoManifest(), { prefix: PREFIX, dualStack: true });
}

/** Where the kubelet of `nodeName` puts pod `id` as the k-th pod it places (host number POD_HOST_OFFSET + k). */
function place(plan: SandboxPlan, id: string, nodeName: string, k: number) {
  const node = plan.nodes.find((n) => n.name === nodeName);
  assert.ok(node !== undefined, `no node ${nodeName}`);
  const [namespace = '', name = ''] = id.split('/');
  return placePod(plan.prefix, node, { namespace, name }, POD_HOST_OFFSET + k, plan.dualStack === true);
}

/** The demo's Services, with the VIPs the API server gives them. */
const DEMO_SERVICES = [
  { namespace: 'shop', name: 'web', vip: '10.96.0.10' },
  { namespace: 'shop', name: 'cart', vip: '10.96.0.11' },
];

/** A manifest built by hand, for inputs parseManifests would refuse or that are tedious in YAML. */
function manifestOf(parts: Partial<SandboxManifest>): SandboxManifest {
  return {
    nodes: [{ name: 'node-a' }, { name: 'node-b' }],
    namespaces: [],
    pods: [],
    services: [],
    authorizationPolicies: [],
    peerAuthentications: [],
    warnings: [],
    ...parts,
  };
}

function podOf(namespace: string, name: string, nodeName: string, extra: Partial<SandboxPod> = {}): SandboxPod {
  return {
    namespace,
    name,
    nodeName,
    serviceAccount: 'default',
    labels: {},
    annotations: {},
    meshEnabled: false,
    containers: [{ name: 'c', command: ['sleep', 'infinity'], args: [], env: {}, ports: [] }],
    excludeOutboundPorts: [],
    excludeOutboundCidrs: [],
    ...extra,
  };
}

function assertPlanError(fn: () => unknown, message: string | RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof PlanError, `expected PlanError, got ${String(error)}`);
    assert.equal(error.code, 'FERRY_ERR_SANDBOX_PLAN');
    if (typeof message === 'string') assert.equal(error.message, message);
    else assert.match(error.message, message);
    return true;
  });
}

describe('fabric and nodes', () => {
  test('the fabric namespace, bridge and subnet', () => {
    assert.deepEqual(demoPlan().fabric, { netns: 'ftest-fabric', bridge: 'br0', subnet: '10.250.0.0/24' });
    assert.equal(demoPlan().prefix, PREFIX);
  });

  test('node i: names, fabric link and address, pod range, cgroups, pin dir and routes to the others', () => {
    const plan = demoPlan();
    assert.deepEqual(plan.nodes, [
      {
        name: 'node-a',
        index: 0,
        netns: 'ftest-node-node-a',
        fabricVeth: 'fab-0',
        fabricPeer: 'eth0',
        fabricIp: '10.250.0.10',
        fabricAddress: '10.250.0.10/24',
        podCidr: '10.244.0.0/24',
        podGateway: '10.244.0.1',
        cgroup: 'ftest/node-node-a',
        agentCgroup: 'ftest/node-node-a/agent',
        bpfPinDir: '/sys/fs/bpf/ftest/node-node-a',
        routes: [{ destination: '10.244.1.0/24', via: '10.250.0.11' }],
      },
      {
        name: 'node-b',
        index: 1,
        netns: 'ftest-node-node-b',
        fabricVeth: 'fab-1',
        fabricPeer: 'eth0',
        fabricIp: '10.250.0.11',
        fabricAddress: '10.250.0.11/24',
        podCidr: '10.244.1.0/24',
        podGateway: '10.244.1.1',
        cgroup: 'ftest/node-node-b',
        agentCgroup: 'ftest/node-node-b/agent',
        bpfPinDir: '/sys/fs/bpf/ftest/node-node-b',
        routes: [{ destination: '10.244.0.0/24', via: '10.250.0.10' }],
      },
    ]);
  });

  test('three nodes route to both others, in node order', () => {
    const plan = planSandbox(manifestOf({ nodes: [{ name: 'x' }, { name: 'y' }, { name: 'z' }] }), { prefix: PREFIX });
    assert.deepEqual(plan.nodes[1]?.routes, [
      { destination: '10.244.0.0/24', via: '10.250.0.10' },
      { destination: '10.244.2.0/24', via: '10.250.0.12' },
    ]);
    assert.equal(plan.nodes[2]?.fabricVeth, 'fab-2');
  });
});

describe('pods', () => {
  test("host k of node i is 10.244.i.(10+k), the gateway .1, in the node's pod CIDR", () => {
    const plan = demoPlan();
    assert.deepEqual(
      [
        ['shop/web', 'node-a', 0],
        ['shop/cart', 'node-b', 0],
        ['shop/cart-2', 'node-a', 1],
        ['legacy/client', 'node-b', 239],
      ].map(([id, node, k]) => {
        const placed = place(plan, id as string, node as string, k as number);
        return [id, placed.nodeIndex, placed.ip, placed.gateway];
      }),
      [
        ['shop/web', 0, '10.244.0.10', '10.244.0.1'],
        ['shop/cart', 1, '10.244.1.10', '10.244.1.1'],
        ['shop/cart-2', 0, '10.244.0.11', '10.244.0.1'],
        ['legacy/client', 1, '10.244.1.249', '10.244.1.1'],
      ],
    );
    assert.equal(MAX_PODS_PER_NODE, 240);
    assert.equal(place(plan, 'shop/web', 'node-a', 0).ip6, undefined);
  });

  test('names: netns, veth ends, cgroup and DNS directory', () => {
    const web = place(demoPlan(), 'shop/web', 'node-a', 0);
    assert.equal(web.netns, 'ftest-pod-shop-web');
    assert.equal(web.podVeth, 'eth0');
    assert.match(web.hostVeth, /^v[0-9a-f]{8}$/);
    assert.equal(web.cgroup, 'ftest/node-node-a/pod-shop-web');
    assert.equal(web.dnsDir, '/etc/netns/ftest-pod-shop-web');
    const legacy = place(demoPlan(), 'legacy/client', 'node-b', 1);
    assert.equal(legacy.netns, 'ftest-pod-legacy-client');
    assert.equal(legacy.cgroup, 'ftest/node-node-b/pod-legacy-client');
  });

  test('the node-side veth name is "v" and 8 hex digits of sha256("NS/POD"), within IFNAMSIZ', () => {
    // sha256("shop/web") = 97375646…, computed independently with `printf shop/web | sha256sum`.
    assert.equal(podHostVethName('shop', 'web'), 'v97375646');
    assert.equal(place(demoPlan(), 'shop/web', 'node-a', 0).hostVeth, 'v97375646');
    // Same pod name in two namespaces: different interfaces.
    assert.notEqual(podHostVethName('shop', 'client'), podHostVethName('legacy', 'client'));
    assert.ok(podHostVethName('x'.repeat(63), 'y'.repeat(63)).length <= INTERFACE_NAME_MAX);
  });
});

describe('DNS files', () => {
  test('hosts: localhost, the pod itself, and every Service, with bare names only in the own namespace', () => {
    assert.equal(
      hostsFile({ namespace: 'shop', name: 'client', ip: '10.244.0.12' }, DEMO_SERVICES),
      [
        '127.0.0.1 localhost',
        '::1 localhost',
        '10.244.0.12 client',
        '10.96.0.10 web.shop.svc.cluster.local web.shop web',
        '10.96.0.11 cart.shop.svc.cluster.local cart.shop cart',
        '',
      ].join('\n'),
    );
    assert.equal(
      hostsFile({ namespace: 'legacy', name: 'client', ip: '10.244.1.11' }, DEMO_SERVICES),
      [
        '127.0.0.1 localhost',
        '::1 localhost',
        '10.244.1.11 client',
        '10.96.0.10 web.shop.svc.cluster.local web.shop',
        '10.96.0.11 cart.shop.svc.cluster.local cart.shop',
        '',
      ].join('\n'),
    );
  });

  test('resolv.conf: the Kubernetes search path and ndots, and no nameserver', () => {
    assert.equal(resolvConf('shop'), 'search shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n');
    assert.equal(resolvConf('legacy'), 'search legacy.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n');
    assert.doesNotMatch(resolvConf('shop'), /nameserver/);
  });
});

describe('services', () => {
  test('the demo: every Service selects pods with its target ports, so no warning', () => {
    assert.deepEqual(demoPlan().warnings, []);
  });

  test('selection: same namespace only, every selector pair must match', () => {
    const services = [{ namespace: 'default', name: 's', selector: { app: 'x', tier: 'db' }, ports: [{ port: 80, targetPort: 9000 }] }];
    const namespaces = [{ name: 'other', labels: {}, annotations: {}, meshEnabled: false }];
    const elsewhere = podOf('other', 'elsewhere', 'node-b', { labels: { app: 'x', tier: 'db' } });
    const one = podOf('default', 'one', 'node-a', { labels: { app: 'x' } });
    assert.deepEqual(planSandbox(manifestOf({ namespaces, services, pods: [elsewhere, one] }), { prefix: PREFIX }).warnings, [
      'Service default/s: selector app=x,tier=db matches no pod in namespace default, so it has no endpoints',
    ]);
    // A numeric targetPort is used as given, declared by the pod or not (as in Kubernetes).
    const both = podOf('default', 'both', 'node-a', { labels: { app: 'x', tier: 'db' } });
    assert.deepEqual(planSandbox(manifestOf({ namespaces, services, pods: [both, one, elsewhere] }), { prefix: PREFIX }).warnings, []);
  });

  test('a selected pod without the named target port is left out, with a warning', () => {
    const manifest = manifestOf({
      pods: [
        podOf('default', 'named', 'node-a', {
          labels: { app: 'x' },
          containers: [{ name: 'c', command: ['x'], args: [], env: {}, ports: [{ name: 'web', containerPort: 8081 }] }],
        }),
        podOf('default', 'unnamed', 'node-b', { labels: { app: 'x' } }),
      ],
      services: [{ namespace: 'default', name: 's', selector: { app: 'x' }, ports: [{ name: 'http', port: 80, targetPort: 'web' }] }],
      warnings: ['from the manifest'],
    });
    const plan = planSandbox(manifest, { prefix: PREFIX });
    assert.deepEqual(plan.warnings, [
      'from the manifest',
      'Service default/s port http: pod default/unnamed has no container port named "web", so it is not an endpoint of this port',
    ]);
  });

  test('a Service that selects nothing, or has no selector, gets a warning', () => {
    const manifest = manifestOf({
      services: [
        { namespace: 'default', name: 'lonely', selector: { app: 'nobody' }, ports: [{ port: 80, targetPort: 80 }] },
        { namespace: 'default', name: 'external', selector: {}, ports: [{ port: 80, targetPort: 80 }] },
      ],
    });
    const plan = planSandbox(manifest, { prefix: PREFIX });
    assert.deepEqual(plan.warnings, [
      'Service default/lonely: selector app=nobody matches no pod in namespace default, so it has no endpoints',
      'Service default/external has no selector, so it has no endpoints',
    ]);
  });
});

describe('determinism and serialisation', () => {
  test('the same input gives the same plan', () => {
    assert.deepEqual(demoPlan(), demoPlan());
  });

  test('the plan survives a JSON round trip unchanged (plain data only)', () => {
    const plan = demoPlan();
    assert.deepEqual(JSON.parse(JSON.stringify(plan)), plan);
  });

  test('the prefix changes names but no address', () => {
    const a = planSandbox(demoManifest(), { prefix: 'fa' });
    const b = planSandbox(demoManifest(), { prefix: 'fb' });
    assert.deepEqual(
      a.nodes.map((n) => [n.fabricIp, n.podCidr]),
      b.nodes.map((n) => [n.fabricIp, n.podCidr]),
    );
    assert.equal(place(a, 'shop/web', 'node-a', 0).ip, place(b, 'shop/web', 'node-a', 0).ip);
    assert.equal(place(a, 'shop/web', 'node-a', 0).netns, 'fa-pod-shop-web');
    assert.equal(place(b, 'shop/web', 'node-a', 0).netns, 'fb-pod-shop-web');
    assert.deepEqual([a.nodes[0]?.netns, b.nodes[0]?.netns], ['fa-node-node-a', 'fb-node-node-a']);
  });
});

describe('impossible plans', () => {
  test('an invalid prefix is an argument error', () => {
    for (const prefix of ['', 'Ferry', 'ferry/x', '-x', 'x-', 'a'.repeat(17)]) {
      assert.throws(
        () => planSandbox(demoManifest(), { prefix }),
        (error: unknown) => {
          assert.ok(error instanceof SandboxArgumentError, `prefix ${JSON.stringify(prefix)}`);
          assert.equal(error.code, 'FERRY_ERR_SANDBOX_ARGUMENT');
          return true;
        },
      );
    }
    assert.equal(planSandbox(demoManifest(), { prefix: 'a'.repeat(16) }).prefix, 'a'.repeat(16));
  });

  test('with the longest prefix, the longest names parseManifests accepts fit exactly 64 characters', () => {
    const prefix = 'p'.repeat(16);
    const manifest = manifestOf({ pods: [podOf('n'.repeat(21), 'm'.repeat(21), 'node-a')] });
    const plan = planSandbox(manifest, { prefix });
    assert.equal(place(plan, `${'n'.repeat(21)}/${'m'.repeat(21)}`, 'node-a', 0).netns.length, 64);
  });

  test('a netns name over 64 characters names the pod', () => {
    const name = 'm'.repeat(40);
    const manifest = manifestOf({ pods: [podOf('shop', name, 'node-a')] });
    assertPlanError(
      () => planSandbox(manifest, { prefix: 'ferry-long-test' }),
      `pod shop/${name}: network namespace name ferry-long-test-pod-shop-${name} is 65 characters; at most 64 are allowed`,
    );
  });

  test('a netns name over 64 characters for a node names the node', () => {
    const name = 'n'.repeat(43);
    assertPlanError(
      () => planSandbox(manifestOf({ nodes: [{ name }] }), { prefix: 'p'.repeat(16) }),
      `node ${name}: network namespace name ${'p'.repeat(16)}-node-${name} is 65 characters; at most 64 are allowed`,
    );
  });

  test('two pods whose generated names collide', () => {
    // '-' is legal in both names, so a-b/c and a/b-c would both be P-pod-a-b-c.
    const manifest = manifestOf({ pods: [podOf('a-b', 'c', 'node-a'), podOf('a', 'b-c', 'node-b')] });
    assertPlanError(
      () => planSandbox(manifest, { prefix: PREFIX }),
      'pod a/b-c: network namespace name ftest-pod-a-b-c is also the name for pod a-b/c; rename one of them',
    );
  });

  test('240 pods fit on one node, the 241st does not', () => {
    const pods = Array.from({ length: MAX_PODS_PER_NODE }, (_, k) => podOf('default', `p${k}`, 'node-a'));
    assert.equal(planSandbox(manifestOf({ pods }), { prefix: PREFIX }).nodes.length, 2);
    pods.push(podOf('default', 'one-more', 'node-a'));
    assertPlanError(
      () => planSandbox(manifestOf({ pods }), { prefix: PREFIX }),
      "pod default/one-more: node node-a already has 240 pods, the most one node's /24 pod range holds here",
    );
    // The same pod on the other node is fine.
    pods[pods.length - 1] = podOf('default', 'one-more', 'node-b');
    assert.equal(planSandbox(manifestOf({ pods }), { prefix: PREFIX }).warnings.length, 0);
  });

  test('more nodes than fabric addresses', () => {
    const nodes = Array.from({ length: MAX_NODES + 1 }, (_, i) => ({ name: `n${i}` }));
    assertPlanError(
      () => planSandbox(manifestOf({ nodes }), { prefix: PREFIX }),
      `${MAX_NODES + 1} nodes do not fit the fabric subnet 10.250.0.0/24; at most ${MAX_NODES} are supported`,
    );
    const plan = planSandbox(manifestOf({ nodes: nodes.slice(0, MAX_NODES) }), { prefix: PREFIX });
    // The last node stops just below the address kept for the sandbox's Prometheus.
    assert.equal(plan.nodes.at(-1)?.fabricIp, '10.250.0.249');
    assert.equal(planPrometheus(plan).fabricIp, '10.250.0.250');
    assert.ok(plan.nodes.every((n) => n.fabricIp !== planPrometheus(plan).fabricIp));
  });

  test('the Prometheus namespace is on the fabric at .250 with its own names', () => {
    const plan = demoPlan();
    assert.deepEqual(planPrometheus(plan), {
      netns: `${PREFIX}-prom`,
      fabricVeth: 'fab-prom',
      fabricPeer: 'eth0',
      fabricIp: `10.250.0.${PROMETHEUS_FABRIC_HOST}`,
      fabricAddress: `10.250.0.${PROMETHEUS_FABRIC_HOST}/24`,
      cgroup: `${PREFIX}/prometheus`,
      port: 9090,
    });
    const names = [plan.fabric.netns, ...plan.nodes.map((n) => n.netns), place(plan, 'shop/web', 'node-a', 0).netns];
    assert.ok(!names.includes(planPrometheus(plan).netns));
    assert.ok(!plan.nodes.some((n) => n.fabricVeth === planPrometheus(plan).fabricVeth));
  });

  test('a pod on a node that does not exist', () => {
    assertPlanError(
      () => planSandbox(manifestOf({ pods: [podOf('default', 'p', 'node-q')] }), { prefix: PREFIX }),
      'pod default/p: node "node-q" is not a node of this sandbox',
    );
  });
});

describe('dual-stack', () => {
  /** The plan without its IPv6 fields: what remains must be the IPv4-only plan. */
  function withoutIpv6(plan: SandboxPlan): SandboxPlan {
    const copy = structuredClone(plan);
    delete copy.dualStack;
    delete copy.fabric.subnet6;
    for (const node of copy.nodes) {
      delete node.fabricIp6;
      delete node.fabricAddress6;
      delete node.podCidr6;
      delete node.podGateway6;
      delete node.routes6;
    }
    return copy;
  }

  /** Whether an IPv6 address lies inside an IPv6 CIDR. */
  function inside(address: string, cidr: string): boolean {
    const [base = '', length = ''] = cidr.split('/');
    const host = 128n - BigInt(length);
    return ipv6ToBigInt(address) >> host === ipv6ToBigInt(base) >> host;
  }

  test('off, the plan has no IPv6 field and is byte for byte the plan without the option', () => {
    const plan = demoPlan();
    const text = JSON.stringify(plan, null, 2);
    assert.equal(JSON.stringify(planSandbox(demoManifest(), { prefix: PREFIX, dualStack: false }), null, 2), text);
    assert.doesNotMatch(text, /fd10:|"dualStack"|"subnet6"|"ip6"|"gateway6"|"routes6"|"podCidr6"|"fabricIp6"/);
    assert.deepEqual(Object.keys(plan), ['prefix', 'fabric', 'nodes', 'warnings']);
    assert.equal(planPrometheus(plan).fabricIp6, undefined);
    assert.deepEqual(Object.keys(place(plan, 'shop/web', 'node-a', 0)), [
      'nodeIndex',
      'netns',
      'hostVeth',
      'podVeth',
      'ip',
      'gateway',
      'cgroup',
      'dnsDir',
    ]);
  });

  test('on, it only adds IPv6: every IPv4 address and name stays as it was', () => {
    const plan = dualStackDemoPlan();
    assert.equal(plan.dualStack, true);
    assert.deepEqual(withoutIpv6(plan), demoPlan());
    const { ip6, gateway6, ...ipv4 } = place(plan, 'shop/web', 'node-a', 0);
    assert.deepEqual([ip6, gateway6], ['fd10:244::10', 'fd10:244::1']);
    assert.deepEqual(ipv4, place(demoPlan(), 'shop/web', 'node-a', 0));
  });

  test('the fabric and nodes: fd10:250::/64 with node i at ::(10+i), pod CIDRs fd10:244:i::/64, routes to the others', () => {
    const plan = dualStackDemoPlan();
    assert.equal(plan.fabric.subnet6, FABRIC_SUBNET6);
    assert.equal(FABRIC_SUBNET6, 'fd10:250::/64');
    assert.equal(POD_CIDR6_PREFIX, 'fd10:244::/32');
    assert.deepEqual(
      plan.nodes.map((n) => [n.name, n.fabricIp6, n.fabricAddress6, n.podCidr6, n.podGateway6, n.routes6]),
      [
        [
          'node-a',
          'fd10:250::10',
          'fd10:250::10/64',
          'fd10:244::/64',
          'fd10:244::1',
          [{ destination: 'fd10:244:1::/64', via: 'fd10:250::11' }],
        ],
        [
          'node-b',
          'fd10:250::11',
          'fd10:250::11/64',
          'fd10:244:1::/64',
          'fd10:244:1::1',
          [{ destination: 'fd10:244::/64', via: 'fd10:250::10' }],
        ],
      ],
    );
    // The IPv6 fields sit next to their IPv4 twins in the saved JSON.
    assert.deepEqual(Object.keys(plan.nodes[0] ?? {}), [
      'name',
      'index',
      'netns',
      'fabricVeth',
      'fabricPeer',
      'fabricIp',
      'fabricAddress',
      'podCidr',
      'podGateway',
      'fabricIp6',
      'fabricAddress6',
      'podCidr6',
      'podGateway6',
      'cgroup',
      'agentCgroup',
      'bpfPinDir',
      'routes',
      'routes6',
    ]);
  });

  test("the IPv6 groups repeat the IPv4 octets' decimal digits, also past node 9", () => {
    const nodes = Array.from({ length: 13 }, (_, i) => ({ name: `n${i}` }));
    const plan = planSandbox(manifestOf({ nodes, pods: [podOf('default', 'p', 'n12')] }), { prefix: PREFIX, dualStack: true });
    const p = place(plan, 'default/p', 'n12', 0);
    const last = plan.nodes[12];
    assert.deepEqual(
      [last?.podCidr, last?.podCidr6, last?.fabricIp, last?.fabricIp6],
      ['10.244.12.0/24', 'fd10:244:12::/64', '10.250.0.22', 'fd10:250::22'],
    );
    assert.deepEqual([p.ip, p.ip6, p.gateway6], ['10.244.12.10', 'fd10:244:12::10', 'fd10:244:12::1']);
    // Three or more nodes: a route to every other node's IPv6 pod CIDR, in node order, as for IPv4.
    assert.deepEqual(plan.nodes[1]?.routes6?.map((r) => `${r.destination} via ${r.via}`).slice(0, 3), [
      'fd10:244::/64 via fd10:250::10',
      'fd10:244:2::/64 via fd10:250::12',
      'fd10:244:3::/64 via fd10:250::13',
    ]);
    assert.equal(plan.nodes[1]?.routes6?.length, 12);
    assert.ok(plan.nodes.every((n) => n.routes6?.every((r) => r.destination !== n.podCidr6)));
  });

  test("pods: fd10:244:i::(10+k) with gateway ::1, in the node's CIDR, IPv4 first", () => {
    const plan = dualStackDemoPlan();
    const placed = [
      ['shop/web', 'node-a', 0],
      ['shop/cart', 'node-b', 0],
      ['shop/cart-2', 'node-a', 1],
      ['legacy/client', 'node-b', 1],
    ].map(([id, node, k]) => [id, place(plan, id as string, node as string, k as number)] as const);
    assert.deepEqual(
      placed.map(([id, p]) => [id, p.ip, p.ip6, p.gateway6]),
      [
        ['shop/web', '10.244.0.10', 'fd10:244::10', 'fd10:244::1'],
        ['shop/cart', '10.244.1.10', 'fd10:244:1::10', 'fd10:244:1::1'],
        ['shop/cart-2', '10.244.0.11', 'fd10:244::11', 'fd10:244::1'],
        ['legacy/client', '10.244.1.11', 'fd10:244:1::11', 'fd10:244:1::1'],
      ],
    );
    for (const [id, p] of placed) {
      const node = plan.nodes[p.nodeIndex];
      assert.ok(node?.podCidr6 !== undefined && inside(p.ip6 ?? '', node.podCidr6), `${id} ${p.ip6} outside ${node?.podCidr6}`);
      assert.ok(inside(p.ip6 ?? '', POD_CIDR6_PREFIX));
    }
    assert.deepEqual(Object.keys(placed[0]?.[1] ?? {}).slice(4, 8), ['ip', 'gateway', 'ip6', 'gateway6']);
  });

  test('the 240th pod of a node, the last node and Prometheus keep the mirror and never collide', () => {
    assert.equal(place(dualStackDemoPlan(), 'default/p', 'node-a', MAX_PODS_PER_NODE - 1).ip6, 'fd10:244::249');
    const nodes = Array.from({ length: MAX_NODES }, (_, i) => ({ name: `n${i}` }));
    const plan = planSandbox(manifestOf({ nodes, pods: [podOf('default', 'p', `n${MAX_NODES - 1}`)] }), {
      prefix: PREFIX,
      dualStack: true,
    });
    assert.equal(plan.nodes.at(-1)?.fabricIp6, 'fd10:250::249');
    assert.equal(plan.nodes.at(-1)?.podCidr6, 'fd10:244:239::/64');
    const last = place(plan, 'default/p', `n${MAX_NODES - 1}`, 0);
    assert.equal(last.ip6, 'fd10:244:239::10');
    assert.equal(planPrometheus(plan).fabricIp6, 'fd10:250::250');
    const all = [...plan.nodes.flatMap((n) => [n.fabricIp6, n.podGateway6]), last.ip6, planPrometheus(plan).fabricIp6];
    assert.equal(new Set(all).size, all.length, 'every IPv6 address is unique');
    for (const address of all) {
      assert.ok(address !== undefined && net.isIPv6(address), String(address));
      // Written as the kernel and Node print it, so the agents' string lookups find it.
      assert.equal(formatIpv6(ipv6ToBigInt(address)), address);
    }
    assert.ok(plan.nodes.every((n) => inside(n.fabricIp6 ?? '', FABRIC_SUBNET6)));
  });

  test("hosts: the pod's name resolves to both of its addresses; Services to their IPv4 VIP only", () => {
    assert.equal(
      hostsFile({ namespace: 'shop', name: 'client', ip: '10.244.0.12', ip6: 'fd10:244::12' }, DEMO_SERVICES),
      [
        '127.0.0.1 localhost',
        '::1 localhost',
        '10.244.0.12 client',
        'fd10:244::12 client',
        '10.96.0.10 web.shop.svc.cluster.local web.shop web',
        '10.96.0.11 cart.shop.svc.cluster.local cart.shop cart',
        '',
      ].join('\n'),
    );
  });

  test('Prometheus gets fd10:250::250 beside 10.250.0.250', () => {
    const plan = dualStackDemoPlan();
    assert.deepEqual(planPrometheus(plan), {
      netns: `${PREFIX}-prom`,
      fabricVeth: 'fab-prom',
      fabricPeer: 'eth0',
      fabricIp: '10.250.0.250',
      fabricAddress: '10.250.0.250/24',
      fabricIp6: 'fd10:250::250',
      fabricAddress6: 'fd10:250::250/64',
      cgroup: `${PREFIX}/prometheus`,
      port: 9090,
    });
  });

  test('deterministic, and unchanged by a JSON round trip', () => {
    assert.deepEqual(dualStackDemoPlan(), dualStackDemoPlan());
    assert.deepEqual(JSON.parse(JSON.stringify(dualStackDemoPlan())), dualStackDemoPlan());
  });
});
