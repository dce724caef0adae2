// One pod's network on its node: its namespace, the veth pair to the node (point-to-point, a /32 and a /128), the
// node's route to it, and its DNS files. Used by `up` for the pods it plans and by the kubelet for pods it starts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Ledger } from './ledger';
import type { PlannedNode, PodNetworkPlan } from './plan';
import { enableIpv6, ip, netnsExists } from './system';

/**
 * Build the pod's namespace and link it to `node`. Every name goes into the ledger before the next step, so a
 * failure half-way leaves nothing `down` does not know about. The pod has a /32 and reaches everything via the
 * node's side of its veth, which carries the node's pod gateway address (the same on every pod veth).
 */
export async function createPodNetwork(
  node: Pick<PlannedNode, 'netns'>,
  pod: PodNetworkPlan,
  dns: { hosts: string; resolvConf: string },
  ledger: Ledger,
): Promise<void> {
  await ip('netns', 'add', pod.netns);
  ledger.add({ kind: 'netns', name: pod.netns });
  if (pod.ip6 !== undefined) await enableIpv6(pod.netns, { forwarding: false });
  await ip('-n', pod.netns, 'link', 'set', 'lo', 'up');
  await ip('-n', node.netns, 'link', 'add', pod.hostVeth, 'type', 'veth', 'peer', 'name', pod.podVeth, 'netns', pod.netns);
  await ip('-n', node.netns, 'addr', 'add', `${pod.gateway}/32`, 'dev', pod.hostVeth);
  await ip('-n', node.netns, 'link', 'set', pod.hostVeth, 'up');
  await ip('-n', node.netns, 'route', 'add', `${pod.ip}/32`, 'dev', pod.hostVeth);
  await ip('-n', pod.netns, 'addr', 'add', `${pod.ip}/32`, 'dev', pod.podVeth);
  await ip('-n', pod.netns, 'link', 'set', pod.podVeth, 'up');
  await ip('-n', pod.netns, 'route', 'add', pod.gateway, 'dev', pod.podVeth, 'scope', 'link');
  await ip('-n', pod.netns, 'route', 'add', 'default', 'via', pod.gateway, 'dev', pod.podVeth);
  if (pod.ip6 !== undefined && pod.gateway6 !== undefined) {
    // The same point-to-point shape in IPv6: a /128 each side, an on-link route to the gateway, default via it.
    await ip('-n', node.netns, '-6', 'addr', 'add', `${pod.gateway6}/128`, 'dev', pod.hostVeth, 'nodad');
    await ip('-n', node.netns, '-6', 'route', 'add', `${pod.ip6}/128`, 'dev', pod.hostVeth);
    await ip('-n', pod.netns, '-6', 'addr', 'add', `${pod.ip6}/128`, 'dev', pod.podVeth, 'nodad');
    await ip('-n', pod.netns, '-6', 'route', 'add', pod.gateway6, 'dev', pod.podVeth);
    await ip('-n', pod.netns, '-6', 'route', 'add', 'default', 'via', pod.gateway6, 'dev', pod.podVeth);
  }
  // `ip netns exec` bind-mounts /etc/netns/NAME/* over /etc: this is the pod's DNS.
  fs.mkdirSync(pod.dnsDir, { recursive: true });
  ledger.add({ kind: 'etc-netns', path: pod.dnsDir });
  writePodDns(pod, dns);
}

/**
 * Rewrite the pod's hosts and resolv.conf in place: `ip netns exec` bind-mounts these files, so a process
 * already running keeps the inode it was given and sees only writes into it, never a renamed replacement.
 */
export function writePodDns(pod: Pick<PodNetworkPlan, 'dnsDir'>, dns: { hosts: string; resolvConf: string }): void {
  fs.writeFileSync(path.join(pod.dnsDir, 'hosts'), dns.hosts);
  fs.writeFileSync(path.join(pod.dnsDir, 'resolv.conf'), dns.resolvConf);
}

/** Remove the pod's namespace (its veth pair and the node's route to it go with it) and its DNS files. */
export async function removePodNetwork(pod: Pick<PodNetworkPlan, 'netns' | 'dnsDir'>): Promise<void> {
  if (await netnsExists(pod.netns)) await ip('netns', 'del', pod.netns);
  fs.rmSync(pod.dnsDir, { recursive: true, force: true });
}
