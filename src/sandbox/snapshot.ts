// Turn a sandbox plan into the cluster snapshot the sandbox's agents watch.
// A dual-stack pod lists both addresses, IPv4 first (the primary family first, as in a Pod's status.podIPs), so its
// agent enrols both; Service endpoints stay IPv4, like the ClusterIPs in front of them.
import type { ClusterSnapshot } from '../state';
import { podIps, type SandboxPlan } from './plan';

export function snapshotFromPlan(plan: SandboxPlan, revision: number): ClusterSnapshot {
  return {
    version: 1,
    revision,
    workloads: plan.pods.map((pod) => ({
      uid: `${pod.namespace}/${pod.name}`,
      namespace: pod.namespace,
      name: pod.name,
      node: pod.nodeName,
      serviceAccount: pod.serviceAccount,
      ips: podIps(pod),
      labels: pod.labels,
      meshEnabled: pod.meshEnabled,
      netnsPath: `/run/netns/${pod.netns}`,
      excludeOutboundPorts: pod.excludeOutboundPorts,
      excludeOutboundCidrs: pod.excludeOutboundCidrs,
    })),
    services: plan.services.map((service) => ({
      namespace: service.namespace,
      name: service.name,
      hostname: `${service.name}.${service.namespace}.svc.cluster.local`,
      vips: [service.vip],
      ports: service.ports.map((port) => ({
        ...(port.name !== undefined ? { name: port.name } : {}),
        port: port.port,
        endpoints: port.endpoints.map((e) => ({ ip: e.ip, port: e.port, workloadUid: `${e.namespace}/${e.pod}` })),
      })),
    })),
    // `?? []`: a plan.json saved before policies existed has neither field.
    authorizationPolicies: plan.authorizationPolicies ?? [],
    peerAuthentications: plan.peerAuthentications ?? [],
  };
}
