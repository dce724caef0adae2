// A container's environment as the sandbox's kubelet gives it: the variables of `env` in order, each `value` with
// `$(NAME)` expanded from the variables before it (an unknown reference stays as written, as Kubernetes leaves it),
// and `valueFrom.fieldRef` answered from the Pod (the downward API's fields for environment variables). Sources
// the sandbox has no store for (Secrets, ConfigMaps, resource limits) are refused with the variable's name, rather
// than starting the container with the variable empty.
import type { V1Container, V1EnvVar, V1Pod } from '@kubernetes/client-node';
import { SandboxStateError } from './runtime-errors';

export interface PodFacts {
  /** The pod's addresses, IPv4 first, as its status will list them. */
  podIps: string[];
  /** The node's address (status.hostIP). */
  hostIp: string;
}

const KEYED_FIELD = /^metadata\.(labels|annotations)\['([^']+)'\]$/;

/** The value of a downward API field path for `pod`, or undefined for a path Kubernetes does not offer in env. */
function fieldValue(pod: V1Pod, facts: PodFacts, fieldPath: string): string | undefined {
  const metadata = pod.metadata ?? {};
  switch (fieldPath) {
    case 'metadata.name':
      return metadata.name ?? '';
    case 'metadata.namespace':
      return metadata.namespace ?? 'default';
    case 'metadata.uid':
      return metadata.uid ?? '';
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName || 'default';
    case 'status.hostIP':
    case 'status.hostIPs':
      return facts.hostIp;
    case 'status.podIP':
      return facts.podIps[0] ?? '';
    case 'status.podIPs':
      return facts.podIps.join(',');
  }
  const keyed = KEYED_FIELD.exec(fieldPath);
  if (keyed === null) return undefined;
  const map = keyed[1] === 'labels' ? metadata.labels : metadata.annotations;
  return map?.[keyed[2] ?? ''] ?? '';
}

function describeSource(variable: V1EnvVar): string {
  const from = variable.valueFrom ?? {};
  return Object.keys(from).find((k) => from[k as keyof typeof from] !== undefined) ?? '(empty)';
}

/** The environment `container` of `pod` runs with (beside the kubelet's own PATH, HOME and HOSTNAME). */
export function containerEnvironment(pod: V1Pod, container: V1Container, facts: PodFacts): Record<string, string> {
  const where = (i: number, variable: V1EnvVar): string =>
    `pod ${pod.metadata?.namespace ?? 'default'}/${pod.metadata?.name ?? ''} container ${container.name} env[${i}] (${variable.name})`;
  const env: Record<string, string> = {};
  (container.env ?? []).forEach((variable, i) => {
    if (variable.valueFrom === undefined) {
      env[variable.name] = (variable.value ?? '').replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, name: string) => env[name] ?? all);
      return;
    }
    const fieldPath = variable.valueFrom.fieldRef?.fieldPath;
    if (fieldPath === undefined) {
      throw new SandboxStateError(
        `${where(i, variable)}: valueFrom.${describeSource(variable)} is not available in the sandbox; use value or valueFrom.fieldRef`,
      );
    }
    const value = fieldValue(pod, facts, fieldPath);
    if (value === undefined) {
      throw new SandboxStateError(
        `${where(i, variable)}: valueFrom.fieldRef.fieldPath ${JSON.stringify(fieldPath)} is not a field the downward API gives to ` +
          "environment variables (metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'], " +
          "metadata.annotations['KEY'], spec.nodeName, spec.serviceAccountName, status.hostIP, status.hostIPs, status.podIP, status.podIPs)",
      );
    }
    env[variable.name] = value;
  });
  return env;
}
