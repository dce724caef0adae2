// Lays a validated SandboxManifest's nodes out as a concrete topology: the fabric and every node's network
// namespace, interfaces, addresses, pod ranges, routes, cgroups and BPF pins; checks up front that every pod fits
// its node (the kubelet places pods, with placePod, once the API server has them) and warns of Services left
// without endpoints. Pure and deterministic (same manifest and options → same plan), and plain data, saved as JSON.
import { createHash } from 'node:crypto';
import { formatIpv4, formatIpv6, ipv6ToBigInt } from '../net';
import { PlanError, SandboxArgumentError } from './errors';
import { NETNS_NAME_MAX, SANDBOX_PREFIX_MAX, parseIpv4Cidr, type SandboxManifest, type SandboxPod } from './manifest';

/** The prefix `ferry sandbox up` uses; tests pass their own so they never touch a user's sandbox. */
export const DEFAULT_SANDBOX_PREFIX = 'ferry';
/** Nodes meet on this subnet, on a bridge inside the fabric namespace; the bridge itself has no address. */
export const FABRIC_SUBNET = '10.250.0.0/24';
export const FABRIC_BRIDGE = 'br0';
/** Node i gets fabric address .(10+i), below the addresses the sandbox keeps for itself. */
export const FABRIC_HOST_OFFSET = 10;
/** The sandbox's Prometheus (`ferry sandbox up --prometheus`) is .250 on the fabric: nodes stop at .249. */
export const PROMETHEUS_FABRIC_HOST = 250;
export const MAX_NODES = PROMETHEUS_FABRIC_HOST - FABRIC_HOST_OFFSET;
/** Where the sandbox's Prometheus listens, inside its own namespace. */
export const PROMETHEUS_PORT = 9090;
/** Pod k on a node gets .(10+k) in the node's /24, and .1 is the gateway. */
export const POD_HOST_OFFSET = 10;
export const MAX_PODS_PER_NODE = 240;
export const CLUSTER_DOMAIN = 'cluster.local';
/**
 * With `dualStack`, every address above gets an IPv6 twin in ULA space (fd00::/8, RFC 4193; the Global ID is fixed
 * rather than random so the addresses stay readable, and nothing routes them off this machine). The scheme mirrors
 * the IPv4 one digit for digit: each IPv4 octet's decimal digits become an IPv6 group, so pod 10.244.1.12 is
 * fd10:244:1::12, its gateway 10.244.1.1 is fd10:244:1::1, node 10.250.0.11 is fd10:250::11 and Prometheus is
 * fd10:250::250. Node i's pod CIDR is fd10:244:i::/64 (64 bits of interface ID, as RFC 4291 §2.5.1 requires),
 * inside this prefix as every IPv4 one is inside 10.244.0.0/16. Addresses are written in RFC 5952's canonical form,
 * as the kernel and Node print them (node 0's CIDR is fd10:244::/64), so the agents' lookups by text find them.
 */
export const POD_CIDR6_PREFIX = 'fd10:244::/32';
/** The fabric's IPv6 subnet, beside FABRIC_SUBNET on the same bridge. */
export const FABRIC_SUBNET6 = 'fd10:250::/64';
/** Interface name inside the pod and on the node's end of its fabric link. */
export const INNER_INTERFACE = 'eth0';
/** Linux interface names hold at most IFNAMSIZ - 1 = 15 characters (include/uapi/linux/if.h). */
export const INTERFACE_NAME_MAX = 15;

const PREFIX_PATTERN = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

const POD_BASE6 = ipv6ToBigInt(POD_CIDR6_PREFIX.split('/')[0] ?? '');
const FABRIC_BASE6 = ipv6ToBigInt(FABRIC_SUBNET6.split('/')[0] ?? '');
const FABRIC_PREFIX_LENGTH6 = Number(FABRIC_SUBNET6.split('/')[1]);

/** The IPv6 group that mirrors a decimal number: its decimal digits read as hex (12 → 0x12, printed `12`). */
function mirrorGroup(n: number): bigint {
  return BigInt(`0x${n}`);
}

/** Node i's IPv6 pod CIDR, fd10:244:i::/64, as a number: the IPv6 twin of 10.244.i.0/24 (i is the third group). */
function podNetwork6(nodeIndex: number): bigint {
  return POD_BASE6 | (mirrorGroup(nodeIndex) << 80n);
}

/** The IPv6 twin of 10.244.i.HOST: fd10:244:i::HOST. */
function podAddress6(nodeIndex: number, host: number): string {
  return formatIpv6(podNetwork6(nodeIndex) | mirrorGroup(host));
}

/** The IPv6 twin of 10.250.0.HOST: fd10:250::HOST. */
function fabricAddress6(host: number): string {
  return formatIpv6(FABRIC_BASE6 | mirrorGroup(host));
}

export interface PlannedFabric {
  netns: string;
  bridge: string;
  subnet: string;
  /** Only in a dual-stack plan. */
  subnet6?: string;
}

export interface PlannedRoute {
  /** Another node's pod CIDR… */
  destination: string;
  /** …reached through that node's fabric address. */
  via: string;
}

export interface PlannedNode {
  name: string;
  /** Declaration order, from 0; every per-node address derives from it. */
  index: number;
  netns: string;
  /** In the fabric namespace, attached to the bridge. */
  fabricVeth: string;
  /** The other end, inside the node's namespace. */
  fabricPeer: string;
  fabricIp: string;
  /** fabricIp with the subnet's prefix length, as `ip addr add` takes it. */
  fabricAddress: string;
  podCidr: string;
  podGateway: string;
  /** The IPv6 twins of fabricIp, fabricAddress, podCidr and podGateway: only in a dual-stack plan. */
  fabricIp6?: string;
  fabricAddress6?: string;
  podCidr6?: string;
  podGateway6?: string;
  /** Relative to the cgroup2 mount. */
  cgroup: string;
  agentCgroup: string;
  bpfPinDir: string;
  /** To every other node's pods, in node order. */
  routes: PlannedRoute[];
  /** The same for the IPv6 pod CIDRs, via the fabric's IPv6 addresses: only in a dual-stack plan. */
  routes6?: PlannedRoute[];
}

/** The sandbox's Prometheus: its own namespace on the fabric bridge, with no route beyond the fabric. */
export interface PlannedPrometheus {
  netns: string;
  /** In the fabric namespace, attached to the bridge. */
  fabricVeth: string;
  /** The other end, inside Prometheus's namespace. */
  fabricPeer: string;
  fabricIp: string;
  /** fabricIp with the subnet's prefix length, as `ip addr add` takes it. */
  fabricAddress: string;
  /** The IPv6 twins, when the sandbox is dual-stack (Prometheus still scrapes over IPv4). */
  fabricIp6?: string;
  fabricAddress6?: string;
  /** Relative to the cgroup2 mount; beside the nodes' cgroups, under none of them. */
  cgroup: string;
  port: number;
}

export interface SandboxPlan {
  prefix: string;
  /** Present (and true) only when planned with `dualStack`: pods, nodes and the fabric then carry IPv6 twins. */
  dualStack?: true;
  fabric: PlannedFabric;
  nodes: PlannedNode[];
  /** The manifest's warnings, then the plan's own (e.g. a Service that selects no pod). */
  warnings: string[];
}

export interface PlanOptions {
  /** Starts every global name (netns, cgroup, pin dir): a lowercase name of at most SANDBOX_PREFIX_MAX characters. */
  prefix: string;
  /**
   * Also give every pod, node and the fabric an IPv6 address (see FABRIC_SUBNET6), as in a Kubernetes dual-stack
   * cluster; Services keep IPv4 ClusterIPs and IPv4 endpoints. Off, the plan has no IPv6 field at all.
   */
  dualStack?: boolean;
}

/** Name of a pod's veth end in its node's namespace: stable, unique per pod in practice, and within IFNAMSIZ. */
export function podHostVethName(namespace: string, pod: string): string {
  return `v${createHash('sha256').update(`${namespace}/${pod}`).digest('hex').slice(0, 8)}`;
}

/** Network namespace of a pod: `P-pod-NS-POD`. */
export function podNetnsName(prefix: string, namespace: string, pod: string): string {
  return `${prefix}-pod-${namespace}-${pod}`;
}

/** Network namespace of a node: `P-node-NAME`. */
export function nodeNetnsName(prefix: string, node: string): string {
  return `${prefix}-node-${node}`;
}

/** Network namespace of the sandbox's Prometheus: `P-prom`. */
export function prometheusNetnsName(prefix: string): string {
  return `${prefix}-prom`;
}

/**
 * Names and address of the sandbox's Prometheus, for a planned sandbox. Its fabric address is
 * PROMETHEUS_FABRIC_HOST, above every node's (planSandbox refuses more than MAX_NODES nodes), and
 * on-link to all of them, so it needs no route at all.
 */
export function planPrometheus(plan: Pick<SandboxPlan, 'prefix' | 'fabric'>): PlannedPrometheus {
  const fabric = parseIpv4Cidr(plan.fabric.subnet);
  const fabricIp = formatIpv4(fabric.base + PROMETHEUS_FABRIC_HOST);
  const fabricIp6 = plan.fabric.subnet6 !== undefined ? fabricAddress6(PROMETHEUS_FABRIC_HOST) : undefined;
  return {
    netns: prometheusNetnsName(plan.prefix),
    // Nodes' fabric veths are fab-<number>, so this name is never one of theirs.
    fabricVeth: 'fab-prom',
    fabricPeer: INNER_INTERFACE,
    fabricIp,
    fabricAddress: `${fabricIp}/${fabric.prefixLength}`,
    ...(fabricIp6 !== undefined ? { fabricIp6, fabricAddress6: `${fabricIp6}/${FABRIC_PREFIX_LENGTH6}` } : {}),
    cgroup: `${plan.prefix}/prometheus`,
    port: PROMETHEUS_PORT,
  };
}

/** A pod's /etc/hosts: itself, and every Service by its cluster names (the sandbox has no DNS server). */
export function hostsFile(
  pod: { namespace: string; name: string; ip: string; ip6?: string },
  services: readonly { namespace: string; name: string; vip: string }[],
): string {
  const lines = ['127.0.0.1 localhost', '::1 localhost', `${pod.ip} ${pod.name}`];
  // A dual-stack pod's name resolves to both of its addresses, as the kubelet's hosts file has them.
  if (pod.ip6 !== undefined) lines.push(`${pod.ip6} ${pod.name}`);
  for (const service of services) {
    const names = [`${service.name}.${service.namespace}.svc.${CLUSTER_DOMAIN}`, `${service.name}.${service.namespace}`];
    // The bare name only resolves in the Service's own namespace, as Kubernetes' search path makes it.
    if (service.namespace === pod.namespace) names.push(service.name);
    lines.push(`${service.vip} ${names.join(' ')}`);
  }
  return `${lines.join('\n')}\n`;
}

export function resolvConf(namespace: string): string {
  // No nameserver line: every name the sandbox knows is in the hosts file, which glibc consults first (nsswitch
  // "files dns"); the search path and ndots match a Kubernetes pod so that tools behave the same way.
  return `search ${namespace}.svc.${CLUSTER_DOMAIN} svc.${CLUSTER_DOMAIN} ${CLUSTER_DOMAIN}\noptions ndots:5\n`;
}

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([key, value]) => Object.hasOwn(labels, key) && labels[key] === value);
}

function resolveTargetPort(pod: SandboxPod, targetPort: number | string): number | undefined {
  if (typeof targetPort === 'number') return targetPort;
  for (const container of pod.containers) {
    const port = container.ports.find((p) => p.name === targetPort);
    if (port !== undefined) return port.containerPort;
  }
  return undefined;
}

/** Where one pod lives on its node: names, addresses and cgroup (for `planSandbox`, and for pods the sandbox's kubelet starts later). */
export interface PodNetworkPlan {
  nodeIndex: number;
  netns: string;
  hostVeth: string;
  podVeth: string;
  ip: string;
  gateway: string;
  ip6?: string;
  gateway6?: string;
  /** Relative to the cgroup2 mount. */
  cgroup: string;
  /** /etc/netns/NETNS: the pod's hosts and resolv.conf. */
  dnsDir: string;
}

/**
 * The network of pod `namespace/name` as host number `host` (POD_HOST_OFFSET…) of `node`'s pod CIDR. Throws when
 * the generated network namespace name is too long.
 */
export function placePod(
  prefix: string,
  node: PlannedNode,
  pod: { namespace: string; name: string },
  host: number,
  dualStack: boolean,
): PodNetworkPlan {
  const netns = podNetnsName(prefix, pod.namespace, pod.name);
  if (netns.length > NETNS_NAME_MAX) {
    throw new PlanError(
      `pod ${pod.namespace}/${pod.name}: network namespace name ${netns} is ${netns.length} characters; at most ${NETNS_NAME_MAX} are allowed`,
    );
  }
  return {
    nodeIndex: node.index,
    netns,
    hostVeth: podHostVethName(pod.namespace, pod.name),
    podVeth: INNER_INTERFACE,
    ip: `10.244.${node.index}.${host}`,
    gateway: node.podGateway,
    ...(dualStack ? { ip6: podAddress6(node.index, host), gateway6: node.podGateway6 ?? '' } : {}),
    cgroup: `${prefix}/node-${node.name}/pod-${pod.namespace}-${pod.name}`,
    dnsDir: `/etc/netns/${netns}`,
  };
}

/**
 * Computes the sandbox's layout. Throws SandboxArgumentError for a bad prefix and PlanError when the manifest
 * cannot be laid out (too many nodes, or pods on a node, a pod on an unknown node, a generated name too long or
 * shared by two objects). Node i gets the i-th addresses, in declaration order.
 */
export function planSandbox(manifest: SandboxManifest, options: PlanOptions): SandboxPlan {
  const { prefix } = options;
  const dualStack = options.dualStack === true;
  if (prefix.length > SANDBOX_PREFIX_MAX || !PREFIX_PATTERN.test(prefix)) {
    throw new SandboxArgumentError(
      `invalid sandbox prefix ${JSON.stringify(prefix)}: expected at most ${SANDBOX_PREFIX_MAX} lowercase letters, digits ` +
        `and '-', starting with a letter and not ending with '-'`,
    );
  }
  if (manifest.nodes.length > MAX_NODES) {
    throw new PlanError(`${manifest.nodes.length} nodes do not fit the fabric subnet ${FABRIC_SUBNET}; at most ${MAX_NODES} are supported`);
  }
  const fabric = parseIpv4Cidr(FABRIC_SUBNET);
  const warnings = [...manifest.warnings];

  const nodeIndex = new Map<string, number>();
  const nodes: PlannedNode[] = manifest.nodes.map((node, i) => {
    if (nodeIndex.has(node.name)) throw new PlanError(`node ${node.name} is declared twice`);
    nodeIndex.set(node.name, i);
    const netns = nodeNetnsName(prefix, node.name);
    if (netns.length > NETNS_NAME_MAX) {
      throw new PlanError(
        `node ${node.name}: network namespace name ${netns} is ${netns.length} characters; at most ${NETNS_NAME_MAX} are allowed`,
      );
    }
    const fabricIp = formatIpv4(fabric.base + FABRIC_HOST_OFFSET + i);
    const fabricIp6 = fabricAddress6(FABRIC_HOST_OFFSET + i);
    return {
      name: node.name,
      index: i,
      netns,
      fabricVeth: `fab-${i}`,
      fabricPeer: INNER_INTERFACE,
      fabricIp,
      fabricAddress: `${fabricIp}/${fabric.prefixLength}`,
      podCidr: `10.244.${i}.0/24`,
      podGateway: `10.244.${i}.1`,
      ...(dualStack
        ? {
            fabricIp6,
            fabricAddress6: `${fabricIp6}/${FABRIC_PREFIX_LENGTH6}`,
            podCidr6: `${formatIpv6(podNetwork6(i))}/64`,
            podGateway6: podAddress6(i, 1),
          }
        : {}),
      cgroup: `${prefix}/node-${node.name}`,
      agentCgroup: `${prefix}/node-${node.name}/agent`,
      bpfPinDir: `/sys/fs/bpf/${prefix}/node-${node.name}`,
      routes: [],
      ...(dualStack ? { routes6: [] } : {}),
    };
  });
  for (const node of nodes) {
    const others = nodes.filter((other) => other !== node);
    node.routes = others.map((other) => ({ destination: other.podCidr, via: other.fabricIp }));
    if (dualStack) node.routes6 = others.map((other) => ({ destination: other.podCidr6 ?? '', via: other.fabricIp6 ?? '' }));
  }

  // Pods are numbered per node, in declaration order. Names are checked for length and for clashes: '-' may occur
  // in both namespace and pod names, so `a-b`/`c` and `a`/`b-c` would share the netns name P-pod-a-b-c.
  const perNode = new Array<number>(nodes.length).fill(0);
  const netnsOwner = new Map<string, string>();
  const vethOwner = new Map<string, string>();
  // Every pod must fit its node: the kubelet places them when the API server has them, and these checks say up
  // front what it would refuse.
  const placed = manifest.pods.map((pod) => {
    const id = `pod ${pod.namespace}/${pod.name}`;
    const i = nodeIndex.get(pod.nodeName);
    const node = i === undefined ? undefined : nodes[i];
    if (i === undefined || node === undefined)
      throw new PlanError(`${id}: node ${JSON.stringify(pod.nodeName)} is not a node of this sandbox`);
    const k = perNode[i] ?? 0;
    if (k >= MAX_PODS_PER_NODE) {
      throw new PlanError(
        `${id}: node ${pod.nodeName} already has ${MAX_PODS_PER_NODE} pods, the most one node's /24 pod range holds here`,
      );
    }
    perNode[i] = k + 1;
    const network = placePod(prefix, node, pod, POD_HOST_OFFSET + k, dualStack);
    const netnsClash = netnsOwner.get(network.netns);
    if (netnsClash !== undefined)
      throw new PlanError(`${id}: network namespace name ${network.netns} is also the name for ${netnsClash}; rename one of them`);
    netnsOwner.set(network.netns, id);
    const vethKey = `${pod.nodeName}/${network.hostVeth}`;
    const vethClash = vethOwner.get(vethKey);
    if (vethClash !== undefined)
      throw new PlanError(
        `${id}: interface name ${network.hostVeth} on node ${pod.nodeName} is also the name for ${vethClash}; rename one of them`,
      );
    vethOwner.set(vethKey, id);
    return pod;
  });

  // The API server allocates VIPs and the controller-manager the endpoints; the plan warns of what would leave a
  // Service without them.
  for (const service of manifest.services) {
    const id = `Service ${service.namespace}/${service.name}`;
    if (Object.keys(service.selector).length === 0) {
      warnings.push(`${id} has no selector, so it has no endpoints`);
      continue;
    }
    const selected = placed.filter((pod) => pod.namespace === service.namespace && selects(service.selector, pod.labels));
    if (selected.length === 0) {
      const selector = Object.entries(service.selector)
        .map(([k, v]) => `${k}=${v}`)
        .join(',');
      warnings.push(`${id}: selector ${selector} matches no pod in namespace ${service.namespace}, so it has no endpoints`);
    }
    for (const port of service.ports) {
      for (const pod of selected) {
        if (resolveTargetPort(pod, port.targetPort) !== undefined) continue;
        warnings.push(
          `${id} port ${port.name ?? port.port}: pod ${pod.namespace}/${pod.name} has no container port named ` +
            `${JSON.stringify(port.targetPort)}, so it is not an endpoint of this port`,
        );
      }
    }
  }

  return {
    prefix,
    ...(dualStack ? { dualStack: true as const } : {}),
    fabric: { netns: `${prefix}-fabric`, bridge: FABRIC_BRIDGE, subnet: FABRIC_SUBNET, ...(dualStack ? { subnet6: FABRIC_SUBNET6 } : {}) },
    nodes,
    warnings,
  };
}
