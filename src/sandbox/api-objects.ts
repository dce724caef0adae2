// What `ferry sandbox up` sends to the API server: the manifest's own documents (a Pod's missing image
// filled in, the sandbox's ferry.dev Node documents dropped), the ServiceAccounts its Pods name, Ferry's RBAC,
// and one agent Pod per node in ferry-system (the sandbox's DaemonSet: hostNetwork, bound to its node, a
// projected token for the controller's audience, annotated for Prometheus, ready when the agent says so).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { AGENT_TOKEN_AUDIENCE } from '../controller';
import { PORTS } from '../config';
import { DEFAULT_NAMESPACE, DEFAULT_SERVICE_ACCOUNT } from '../k8s/mesh-rules';
import type { PlannedNode } from './plan';
import { agentScrapeAnnotations } from './prometheus-config';
import { SandboxStateError } from './runtime-errors';

/** Containers in the sandbox are the host's programs: the image is never pulled, and this stands in when none is given. */
export const SANDBOX_IMAGE = 'sandbox.ferry.dev/host-process';
export const AGENT_NAMESPACE = 'ferry-system';
export const AGENT_SERVICE_ACCOUNT = 'ferry-agent';
export const AGENT_LABEL = { app: 'ferry-agent' } as const;
/** The projected token volume of an agent pod, and where the kubelet writes it under $(FERRY_POD_DIR). */
export const AGENT_TOKEN_VOLUME = 'ferry-token';
const SANDBOX_API_VERSION = 'ferry.dev/v1alpha1';

export type KubeObject = {
  apiVersion?: unknown;
  kind?: unknown;
  metadata?: { name?: unknown; namespace?: unknown } & Record<string, unknown>;
  spec?: unknown;
} & Record<string, unknown>;

export interface SandboxApiObjects {
  /** Namespaces, applied first so the rest has somewhere to go. */
  namespaces: KubeObject[];
  /** Everything else, ServiceAccounts the Pods name included. */
  objects: KubeObject[];
}

/** The manifest files' documents as API objects. The files were validated by loadManifests already. */
export function apiObjectsFrom(files: readonly string[]): SandboxApiObjects {
  const namespaces: KubeObject[] = [];
  const objects: KubeObject[] = [];
  const accounts = new Set<string>();
  const declaredAccounts = new Set<string>();
  for (const file of files) {
    const text = fs.readFileSync(file, 'utf8');
    for (const document of parseAllDocuments(text)) {
      const object = document.toJS() as KubeObject | null;
      if (object === null || typeof object !== 'object') continue;
      if (object.apiVersion === SANDBOX_API_VERSION && object.kind === 'Node') continue;
      if (object.kind === 'Namespace') {
        namespaces.push(object);
        continue;
      }
      const namespace = typeof object.metadata?.namespace === 'string' ? object.metadata.namespace : DEFAULT_NAMESPACE;
      if (object.kind === 'ServiceAccount') declaredAccounts.add(`${namespace}/${String(object.metadata?.name)}`);
      if (object.kind === 'Pod') {
        const spec = (object.spec ?? {}) as { serviceAccountName?: string; containers?: Array<Record<string, unknown>> };
        for (const container of spec.containers ?? []) if (typeof container.image !== 'string') container.image = SANDBOX_IMAGE;
        accounts.add(`${namespace}/${spec.serviceAccountName || DEFAULT_SERVICE_ACCOUNT}`);
      }
      objects.push(object);
    }
  }
  // A Pod whose ServiceAccount does not exist is refused by the API server's admission; the sandbox makes them.
  const made = [...accounts]
    .filter((key) => !declaredAccounts.has(key) && !key.endsWith(`/${DEFAULT_SERVICE_ACCOUNT}`))
    .map((key) => {
      const [namespace, name] = key.split('/');
      return { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } };
    });
  return { namespaces, objects: [...made, ...objects] };
}

/** Ferry's own RBAC (deploy/rbac/ferry.yaml): the namespace, the two service accounts, the controller's roles. */
export function ferryRbacFile(repoRoot: string): string {
  const file = path.join(repoRoot, 'deploy', 'rbac', 'ferry.yaml');
  if (!fs.existsSync(file)) throw new SandboxStateError(`Ferry's RBAC manifest ${file} is missing from this checkout`);
  return file;
}

export interface AgentPodSettings {
  node: PlannedNode;
  /** node + ferry.js: the agent's program. */
  argv: string[];
  /** The controller's unix socket, CA file and name. */
  controller: { address: string; caFile: string; serverName: string };
  podNetnsDir: string;
  cgroupPath: string;
  /** The node's hand-over socket, where a new agent Pod takes the listeners of the one it replaces. */
  handoverSocket: string;
  /** The Pod's name: agentPodName(node) unless it replaces one (`sandbox upgrade`). */
  name?: string;
  logLevel: string;
  trustDomain: string;
  agentArgs: string[];
}

export function agentPodName(node: string): string {
  return `ferry-agent-${node}`;
}

/** One node's agent as a Pod: run by that node's kubelet in the node's network namespace and the agent cgroup. */
export function agentPod(settings: AgentPodSettings): KubeObject {
  const { node } = settings;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    // Annotated for Prometheus as a cluster's agent DaemonSet is (deploy/prometheus/scrape-config.yaml).
    metadata: {
      name: settings.name ?? agentPodName(node.name),
      namespace: AGENT_NAMESPACE,
      labels: { ...AGENT_LABEL },
      annotations: agentScrapeAnnotations(),
    },
    spec: {
      nodeName: node.name,
      hostNetwork: true,
      serviceAccountName: AGENT_SERVICE_ACCOUNT,
      // Beyond the agent's drain (--drain-seconds, 10 by default), so what it still serves can finish.
      terminationGracePeriodSeconds: 15,
      containers: [
        {
          name: 'agent',
          image: SANDBOX_IMAGE,
          command: [
            ...settings.argv,
            'agent',
            '--node',
            node.name,
            '--controller',
            settings.controller.address,
            '--controller-ca',
            settings.controller.caFile,
            '--controller-server-name',
            settings.controller.serverName,
            '--token-file',
            `$(FERRY_POD_DIR)/volumes/${AGENT_TOKEN_VOLUME}/token`,
            '--pod-netns-dir',
            settings.podNetnsDir,
            '--pin-dir',
            node.bpfPinDir,
            '--cgroup',
            settings.cgroupPath,
            '--handover-socket',
            settings.handoverSocket,
            '--log-level',
            settings.logLevel,
            '--service-lb',
            '--trust-domain',
            settings.trustDomain,
            ...settings.agentArgs,
          ],
          // Its own Pod name, which the agent reports in its hand-over (GET /handover) and logs.
          env: [{ name: 'FERRY_POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
          readinessProbe: { httpGet: { path: '/healthz/ready', port: PORTS.readiness }, periodSeconds: 1 },
        },
      ],
      volumes: [
        {
          name: AGENT_TOKEN_VOLUME,
          projected: { sources: [{ serviceAccountToken: { audience: AGENT_TOKEN_AUDIENCE, expirationSeconds: 3600, path: 'token' } }] },
        },
      ],
    },
  };
}
