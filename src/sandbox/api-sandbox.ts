// `ferry sandbox up`: the sandbox on a real API server. Processes of such a sandbox, all in its cgroup:
//   supervisor  `ferry sandbox supervise`: the dev cluster (its child) and one SandboxKubelet per node;
//   controller  `ferry controller` with its own service account's token, gRPC on a unix socket agents reach
//               from their nodes' namespaces;
//   agents      Pods in ferry-system, one per node, run by that node's kubelet.
// `up` builds the fabric and the nodes, starts the supervisor and the controller, and then works only through the
// API: RBAC, CRDs, the agent Pods, the manifest's objects; it returns once pods are Ready and meshed ones enrolled.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { CONTROLLER_SERVER_NAME } from '../app/controller';
import { readTrustBundle, rotateCa } from '../controller';
import { PORTS, devClusterBinariesFrom } from '../config';
import { startDevCluster, type DevCluster } from '../devcluster';
import { runKubectl, type KubectlResult } from '../devcluster/kubectl';
import { DEFAULT_TRUST_DOMAIN } from '../identity';
import { meshEnabledFor } from '../k8s/mesh-rules';
import type { Logger } from '../telemetry';
import { AGENT_LABEL, AGENT_NAMESPACE, agentPod, agentPodName, apiObjectsFrom, ferryRbacFile, type KubeObject } from './api-objects';
import { STOPPED_ANNOTATION, SandboxKubelet, kubeletPaths, type LocalPodRecord } from './kubelet';
import type { Ledger } from './ledger';
import { netnsHttpGet } from './netns-http';
import type { PlannedNode, SandboxPlan } from './plan';
import { agentPodOf, type AgentPod, type ApiPodFields } from './prometheus-config';
import { SandboxAgentError, SandboxStateError } from './runtime-errors';
import type { SandboxPaths } from './state-dir';
import { cgroup2Root, pidAlive, spawnInCgroup, waitFor } from './system';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const FERRY_BIN = path.join(REPO_ROOT, 'bin', 'ferry.js');
const SUPERVISOR_READY_TIMEOUT_MS = 180_000;
const CONTROLLER_READY_TIMEOUT_MS = 60_000;
const PODS_READY_TIMEOUT_S = 90;
const ENROLLED_TIMEOUT_MS = 30_000;
const AGENT_REPLACE_TIMEOUT_S = 30;

/** What the supervisor writes once the API server and the kubelets are up: how the later commands reach it. */
export interface ApiEndpoint {
  server: string;
  /** The cluster admin's kubeconfig (what `ferry sandbox kubeconfig` prints). */
  kubeconfig: string;
  supervisorPid: number;
}

export function apiPaths(paths: SandboxPaths): {
  endpointFile: string;
  clusterDir: string;
  controllerKubeconfig: string;
  controllerSocket: string;
  controllerCaFile: string;
  kubectlCache: string;
} {
  return {
    endpointFile: path.join(paths.stateDir, 'api.json'),
    clusterDir: path.join(paths.stateDir, 'cluster'),
    controllerKubeconfig: path.join(paths.stateDir, 'controller.kubeconfig'),
    controllerSocket: path.join(paths.stateDir, 'controller.sock'),
    controllerCaFile: path.join(paths.stateDir, 'controller-ca.pem'),
    kubectlCache: path.join(paths.stateDir, 'kubectl-cache'),
  };
}

export function readApiEndpoint(paths: SandboxPaths): ApiEndpoint {
  const file = apiPaths(paths).endpointFile;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as ApiEndpoint;
  } catch (err) {
    throw new SandboxStateError(`the sandbox's API server is not recorded (${file}: ${(err as Error).message})`, { cause: err });
  }
}

/** kubectl of the dev cluster's release against the sandbox's API server, as its admin. */
export function sandboxKubectl(paths: SandboxPaths, args: string[], input?: string): Promise<KubectlResult> {
  const endpoint = readApiEndpoint(paths);
  return runKubectl(
    { kubectl: devClusterBinariesFrom().kubectl, kubeconfigPath: endpoint.kubeconfig, cacheDir: apiPaths(paths).kubectlCache },
    args,
    input,
  );
}

async function kubectlOk(paths: SandboxPaths, args: string[], input?: string): Promise<string> {
  const result = await sandboxKubectl(paths, args, input);
  if (result.code !== 0) {
    throw new SandboxStateError(`kubectl ${args.join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`);
  }
  return result.stdout;
}

// --- The supervisor ------------------------------------------------------------------------------------------

/**
 * `ferry sandbox supervise --prefix P` (started by `up`): the dev cluster and every node's kubelet, until SIGTERM.
 * The cluster runs with --exit-with-parent, so it cannot outlive this process.
 */
export async function superviseSandbox(plan: SandboxPlan, paths: SandboxPaths, log: Logger): Promise<{ stop(): Promise<void> }> {
  const api = apiPaths(paths);
  const cluster: DevCluster = await startDevCluster({
    dataDir: api.clusterDir,
    name: 'sandbox',
    logFile: path.join(paths.logDir, 'devcluster.log'),
    timeoutMs: SUPERVISOR_READY_TIMEOUT_MS - 10_000,
  });
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(cluster.kubeconfigPath);
  const kubelets: SandboxKubelet[] = [];
  try {
    for (const node of plan.nodes) {
      const kubelet = new SandboxKubelet({ plan, nodeName: node.name, kubeConfig, paths, log });
      await kubelet.start();
      kubelets.push(kubelet);
    }
  } catch (err) {
    await Promise.allSettled(kubelets.map((k) => k.stop()));
    await cluster.stop();
    throw err;
  }
  const endpoint: ApiEndpoint = { server: cluster.server, kubeconfig: cluster.kubeconfigPath, supervisorPid: process.pid };
  fs.writeFileSync(api.endpointFile, JSON.stringify(endpoint, null, 2), { mode: 0o600 });
  log.info({ server: cluster.server, nodes: plan.nodes.map((n) => n.name) }, 'API server and kubelets up');
  return {
    async stop() {
      await Promise.allSettled(kubelets.map((k) => k.stop()));
      await cluster.stop();
    },
  };
}

// --- Bring-up -------------------------------------------------------------------------------------------------

export interface ApiUpSettings {
  logLevel: string;
  agentArgs: string[];
  report: (line: string) => void;
}

/** After the network is built: the supervisor, Ferry's objects, the controller, the agents, then the manifest's objects. */
export async function startApiSandbox(
  plan: SandboxPlan,
  files: string[],
  ledger: Ledger,
  paths: SandboxPaths,
  settings: ApiUpSettings,
): Promise<void> {
  const api = apiPaths(paths);
  const cgroupRoot = cgroup2Root();
  const controlCgroup = path.join(cgroupRoot, plan.prefix, 'control');
  const controllerCgroup = path.join(cgroupRoot, plan.prefix, 'controller');
  for (const dir of [controlCgroup, controllerCgroup]) {
    fs.mkdirSync(dir);
    ledger.add({ kind: 'cgroup', path: dir });
  }
  const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root' };
  const supervisorLog = path.join(paths.logDir, 'supervisor.log');
  const supervisorPid = spawnInCgroup(
    controlCgroup,
    [process.execPath, FERRY_BIN, 'sandbox', 'supervise', '--prefix', plan.prefix, '--log-level', settings.logLevel],
    supervisorLog,
    { ...env, ...devClusterEnv() },
  );
  ledger.add({ kind: 'process', pid: supervisorPid, role: 'supervisor' });
  const up = await waitFor(() => fs.existsSync(api.endpointFile) || !pidAlive(supervisorPid), SUPERVISOR_READY_TIMEOUT_MS, 200);
  if (!up || !fs.existsSync(api.endpointFile)) {
    throw new SandboxAgentError(`the sandbox's API server and kubelets did not come up; ${supervisorLog} ends:\n${tail(supervisorLog)}`);
  }
  const endpoint = readApiEndpoint(paths);
  settings.report(`API server ${endpoint.server} with ${plan.nodes.length} Nodes (kubeconfig: ${endpoint.kubeconfig})`);

  await kubectlOk(paths, ['apply', '--server-side', '-f', path.join(REPO_ROOT, 'deploy', 'crds')]);
  await kubectlOk(paths, ['apply', '--server-side', '-f', devClusterBinariesFrom().gatewayApiCrdDir]);
  await kubectlOk(paths, ['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all']);
  await kubectlOk(paths, ['apply', '-f', ferryRbacFile(REPO_ROOT)]);
  settings.report('CRDs (security.istio.io, Gateway API) and Ferry RBAC applied');

  // The controller runs as its service account: its RBAC is what it can do.
  const token = (await kubectlOk(paths, ['-n', AGENT_NAMESPACE, 'create', 'token', 'ferry-controller', '--duration=168h'])).trim();
  const admin = new KubeConfig();
  admin.loadFromFile(endpoint.kubeconfig);
  const clusterCa = admin.getCurrentCluster()?.caData ?? '';
  fs.writeFileSync(
    api.controllerKubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'sandbox', cluster: { server: endpoint.server, 'certificate-authority-data': clusterCa } }],
      users: [{ name: 'ferry-controller', user: { token } }],
      contexts: [{ name: 'sandbox', context: { cluster: 'sandbox', user: 'ferry-controller' } }],
      'current-context': 'sandbox',
    }),
    { mode: 0o600 },
  );
  startController(plan, paths, settings.logLevel, ledger);
  const bundle = await waitFor(
    async () => {
      const result = await sandboxKubectl(paths, [
        '-n',
        AGENT_NAMESPACE,
        'get',
        'configmap',
        'ferry-ca-root-cert',
        '-o',
        'jsonpath={.data.root-cert\\.pem}',
      ]);
      if (result.code !== 0 || !result.stdout.includes('BEGIN CERTIFICATE')) return false;
      fs.writeFileSync(api.controllerCaFile, result.stdout);
      return fs.existsSync(api.controllerSocket);
    },
    CONTROLLER_READY_TIMEOUT_MS,
    250,
  );
  const controllerLog = path.join(paths.logDir, 'controller.log');
  if (!bundle) throw new SandboxAgentError(`the controller did not come up; ${controllerLog} ends:\n${tail(controllerLog)}`);
  settings.report(`controller on unix:${api.controllerSocket} (log: ${controllerLog})`);

  const agents = plan.nodes.map((node) => agentPodOfNode(paths, node, settings.logLevel, settings.agentArgs));
  await kubectlOk(paths, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: agents }));
  for (const node of plan.nodes) {
    // The kubelet logs containers as pod-NS-NAME-CONTAINER.log; agent-NODE.log is the name every sandbox uses.
    const link = path.join(paths.logDir, `agent-${node.name}.log`);
    fs.symlinkSync(`pod-${AGENT_NAMESPACE}-${agentPodName(node.name)}-agent.log`, link);
  }
  const agentsReady = await sandboxKubectl(paths, [
    '-n',
    AGENT_NAMESPACE,
    'wait',
    '--for=condition=Ready',
    `--timeout=${PODS_READY_TIMEOUT_S}s`,
    ...plan.nodes.map((n) => `pod/${agentPodName(n.name)}`),
  ]);
  if (agentsReady.code !== 0) {
    const logs = plan.nodes.map((n) => `agent-${n.name}.log ends:\n${tail(path.join(paths.logDir, `agent-${n.name}.log`))}`).join('\n');
    throw new SandboxAgentError(`the agents did not become Ready: ${agentsReady.stderr.trim()}\n${logs}`);
  }
  settings.report(`agents ready on ${plan.nodes.map((n) => n.name).join(', ')}`);

  const { namespaces, objects } = apiObjectsFrom(files);
  if (namespaces.length > 0)
    await kubectlOk(paths, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: namespaces }));
  if (objects.length > 0) await kubectlOk(paths, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
  settings.report(`${namespaces.length + objects.length} objects of ${files.join(', ')} created through the API`);
  await waitPodsReady(paths);
  await waitEnrolled(plan, paths);
  settings.report('pods ready, meshed ones enrolled');
}

/** The environment that chooses the dev cluster's binaries, passed on to the supervisor. */
function devClusterEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of ['FERRY_DEVCLUSTER', 'FERRY_KUBECTL']) if (process.env[name] !== undefined) env[name] = process.env[name];
  return env;
}

/** Start (or start again) the sandbox's controller; returns its pid. */
export function startController(plan: SandboxPlan, paths: SandboxPaths, logLevel: string, ledger: Ledger): number {
  const api = apiPaths(paths);
  fs.rmSync(api.controllerSocket, { force: true });
  const pid = spawnInCgroup(
    path.join(cgroup2Root(), plan.prefix, 'controller'),
    [
      process.execPath,
      FERRY_BIN,
      'controller',
      '--kubeconfig',
      api.controllerKubeconfig,
      '--listen',
      `unix:${api.controllerSocket}`,
      '--log-level',
      logLevel,
    ],
    path.join(paths.logDir, 'controller.log'),
    { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root' },
  );
  ledger.add({ kind: 'process', pid, role: 'controller' });
  return pid;
}

/** Every pod outside ferry-system Ready (kubectl wait), each failure named. */
async function waitPodsReady(paths: SandboxPaths): Promise<void> {
  const pods = await podsOf(paths);
  const user = pods.filter((p) => p.namespace !== AGENT_NAMESPACE);
  for (const pod of user) {
    const result = await sandboxKubectl(paths, [
      '-n',
      pod.namespace,
      'wait',
      '--for=condition=Ready',
      `--timeout=${PODS_READY_TIMEOUT_S}s`,
      `pod/${pod.name}`,
    ]);
    if (result.code !== 0) throw new SandboxAgentError(`pod ${pod.namespace}/${pod.name} did not become Ready: ${result.stderr.trim()}`);
  }
}

interface ApiPod {
  namespace: string;
  name: string;
  uid: string;
  node: string;
  ips: string[];
  ready: boolean;
}

export async function podsOf(paths: SandboxPaths): Promise<ApiPod[]> {
  const list = JSON.parse(await kubectlOk(paths, ['get', 'pods', '-A', '-o', 'json'])) as {
    items: Array<{
      metadata: { namespace: string; name: string; uid: string };
      spec: { nodeName?: string };
      status?: { podIPs?: Array<{ ip: string }>; conditions?: Array<{ type: string; status: string }> };
    }>;
  };
  return list.items.map((p) => ({
    namespace: p.metadata.namespace,
    name: p.metadata.name,
    uid: p.metadata.uid,
    node: p.spec.nodeName ?? '',
    ips: (p.status?.podIPs ?? []).map((a) => a.ip),
    ready: (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
  }));
}

/** Every meshed workload the controller sent a node's agent is enrolled there (its admin API's config_dump). */
async function waitEnrolled(plan: SandboxPlan, paths: SandboxPaths): Promise<void> {
  for (const node of plan.nodes) {
    let pending: string[] = [];
    const done = await waitFor(
      async () => {
        try {
          const { status, body } = await netnsHttpGet(`/run/netns/${node.netns}`, '127.0.0.1', 15000, '/config_dump', 3000);
          if (status !== 200) return false;
          const dump = JSON.parse(body) as {
            workloads?: Array<{ namespace: string; name: string; node: string; protocol: string; enrolled: boolean }>;
          };
          pending = (dump.workloads ?? [])
            .filter((w) => w.node === node.name && w.protocol === 'HBONE' && !w.enrolled)
            .map((w) => `${w.namespace}/${w.name}`);
          return pending.length === 0;
        } catch {
          return false;
        }
      },
      ENROLLED_TIMEOUT_MS,
      200,
    );
    if (!done)
      throw new SandboxAgentError(
        `the agent on ${node.name} did not enrol ${pending.join(', ') || 'its pods'} in time (log: ${paths.logDir})`,
      );
  }
}

/** A pod's record on its node (its network namespace and cgroup), as the kubelet wrote it. */
export function localPodRecord(plan: SandboxPlan, paths: SandboxPaths, namespace: string, name: string): LocalPodRecord | undefined {
  for (const node of plan.nodes) {
    const dir = kubeletPaths(paths, node.name).podsDir;
    let files: string[];
    try {
      files = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const file of files) {
      if (!file.endsWith('.json')) continue;
      try {
        const record = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as LocalPodRecord;
        if (record.namespace === namespace && record.name === name) return record;
      } catch {
        // A record being replaced: the rename makes it whole again.
      }
    }
  }
  return undefined;
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

// --- The commands on a running API sandbox -------------------------------------------------------------------

interface KubeList<T> {
  items: T[];
}

export interface ApiSandboxPod {
  namespace: string;
  name: string;
  node: string;
  ip: string;
  ips: string[];
  meshed: boolean;
  netns: string;
  running: boolean;
}

/** The pods (outside ferry-system) and Services as the API server has them, with each pod's namespace on its node. */
export async function apiPodsAndServices(
  plan: SandboxPlan,
  paths: SandboxPaths,
  running: (cgroupDir: string) => boolean,
): Promise<{
  pods: ApiSandboxPod[];
  services: Array<{ namespace: string; name: string; vip: string; ports: string; endpoints: string[] }>;
}> {
  const namespaces = JSON.parse(await kubectlOk(paths, ['get', 'namespaces', '-o', 'json'])) as KubeList<{
    metadata: { name: string; annotations?: Record<string, string> };
  }>;
  const annotations = new Map(namespaces.items.map((n) => [n.metadata.name, n.metadata.annotations ?? {}]));
  const pods = JSON.parse(await kubectlOk(paths, ['get', 'pods', '-A', '-o', 'json'])) as KubeList<{
    metadata: { namespace: string; name: string; annotations?: Record<string, string> };
    spec: { nodeName?: string };
    status?: { podIPs?: Array<{ ip: string }> };
  }>;
  const services = JSON.parse(await kubectlOk(paths, ['get', 'services', '-A', '-o', 'json'])) as KubeList<{
    metadata: { namespace: string; name: string };
    spec: { clusterIP?: string; ports?: Array<{ port: number; targetPort?: number | string }> };
  }>;
  const slices = JSON.parse(await kubectlOk(paths, ['get', 'endpointslices.discovery.k8s.io', '-A', '-o', 'json'])) as KubeList<{
    metadata: { namespace: string; labels?: Record<string, string> };
    endpoints?: Array<{ addresses: string[]; conditions?: { ready?: boolean } }>;
    ports?: Array<{ port?: number }>;
  }>;
  return {
    pods: pods.items
      .filter((p) => p.metadata.namespace !== AGENT_NAMESPACE)
      .map((p) => {
        const record = localPodRecord(plan, paths, p.metadata.namespace, p.metadata.name);
        const ips = (p.status?.podIPs ?? []).map((a) => a.ip);
        return {
          namespace: p.metadata.namespace,
          name: p.metadata.name,
          node: p.spec.nodeName ?? '',
          ip: ips.find((a) => !a.includes(':')) ?? ips[0] ?? '',
          ips,
          meshed: meshEnabledFor(annotations.get(p.metadata.namespace), p.metadata.annotations),
          netns: record ? path.basename(record.netnsPath) : '',
          running: record !== undefined && running(record.cgroupDir),
        };
      }),
    services: services.items
      .filter((s) => s.metadata.namespace !== 'default' || s.metadata.name !== 'kubernetes')
      .map((s) => {
        const own = slices.items.filter(
          (e) => e.metadata.namespace === s.metadata.namespace && e.metadata.labels?.['kubernetes.io/service-name'] === s.metadata.name,
        );
        const endpoints = own.flatMap((e) =>
          (e.endpoints ?? [])
            .filter((ep) => ep.conditions?.ready !== false)
            .flatMap((ep) => ep.addresses.flatMap((a) => (e.ports ?? []).map((port) => `${a}:${port.port}`))),
        );
        return {
          namespace: s.metadata.namespace,
          name: s.metadata.name,
          vip: s.spec.clusterIP ?? '',
          ports: (s.spec.ports ?? []).map((port) => `${port.port}->${port.targetPort ?? port.port}`).join(','),
          endpoints: [...new Set(endpoints)],
        };
      }),
  };
}

/** The agent Pods as the API server has them, as Prometheus' pod discovery would see them (its file_sd targets). */
export async function agentPodsOnApi(paths: SandboxPaths): Promise<AgentPod[]> {
  const selector = Object.entries(AGENT_LABEL)
    .map(([key, value]) => `${key}=${value}`)
    .join(',');
  const list = JSON.parse(
    await kubectlOk(paths, ['-n', AGENT_NAMESPACE, 'get', 'pods', '-l', selector, '-o', 'json']),
  ) as KubeList<ApiPodFields>;
  return list.items.map(agentPodOf);
}

/** The node's hand-over socket, where a new agent takes the listeners of the one before it. */
export function handoverSocketOf(paths: SandboxPaths, node: string): string {
  return path.join(kubeletPaths(paths, node).nodeDir, 'agent-handover.sock');
}

/** The agent Pod of `node`, running `ferry agent` with `agentArgs` beside what every sandbox agent gets. */
function agentPodOfNode(paths: SandboxPaths, node: PlannedNode, logLevel: string, agentArgs: string[], name?: string): KubeObject {
  const api = apiPaths(paths);
  return agentPod({
    node,
    ...(name !== undefined ? { name } : {}),
    handoverSocket: handoverSocketOf(paths, node.name),
    argv: [process.execPath, FERRY_BIN],
    controller: { address: `unix:${api.controllerSocket}`, caFile: api.controllerCaFile, serverName: CONTROLLER_SERVER_NAME },
    podNetnsDir: kubeletPaths(paths, node.name).podsDir,
    cgroupPath: path.join(cgroup2Root(), node.cgroup),
    logLevel,
    trustDomain: DEFAULT_TRUST_DOMAIN,
    agentArgs,
  });
}

/**
 * `sandbox agent start` on the API: the agent Pod of `node` runs again, with `agentArgs` after the ones every
 * agent gets. A Pod's command cannot change (the API server refuses the update), so when the running Pod's differs
 * it is deleted and created anew with the new one, as a DaemonSet rolls a changed template out; otherwise its
 * stopped annotation is lifted.
 */
export async function startAgentOnApi(paths: SandboxPaths, node: PlannedNode, logLevel: string, agentArgs: string[]): Promise<void> {
  const name = await currentAgentPod(paths, node.name);
  const wanted = agentPodOfNode(paths, node, logLevel, agentArgs, name);
  const commandOf = (pod: unknown): string =>
    JSON.stringify((pod as { spec?: { containers?: Array<{ command?: string[] }> } }).spec?.containers?.[0]?.command ?? []);
  const current = JSON.parse(await kubectlOk(paths, ['-n', AGENT_NAMESPACE, 'get', 'pod', name, '-o', 'json'])) as unknown;
  if (commandOf(current) === commandOf(wanted)) {
    await setAgentStopped(paths, node.name, false);
    return;
  }
  await kubectlOk(paths, ['-n', AGENT_NAMESPACE, 'delete', 'pod', name, '--wait=true', `--timeout=${AGENT_REPLACE_TIMEOUT_S}s`]);
  await kubectlOk(paths, ['create', '-f', '-'], JSON.stringify(wanted));
}

/** The name of the agent Pod serving `node` now: the newest not being deleted (one replaces another in `upgrade`). */
export async function currentAgentPod(paths: SandboxPaths, node: string): Promise<string> {
  const selector = Object.entries(AGENT_LABEL)
    .map(([key, value]) => `${key}=${value}`)
    .join(',');
  const list = JSON.parse(
    await kubectlOk(paths, [
      '-n',
      AGENT_NAMESPACE,
      'get',
      'pods',
      '-l',
      selector,
      '--field-selector',
      `spec.nodeName=${node}`,
      '-o',
      'json',
    ]),
  ) as KubeList<{ metadata: { name: string; creationTimestamp?: string; deletionTimestamp?: string } }>;
  const live = list.items.filter((p) => p.metadata.deletionTimestamp === undefined);
  live.sort(
    (a, b) =>
      (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? '') ||
      a.metadata.name.localeCompare(b.metadata.name),
  );
  const newest = live.at(-1);
  if (!newest) throw new SandboxStateError(`no agent Pod on node ${node}`);
  return newest.metadata.name;
}

/** What an agent's admin API answers at GET /handover (src/app/admin-types.ts HandoverDump). */
interface HandoverAnswer {
  pid: number;
  pod?: string;
  from: { state: string; pid?: number; pod?: string; reason?: string };
}

const HANDOVER_TIMEOUT_MS = 120_000;

/**
 * `sandbox upgrade NODE` on the API, as a DaemonSet's surge rolls a node: a new agent Pod beside the running one
 * (same node, its own name), which takes the running agent's listeners over through the node's hand-over socket;
 * once it serves them all (its GET /handover says so), the old Pod is deleted, and its agent, which accepts
 * nothing any more, finishes its open connections within the grace period. Returns the new Pod's name.
 */
export async function upgradeAgentOnApi(
  paths: SandboxPaths,
  node: PlannedNode,
  logLevel: string,
  agentArgs: string[],
  report: (line: string) => void,
): Promise<string> {
  const old = await currentAgentPod(paths, node.name);
  const name = `${agentPodName(node.name)}-${Date.now().toString(36)}`;
  await kubectlOk(paths, ['create', '-f', '-'], JSON.stringify(agentPodOfNode(paths, node, logLevel, agentArgs, name)));
  report(`agent Pod ${AGENT_NAMESPACE}/${name} created beside ${old}`);
  let last: HandoverAnswer | undefined;
  // Both agents answer on the node's ports during the hand-over; only the new one, done, says this.
  const done = await waitFor(
    async () => {
      try {
        const { status, body } = await netnsHttpGet(`/run/netns/${node.netns}`, '127.0.0.1', PORTS.admin, '/handover', 3000);
        if (status !== 200) return false;
        last = JSON.parse(body) as HandoverAnswer;
      } catch {
        return false;
      }
      if (last.pod === name && last.from.state === 'failed')
        throw new SandboxAgentError(`agent Pod ${name} could not take over: ${last.from.reason}`);
      return last.pod === name && last.from.state === 'complete';
    },
    HANDOVER_TIMEOUT_MS,
    200,
  );
  const log = path.join(paths.logDir, `pod-${AGENT_NAMESPACE}-${name}-agent.log`);
  if (!done) {
    throw new SandboxAgentError(
      `agent Pod ${name} did not take over from ${old} within ${HANDOVER_TIMEOUT_MS / 1000}s (last answer: ${JSON.stringify(last)}); ${log} ends:\n${tail(log)}`,
    );
  }
  report(`agent Pod ${name} (pid ${last?.pid}) took the listeners of ${old} (pid ${last?.from.pid}) over`);
  // agent-NODE.log follows the agent serving the node.
  const link = path.join(paths.logDir, `agent-${node.name}.log`);
  fs.rmSync(link, { force: true });
  fs.symlinkSync(path.basename(log), link);
  await kubectlOk(paths, ['-n', AGENT_NAMESPACE, 'delete', 'pod', old, '--wait=true', `--timeout=${AGENT_REPLACE_TIMEOUT_S}s`]);
  report(`agent Pod ${old} deleted once drained`);
  return name;
}

/** `sandbox agent kill|start` on the API: the agent Pod's stopped annotation, which its kubelet follows. */
export async function setAgentStopped(paths: SandboxPaths, node: string, stopped: boolean): Promise<void> {
  await kubectlOk(paths, [
    '-n',
    AGENT_NAMESPACE,
    'annotate',
    '--overwrite',
    `pod/${await currentAgentPod(paths, node)}`,
    `${STOPPED_ANNOTATION}=${stopped ? 'true' : 'false'}`,
  ]);
}

/** `sandbox apply|delete -f FILE…` on the API: kubectl, the user's own objects as they are. */
export async function kubectlFiles(
  paths: SandboxPaths,
  verb: 'apply' | 'delete',
  files: string[],
  report: (line: string) => void,
): Promise<void> {
  const out = await kubectlOk(paths, [verb, ...files.flatMap((f) => ['-f', f])]);
  for (const line of out.trim().split('\n')) if (line !== '') report(line);
}

export interface AgentTrust {
  generation: number;
  issuer: string;
  certificates: Array<{ principal: string; issuer: string }>;
}

/** A node's agent's trust state from its admin API (GET /trust). */
export async function agentTrust(netns: string): Promise<AgentTrust | undefined> {
  try {
    const { status, body } = await netnsHttpGet(`/run/netns/${netns}`, '127.0.0.1', 15000, '/trust', 3000);
    return status === 200 ? (JSON.parse(body) as AgentTrust) : undefined;
  } catch {
    return undefined;
  }
}

/** The admin's kubeconfig, as a KubeConfig for the API calls that `ca rotate` makes. */
export function adminKubeConfig(paths: SandboxPaths): KubeConfig {
  const kube = new KubeConfig();
  kube.loadFromFile(readApiEndpoint(paths).kubeconfig);
  return kube;
}

const ROTATION_PHASE_TIMEOUT_MS = 90_000;

/**
 * What agents check the controller's serving certificate against (the file a cluster would mount from the root
 * ConfigMap): the new root joins it in phase 1, since the controller re-issues its certificate from the new
 * authority at the switch. The old root stays: a file only grows here, as a mounted bundle lags the API.
 */
async function trustNewRootsForController(kube: KubeConfig, paths: SandboxPaths): Promise<void> {
  const caFile = apiPaths(paths).controllerCaFile;
  const held = fs.readFileSync(caFile, 'utf8');
  const added = (await readTrustBundle(kube)).roots.filter((pem) => !held.includes(pem.trim()));
  if (added.length === 0) return;
  const temporary = `${caFile}.tmp`;
  fs.writeFileSync(temporary, `${held.trimEnd()}\n${added.join('')}`, { mode: 0o644 });
  fs.renameSync(temporary, caFile);
}

/**
 * `ferry sandbox ca rotate` on the API: the CA Secret advanced one phase at a time (rotateCa), each next phase only
 * once every running agent's admin API shows it caught up: the new bundle loaded (prepare), every certificate
 * re-issued by another issuer than before (switch), the old root dropped (finish). A stopped rotation resumes
 * from the phase the Secret is in.
 */
export async function rotateCaOnApi(
  plan: SandboxPlan,
  paths: SandboxPaths,
  running: string[],
  report: (line: string) => void,
): Promise<void> {
  const kube = adminKubeConfig(paths);
  const nodes = plan.nodes.filter((n) => running.includes(n.name));
  const waitAgents = async (what: string, caughtUp: (trust: AgentTrust, node: string) => boolean): Promise<void> => {
    for (const node of nodes) {
      const ok = await waitFor(
        async () => {
          const trust = await agentTrust(node.netns);
          return trust !== undefined && caughtUp(trust, node.name);
        },
        ROTATION_PHASE_TIMEOUT_MS,
        200,
      );
      if (!ok) {
        throw new SandboxAgentError(
          `ca rotate: the agent on ${node.name} did not ${what} within ${ROTATION_PHASE_TIMEOUT_MS / 1000}s; ` +
            'the rotation stopped here and can be continued by running the command again',
        );
      }
    }
  };
  let { metadata } = await readTrustBundle(kube);
  if (metadata.phase === 'steady') {
    metadata = await rotateCa(kube, 'prepare');
    report(
      `phase 1/3: trusting ${metadata.roots.at(-1)} beside ${metadata.roots.slice(0, -1).join(', ')} (generation ${metadata.generation})`,
    );
    const generation = metadata.generation;
    await waitAgents('load the new trust bundle', (t) => t.generation >= generation);
  }
  // Before the switch, also when a stopped rotation is run again.
  await trustNewRootsForController(kube, paths);
  if (metadata.phase === 'rotating') {
    const before = new Map<string, Set<string>>();
    for (const node of nodes) before.set(node.name, new Set((await agentTrust(node.netns))?.certificates.map((c) => c.issuer) ?? []));
    metadata = await rotateCa(kube, 'switch');
    report(`phase 2/3: ${metadata.issuer} signs now; agents re-issue their certificates`);
    const switched = metadata.generation;
    await waitAgents(
      're-issue its certificates from the new issuer',
      (t, node) => t.generation >= switched && t.certificates.every((c) => !before.get(node)?.has(c.issuer)),
    );
  }
  metadata = await rotateCa(kube, 'finish');
  report(`phase 3/3: trust bundle is ${metadata.roots.join(', ')} (generation ${metadata.generation})`);
  const finished = metadata.generation;
  await waitAgents('drop the old root', (t) => t.generation >= finished);
  report(`root rotation done; ${nodes.length} agent(s) caught up`);
}
