// `ferry sandbox up|down|exec|status`: build a mesh out of network namespaces on this machine,
// run one agent per node and the pods' processes, and remove all of it by exact name.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../native';
import { PORTS } from '../config';
import { readSnapshot, writeSnapshot } from '../state';
import { CaDirectory, DEFAULT_TRUST_DOMAIN, issuerNameOf, readAgentTrustStatus, readCaIssuer, type AgentTrustStatus } from '../identity';
import {
  agentPodsOnApi,
  apiPaths,
  apiPodsAndServices,
  kubectlFiles,
  readApiEndpoint,
  sandboxKubectl,
  startController,
  localPodRecord,
  rotateCaOnApi,
  setAgentStopped,
  startApiSandbox,
} from './api-sandbox';
import { Ledger } from './ledger';
import { loadManifests, type SandboxManifest } from './manifest';
import { netnsHttpGet, portOpen } from './netns-http';
import { createPodNetwork } from './pod-network';
import { planPrometheus, planSandbox, podIps, type PlannedNode, type SandboxPlan } from './plan';
import { assertPrometheusInstalled, prometheusStatus, startPrometheus, type PrometheusStatus } from './prometheus';
import { agentPods } from './prometheus-config';
import { SandboxAgentError, SandboxHttpError, SandboxStateError } from './runtime-errors';
import { snapshotFromPlan } from './snapshot';
import { readPlan, requireRoot, sandboxPaths, type SandboxPaths } from './state-dir';
import {
  CGROUP_EXEC,
  assertIpv6Available,
  cgroup2Root,
  cgroupPids,
  deleteLink,
  enableIpv6,
  ensureBpffs,
  ip,
  killCgroup,
  netnsExists,
  pidAlive,
  run,
  sleep,
  spawnInCgroup,
  waitFor,
} from './system';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const FERRY_BIN = path.join(REPO_ROOT, 'bin', 'ferry.js');
const AGENT_READY_TIMEOUT_MS = 30_000;
const POD_PORT_TIMEOUT_MS = 15_000;
const AGENT_STOP_TIMEOUT_MS = 5_000;
const API_STOP_TIMEOUT_MS = 25_000;

export interface UpOptions {
  prefix: string;
  /** Progress lines for the user. */
  report: (line: string) => void;
  logLevel?: string;
  /** Extra `ferry agent` flags for every agent, e.g. ['--cert-ttl-seconds', '60']. */
  agentArgs?: string[];
  /** Also start a Prometheus that scrapes every agent (src/sandbox/prometheus.ts). */
  prometheus?: boolean;
  /** Give every pod an IPv6 address too (PlanOptions.dualStack), with IPv6 routes between pods and nodes. */
  dualStack?: boolean;
  /**
   * Run on a real API server (src/sandbox/api-sandbox.ts): the dev cluster, `ferry controller`, a kubelet per node
   * and the agents as Pods; the manifest's objects go through the API. Otherwise the agents follow a snapshot file.
   */
  api?: boolean;
}

/** Kept in the state dir: how `up` built the sandbox and started its agents, for the commands that come later. */
interface AgentSettings {
  logLevel: string;
  agentArgs: string[];
  trustDomain: string;
  /** `up --dual-stack`; absent in settings written before the option existed, which means false. */
  dualStack?: boolean;
  /** `up --api`: the sandbox runs on its API server (absent: false). */
  api?: boolean;
}

/** Whether the sandbox runs on its API server (`up --api`). */
export function runsOnApi(paths: SandboxPaths): boolean {
  try {
    return readAgentSettings(paths).api === true;
  } catch {
    return false;
  }
}

function readAgentSettings(paths: SandboxPaths): AgentSettings {
  return JSON.parse(fs.readFileSync(paths.agentSettingsFile, 'utf8')) as AgentSettings;
}

/** Whether the sandbox was built with --dual-stack: from its settings, or from its plan when those are unreadable. */
function isDualStack(plan: SandboxPlan, paths: SandboxPaths): boolean {
  try {
    return readAgentSettings(paths).dualStack === true;
  } catch {
    return plan.dualStack === true;
  }
}

export async function sandboxUp(files: string[], options: UpOptions): Promise<SandboxPlan> {
  const manifest = await loadManifests(files);
  const plan = planSandbox(manifest, { prefix: options.prefix, dualStack: options.dualStack === true });
  for (const warning of plan.warnings) options.report(`warning: ${warning}`);
  requireRoot('ferry sandbox up');
  if (plan.dualStack) assertIpv6Available('ferry sandbox up --dual-stack');
  if (options.prometheus) assertPrometheusInstalled();
  await ensureBpffs();
  native.assertKernelReady(native.probeKernel());

  const paths = sandboxPaths(options.prefix);
  const api = options.api === true;
  // On the API server pods come and go with their objects: the kubelet builds their networks, not `up`.
  const built: SandboxPlan = api ? { ...plan, pods: [], services: [] } : plan;
  if (fs.existsSync(paths.stateDir)) {
    throw new SandboxStateError(`sandbox "${options.prefix}" is already up (state in ${paths.stateDir}); run: ferry sandbox down`);
  }
  const names = [
    plan.fabric.netns,
    ...plan.nodes.map((n) => n.netns),
    ...built.pods.map((p) => p.netns),
    ...(options.prometheus ? [planPrometheus(plan).netns] : []),
  ];
  for (const name of names) {
    if (await netnsExists(name)) {
      throw new SandboxStateError(
        `network namespace ${name} already exists but no sandbox "${options.prefix}" is recorded; ` +
          `remove it (ip netns del ${name}) or use another --prefix`,
      );
    }
  }
  fs.mkdirSync(paths.logDir, { recursive: true });
  fs.writeFileSync(paths.planFile, JSON.stringify(built, null, 2));
  const settings: AgentSettings = {
    logLevel: options.logLevel ?? 'info',
    agentArgs: options.agentArgs ?? [],
    trustDomain: DEFAULT_TRUST_DOMAIN,
    dualStack: plan.dualStack === true,
    api,
  };
  fs.writeFileSync(paths.agentSettingsFile, JSON.stringify(settings, null, 2));
  const ledger = new Ledger(paths.ledgerFile);
  try {
    await buildNetwork(built, ledger, options);
    if (api) {
      createPinRoot(plan, ledger);
      await startApiSandbox(plan, files, ledger, paths, {
        logLevel: settings.logLevel,
        agentArgs: settings.agentArgs,
        report: options.report,
      });
      if (options.prometheus) await startPrometheus(plan, ledger, paths, await agentPodsOnApi(paths), options.report);
      return plan;
    }
    writeSnapshot(paths.snapshotFile, snapshotFromPlan(plan, 1));
    // A root and an intermediate, as a production mesh would plug in; lives in the state dir,
    // which is root-only and removed by `down`.
    await CaDirectory.create(paths.caDir, { trustDomain: settings.trustDomain, intermediate: true });
    options.report(`certificate authority for spiffe://${settings.trustDomain} in ${paths.caDir}`);
    await startAgents(plan, ledger, paths, settings, options);
    if (options.prometheus) await startPrometheus(plan, ledger, paths, agentPods(plan), options.report);
    await startPods(plan, ledger, paths, options);
  } catch (err) {
    options.report(`sandbox up failed: ${(err as Error).message}`);
    options.report('rolling back everything it created');
    await sandboxDown(options.prefix, () => undefined);
    throw err;
  }
  return plan;
}

async function buildNetwork(plan: SandboxPlan, ledger: Ledger, options: UpOptions): Promise<void> {
  const cgroupRoot = cgroup2Root();
  const mkCgroup = (relative: string): void => {
    const dir = path.join(cgroupRoot, relative);
    fs.mkdirSync(dir);
    ledger.add({ kind: 'cgroup', path: dir });
  };
  // Everything IPv6 below (sysctls, addresses, routes) lives inside the namespaces the ledger records, so it goes
  // when they are deleted; the host's own namespace gets no address and no route.
  const dualStack = plan.dualStack === true;
  const addNetns = async (name: string, role: 'bridge' | 'node'): Promise<void> => {
    await ip('netns', 'add', name);
    ledger.add({ kind: 'netns', name });
    // The fabric only bridges frames: it needs no IPv6 of its own.
    if (dualStack && role !== 'bridge') await enableIpv6(name, { forwarding: role === 'node' });
    await ip('-n', name, 'link', 'set', 'lo', 'up');
  };

  mkCgroup(plan.prefix);
  await addNetns(plan.fabric.netns, 'bridge');
  await ip('-n', plan.fabric.netns, 'link', 'add', plan.fabric.bridge, 'type', 'bridge');
  await ip('-n', plan.fabric.netns, 'link', 'set', plan.fabric.bridge, 'up');

  for (const node of plan.nodes) {
    await addNetns(node.netns, 'node');
    mkCgroup(node.cgroup);
    mkCgroup(node.agentCgroup);
    await ip('-n', plan.fabric.netns, 'link', 'add', node.fabricVeth, 'type', 'veth', 'peer', 'name', node.fabricPeer, 'netns', node.netns);
    await ip('-n', plan.fabric.netns, 'link', 'set', node.fabricVeth, 'master', plan.fabric.bridge, 'up');
    await ip('-n', node.netns, 'addr', 'add', node.fabricAddress, 'dev', node.fabricPeer);
    if (dualStack)
      await ip('-n', node.netns, '-6', 'addr', 'add', required(node.fabricAddress6, node.name), 'dev', node.fabricPeer, 'nodad');
    await ip('-n', node.netns, 'link', 'set', node.fabricPeer, 'up');
    // A node forwards between its pods' veths and the fabric, like a router (for IPv6: enableIpv6 above).
    await run('ip', ['netns', 'exec', node.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  }
  for (const node of plan.nodes) {
    for (const route of node.routes) await ip('-n', node.netns, 'route', 'add', route.destination, 'via', route.via);
    // Other nodes' fabric addresses are on-link (the /64 on eth0), so they can be next hops as the IPv4 ones are.
    for (const route of node.routes6 ?? []) await ip('-n', node.netns, '-6', 'route', 'add', route.destination, 'via', route.via);
  }
  options.report(`fabric ${plan.fabric.netns} with ${plan.nodes.length} nodes: ${plan.nodes.map((n) => n.netns).join(', ')}`);

  for (const pod of plan.pods) {
    const node = plan.nodes[pod.nodeIndex];
    mkCgroup(pod.cgroup);
    await createPodNetwork(node, { ...pod, nodeIndex: pod.nodeIndex, dnsDir: pod.dns.dir }, pod.dns, ledger);
  }
  options.report(`${plan.pods.length} pods, ${plan.services.length} services`);
}

/** A dual-stack plan's IPv6 field; planSandbox always sets it, so its absence means a damaged plan file. */
function required(value: string | undefined, owner: string): string {
  if (value === undefined)
    throw new SandboxStateError(`the dual-stack plan has no IPv6 address for ${owner}; bring the sandbox down and up again`);
  return value;
}

async function startAgents(
  plan: SandboxPlan,
  ledger: Ledger,
  paths: SandboxPaths,
  settings: AgentSettings,
  options: UpOptions,
): Promise<void> {
  createPinRoot(plan, ledger);
  for (const node of plan.nodes) {
    const pid = startAgent(node, paths, settings);
    ledger.add({ kind: 'process', pid, role: `agent ${node.name}` });
  }
  for (const node of plan.nodes) {
    const ready = await waitFor(() => agentReady(node.netns), AGENT_READY_TIMEOUT_MS, 100);
    if (!ready) {
      const logFile = path.join(paths.logDir, `agent-${node.name}.log`);
      const tail = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '';
      throw new SandboxAgentError(`agent on ${node.name} not ready after ${AGENT_READY_TIMEOUT_MS / 1000}s; its log ends:\n${tail}`);
    }
    options.report(`agent on ${node.name} ready (log: ${path.join(paths.logDir, `agent-${node.name}.log`)})`);
  }
}

/** The bpffs directory every node's pins go under. */
function createPinRoot(plan: SandboxPlan, ledger: Ledger): void {
  const pinRoot = path.join('/sys/fs/bpf', plan.prefix);
  fs.mkdirSync(pinRoot, { recursive: true });
  ledger.add({ kind: 'pin-dir', path: pinRoot });
}

function findNode(plan: SandboxPlan, nodeName: string): PlannedNode {
  const node = plan.nodes.find((n) => n.name === nodeName);
  if (!node) throw new SandboxStateError(`sandbox "${plan.prefix}" has no node "${nodeName}"`);
  return node;
}

/** Start (or restart) the agent of one node; returns its pid. */
function startAgent(node: PlannedNode, paths: SandboxPaths, settings: AgentSettings): number {
  const cgroupRoot = cgroup2Root();
  const argv = [
    'nsenter',
    `--net=/run/netns/${node.netns}`,
    '--',
    process.execPath,
    FERRY_BIN,
    'agent',
    '--node',
    node.name,
    '--snapshot',
    paths.snapshotFile,
    '--pin-dir',
    node.bpfPinDir,
    '--cgroup',
    path.join(cgroupRoot, node.cgroup),
    '--log-level',
    settings.logLevel,
    '--service-lb',
    '--ca-dir',
    paths.caDir,
    '--trust-domain',
    settings.trustDomain,
    ...settings.agentArgs,
  ];
  return spawnInCgroup(path.join(cgroupRoot, node.agentCgroup), argv, path.join(paths.logDir, `agent-${node.name}.log`), {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
  });
}

/** GET /healthz/ready on the agent's readiness port, from inside its node's namespace. */
export async function agentReady(nodeNetns: string): Promise<boolean> {
  try {
    const { status } = await netnsHttpGet(`/run/netns/${nodeNetns}`, '127.0.0.1', PORTS.readiness, '/healthz/ready', 3000);
    return status === 200;
  } catch (err) {
    if (err instanceof SandboxHttpError) return false;
    throw err;
  }
}

function podEnv(plan: SandboxPlan, podIndex: number, containerEnv: Record<string, string>): string[] {
  const pod = plan.pods[podIndex];
  const base: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/root',
    HOSTNAME: pod.name,
    ...containerEnv,
  };
  return Object.entries(base).map(([k, v]) => `${k}=${v}`);
}

async function startPods(plan: SandboxPlan, ledger: Ledger, paths: SandboxPaths, options: UpOptions): Promise<void> {
  const cgroupRoot = cgroup2Root();
  plan.pods.forEach((pod, index) => {
    for (const container of pod.containers) {
      const argv = [
        'ip',
        'netns',
        'exec',
        pod.netns,
        'env',
        '-i',
        ...podEnv(plan, index, container.env),
        ...container.command,
        ...container.args,
      ];
      const logFile = path.join(paths.logDir, `pod-${pod.namespace}-${pod.name}-${container.name}.log`);
      const pid = spawnInCgroup(path.join(cgroupRoot, pod.cgroup), argv, logFile, {}, container.workingDir);
      ledger.add({ kind: 'process', pid, role: `pod ${pod.namespace}/${pod.name} container ${container.name}` });
    }
  });
  // Wait for declared ports so the mesh is usable when `up` returns; a slow app is a warning.
  for (const pod of plan.pods) {
    for (const container of pod.containers) {
      for (const port of container.ports) {
        const open = await waitFor(() => portOpen(`/run/netns/${pod.netns}`, pod.ip, port.containerPort), POD_PORT_TIMEOUT_MS, 100);
        if (!open) options.report(`warning: ${pod.namespace}/${pod.name} is not listening on ${port.containerPort} yet`);
      }
    }
  }
  options.report(`pods started (logs in ${paths.logDir})`);
}

/** Processes that get SIGTERM, and a moment to finish, before the sandbox's cgroup is killed. */
const gracefulRole = (role: string): boolean =>
  role.startsWith('agent') || role === 'prometheus' || role === 'controller' || role === 'supervisor';

/**
 * Remove everything the sandbox made, by the exact names in its ledger: processes (agents and
 * Prometheus get SIGTERM and a moment to finish first), pins, veths, namespaces, DNS files, cgroups,
 * directories, the state dir. Safe to run on a half-built sandbox and to run twice.
 */
export async function sandboxDown(prefix: string, report: (line: string) => void): Promise<void> {
  requireRoot('ferry sandbox down');
  const paths = sandboxPaths(prefix);
  if (!fs.existsSync(paths.stateDir)) {
    throw new SandboxStateError(`no sandbox "${prefix}" is up (no ${paths.stateDir})`);
  }
  const entries = new Ledger(paths.ledgerFile).entries();
  const of = <K extends string>(kind: K) => entries.filter((e) => e.kind === kind) as Extract<(typeof entries)[number], { kind: K }>[];

  const cgroups = of('cgroup').map((e) => e.path);
  const processes = of('process');
  for (const p of processes) {
    if (gracefulRole(p.role) && belongsTo(p.pid, prefix)) {
      try {
        process.kill(p.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
    }
  }
  await waitFor(
    () => processes.filter((p) => gracefulRole(p.role)).every((p) => !pidAlive(p.pid) || !belongsTo(p.pid, prefix)),
    // The supervisor stops its dev cluster, which may take the API server's own grace period.
    runsOnApi(paths) ? API_STOP_TIMEOUT_MS : AGENT_STOP_TIMEOUT_MS,
  );
  if (cgroups.length > 0) {
    killCgroup(cgroups[0]);
    await waitFor(() => cgroups.every((dir) => cgroupPids(dir).length === 0), 5000);
  }
  for (const p of processes) {
    if (pidAlive(p.pid) && belongsTo(p.pid, prefix)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  report(`stopped ${processes.length} processes`);

  for (const { path: dir } of of('pin-dir')) fs.rmSync(dir, { recursive: true, force: true });
  for (const veth of of('veth')) await deleteLink(veth.netns, veth.name);
  const namespaces = of('netns')
    .map((e) => e.name)
    .reverse();
  for (const name of namespaces) {
    if (await netnsExists(name)) await ip('netns', 'del', name);
  }
  report(`removed ${namespaces.length} network namespaces`);
  for (const { path: dir } of of('etc-netns')) fs.rmSync(dir, { recursive: true, force: true });
  // Only directories inside the state dir are recorded; the check keeps a damaged ledger from reaching further.
  for (const { path: dir } of of('dir')) {
    if (dir.startsWith(`${paths.stateDir}/`)) fs.rmSync(dir, { recursive: true, force: true });
  }
  for (const dir of [...cgroups].reverse()) {
    if (!fs.existsSync(dir)) continue;
    // rmdir of a cgroup fails with EBUSY while a just-killed task is still exiting.
    await waitFor(() => {
      try {
        fs.rmdirSync(dir);
        return true;
      } catch {
        return false;
      }
    }, 5000);
  }
  fs.rmSync(paths.stateDir, { recursive: true, force: true });
  report(`sandbox "${prefix}" removed`);
}

/** Is pid one of this sandbox's processes (guards against a recycled pid)? */
function belongsTo(pid: number, prefix: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').includes(`/${prefix}/`);
  } catch {
    return false;
  }
}

/** Run a command inside a pod (its netns, its cgroup — so it is captured like the pod's own processes). */
export async function sandboxExec(prefix: string, target: string, command: string[]): Promise<number> {
  requireRoot('ferry sandbox exec');
  const plan = readPlan(prefix);
  const [namespace, name] = target.includes('/') ? target.split('/', 2) : ['default', target];
  let where: { cgroupDir: string; netns: string } | undefined;
  if (runsOnApi(sandboxPaths(prefix))) {
    const record = localPodRecord(plan, sandboxPaths(prefix), namespace, name);
    if (record) where = { cgroupDir: record.cgroupDir, netns: path.basename(record.netnsPath) };
    else throw new SandboxStateError(`sandbox "${prefix}" runs no pod ${namespace}/${name} on its nodes (see: kubectl get pods -A)`);
  } else {
    const pod = plan.pods.find((p) => p.namespace === namespace && p.name === name);
    if (!pod) {
      const known = plan.pods.map((p) => `${p.namespace}/${p.name}`).join(', ');
      throw new SandboxStateError(`sandbox "${prefix}" has no pod ${namespace}/${name} (pods: ${known})`);
    }
    where = { cgroupDir: path.join(cgroup2Root(), pod.cgroup), netns: pod.netns };
  }
  if (command.length === 0) throw new SandboxStateError('ferry sandbox exec: give a command after --');
  const { cgroupDir } = where;
  const child = spawn('/bin/sh', ['-c', CGROUP_EXEC, 'ferry-exec', cgroupDir, 'ip', 'netns', 'exec', where.netns, ...command], {
    stdio: 'inherit',
  });
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

export interface SandboxStatus {
  prefix: string;
  /** Built with `up --dual-stack`: every pod has an IPv6 address too. */
  dualStack: boolean;
  /** Runs on its API server (`up --api`): pods and Services are the API's. */
  api?: boolean;
  nodes: { name: string; netns: string; agentPid?: number; agentRunning: boolean; ready: boolean; cgroup: string }[];
  /** `ip` is the pod's IPv4 address; `ips` every address, IPv4 first (as the snapshot gives them to the agents). */
  pods: { namespace: string; name: string; node: string; ip: string; ips: string[]; meshed: boolean; netns: string; running: boolean }[];
  services: { namespace: string; name: string; vip: string; ports: string; endpoints: string[] }[];
  /** Present when the sandbox was started with --prometheus. */
  prometheus?: PrometheusStatus;
  logDir: string;
}

export async function sandboxStatus(prefix: string): Promise<SandboxStatus> {
  const plan = readPlan(prefix);
  const paths = sandboxPaths(prefix);
  const cgroupRoot = cgroup2Root();
  const nodes = [];
  for (const node of plan.nodes) {
    const pids = cgroupPids(path.join(cgroupRoot, node.agentCgroup));
    nodes.push({
      name: node.name,
      netns: node.netns,
      agentPid: pids[0],
      agentRunning: pids.length > 0,
      ready: pids.length > 0 && (await agentReady(node.netns)),
      cgroup: path.join(cgroupRoot, node.cgroup),
    });
  }
  if (runsOnApi(paths)) {
    const { pods, services } = await apiPodsAndServices(plan, paths, (dir) => cgroupPids(dir).length > 0);
    return {
      prefix,
      dualStack: isDualStack(plan, paths),
      api: true,
      nodes,
      pods,
      services,
      prometheus: await prometheusStatus(plan),
      logDir: paths.logDir,
    };
  }
  return {
    prefix,
    dualStack: isDualStack(plan, paths),
    nodes,
    pods: plan.pods.map((pod) => ({
      namespace: pod.namespace,
      name: pod.name,
      node: pod.nodeName,
      ip: pod.ip,
      ips: podIps(pod),
      meshed: pod.meshEnabled,
      netns: pod.netns,
      running: cgroupPids(path.join(cgroupRoot, pod.cgroup)).length > 0,
    })),
    services: plan.services.map((s) => ({
      namespace: s.namespace,
      name: s.name,
      vip: s.vip,
      ports: s.ports.map((p) => `${p.port}->${p.targetPort}`).join(','),
      endpoints: [...new Set(s.ports.flatMap((p) => p.endpoints.map((e) => `${e.ip}:${e.port}`)))],
    })),
    prometheus: await prometheusStatus(plan),
    logDir: paths.logDir,
  };
}

/** Stop one node's agent (SIGKILL: as if it crashed) — the sandbox's way to exercise fail-closed. */
export async function sandboxKillAgent(prefix: string, nodeName: string): Promise<void> {
  requireRoot('ferry sandbox agent kill');
  const node = findNode(readPlan(prefix), nodeName);
  const dir = path.join(cgroup2Root(), node.agentCgroup);
  // On the API the kubelet would restart a killed agent: its Pod is marked stopped first, and the kubelet kills it.
  if (runsOnApi(sandboxPaths(prefix))) await setAgentStopped(sandboxPaths(prefix), nodeName, true);
  else killCgroup(dir);
  await waitFor(() => cgroupPids(dir).length === 0, 5000);
}

/**
 * Start a node's agent again (it re-adopts its pinned programs and maps) and wait until it is ready.
 * `agentArgs`, when given, replace the extra agent arguments `up` was given, for this start only.
 * `wait: false` returns once it is started (an agent may stay unready, e.g. a pod it cannot enrol).
 */
export async function sandboxStartAgent(
  prefix: string,
  nodeName: string,
  agentArgs?: string[],
  options: { wait?: boolean } = {},
): Promise<void> {
  requireRoot('ferry sandbox agent start');
  const node = findNode(readPlan(prefix), nodeName);
  const dir = path.join(cgroup2Root(), node.agentCgroup);
  if (cgroupPids(dir).length > 0) throw new SandboxStateError(`the agent on ${nodeName} is already running`);
  const paths = sandboxPaths(prefix);
  const settings = readAgentSettings(paths);
  if (settings.api === true) {
    if (agentArgs !== undefined && agentArgs.length > 0) {
      throw new SandboxStateError('ferry sandbox agent start --agent-arg: an agent Pod keeps the arguments `up` gave it');
    }
    await setAgentStopped(paths, nodeName, false);
  } else {
    const pid = startAgent(node, paths, agentArgs ? { ...settings, agentArgs } : settings);
    new Ledger(paths.ledgerFile).add({ kind: 'process', pid, role: `agent ${nodeName}` });
  }
  if (options.wait === false) return;
  if (!(await waitFor(() => agentReady(node.netns), AGENT_READY_TIMEOUT_MS, 100))) {
    throw new SandboxAgentError(`agent on ${nodeName} not ready after ${AGENT_READY_TIMEOUT_MS / 1000}s (log: ${paths.logDir})`);
  }
}

const ROTATION_PHASE_TIMEOUT_MS = 90_000;

/**
 * `ferry sandbox ca rotate`: replace the sandbox's root without a failed request. Three phases,
 * each started only once every running agent has reported (in the CA directory's status files)
 * that it has caught up with the one before:
 *   1. a new root (and intermediate) is trusted beside the old one, which still signs;
 *   2. the new one signs; agents re-issue every certificate from it;
 *   3. the old root leaves the bundle.
 * A peer therefore always trusts the root of any certificate it can be shown.
 */
export async function sandboxRotateCa(prefix: string, report: (line: string) => void): Promise<void> {
  requireRoot('ferry sandbox ca rotate');
  const plan = readPlan(prefix);
  const paths = sandboxPaths(prefix);
  const running = plan.nodes.filter((n) => cgroupPids(path.join(cgroup2Root(), n.agentCgroup)).length > 0);
  if (runsOnApi(paths)) {
    await rotateCaOnApi(
      plan,
      paths,
      running.map((n) => n.name),
      report,
    );
    return;
  }
  const ca = await CaDirectory.open(paths.caDir);
  const waitForAgents = async (what: string, caughtUp: (s: AgentTrustStatus) => boolean): Promise<void> => {
    for (const node of running) {
      const ok = await waitFor(
        () => {
          const status = readAgentTrustStatus(paths.caDir, node.name);
          return status !== undefined && caughtUp(status);
        },
        ROTATION_PHASE_TIMEOUT_MS,
        200,
      );
      if (!ok) {
        throw new SandboxAgentError(
          `ca rotate: the agent on ${node.name} did not ${what} within ${ROTATION_PHASE_TIMEOUT_MS / 1000}s; ` +
            `the rotation stopped here and can be continued by running the command again`,
        );
      }
    }
  };
  let metadata = await ca.metadata();
  if (metadata.phase === 'steady') {
    metadata = await ca.beginRotation();
    report(
      `phase 1/3: trusting ${metadata.roots.at(-1)} beside ${metadata.roots.slice(0, -1).join(', ')} (generation ${metadata.generation})`,
    );
    const generation = metadata.generation;
    await waitForAgents('load the new trust bundle', (s) => s.generation >= generation);
  }
  if (metadata.phase === 'rotating') {
    metadata = await ca.switchIssuer();
    report(`phase 2/3: ${metadata.issuer} signs now; agents re-issue their certificates`);
  }
  const issuer = issuerNameOf(readCaIssuer(paths.caDir).issuer.certPem);
  const switched = metadata.generation;
  await waitForAgents(
    're-issue its certificates from the new issuer',
    (s) => s.generation >= switched && s.certificates.every((c) => c.issuer === issuer),
  );
  metadata = await ca.finishRotation();
  report(`phase 3/3: trust bundle is ${metadata.roots.join(', ')} (generation ${metadata.generation})`);
  const finished = metadata.generation;
  await waitForAgents('drop the old root', (s) => s.generation >= finished);
  report(`root rotation done; ${running.length} agent(s) caught up`);
}

type PolicyChange = 'apply' | 'delete';

/** The policy objects of applied files, refused when the files hold anything a running sandbox cannot change. */
async function policyFiles(plan: SandboxPlan, files: string[], verb: PolicyChange): Promise<SandboxManifest> {
  const manifest = await loadManifests(files, {
    namespaces: plan.namespaces ?? [],
    pods: plan.pods.map((p) => ({ namespace: p.namespace, labels: p.labels })),
  });
  const others = [
    ...manifest.pods.map((p) => `Pod ${p.namespace}/${p.name}`),
    ...manifest.services.map((x) => `Service ${x.namespace}/${x.name}`),
    ...manifest.namespaces.filter((n) => !(plan.namespaces ?? []).some((m) => m.name === n.name)).map((n) => `Namespace ${n.name}`),
  ];
  if (others.length > 0) {
    throw new SandboxStateError(
      `ferry sandbox ${verb}: only AuthorizationPolicy and PeerAuthentication objects change while a sandbox ` +
        `is up; ${files.join(', ')} also has ${others.join(', ')} (for those: ferry sandbox down, then up)`,
    );
  }
  return manifest;
}

const policyKey = (p: { namespace: string; name: string }): string => `${p.namespace}/${p.name}`;

/**
 * `ferry sandbox apply|delete -f FILE…`: create, replace or remove policy objects of a running
 * sandbox. The agents follow the snapshot file, so the change reaches them within their poll
 * interval; returns the snapshot revision that carries it.
 */
export async function sandboxChangePolicies(
  prefix: string,
  files: string[],
  verb: PolicyChange,
  report: (line: string) => void,
): Promise<number> {
  requireRoot(`ferry sandbox ${verb}`);
  const plan = readPlan(prefix);
  const paths = sandboxPaths(prefix);
  if (runsOnApi(paths)) {
    // Any object, as kubectl takes it: the controller and the kubelets follow the API.
    await kubectlFiles(paths, verb, files, report);
    return 0;
  }
  const manifest = await policyFiles(plan, files, verb);
  for (const warning of manifest.warnings) report(`warning: ${warning}`);
  const snapshot = readSnapshot(paths.snapshotFile);
  const change = <T extends { namespace: string; name: string }>(kind: string, current: T[], given: T[]): T[] => {
    const byKey = new Map(current.map((p) => [policyKey(p), p]));
    for (const policy of given) {
      const key = policyKey(policy);
      if (verb === 'apply') {
        report(`${kind} ${key} ${byKey.has(key) ? 'configured' : 'created'}`);
        byKey.set(key, policy);
      } else {
        if (!byKey.has(key))
          throw new SandboxStateError(`ferry sandbox delete: ${kind} ${key} not found in sandbox "${prefix}"; nothing was deleted`);
        byKey.delete(key);
        report(`${kind} ${key} deleted`);
      }
    }
    return [...byKey.values()];
  };
  const authorizationPolicies = change('AuthorizationPolicy', snapshot.authorizationPolicies ?? [], manifest.authorizationPolicies);
  const peerAuthentications = change('PeerAuthentication', snapshot.peerAuthentications ?? [], manifest.peerAuthentications);
  const revision = snapshot.revision + 1;
  writeSnapshot(paths.snapshotFile, { ...snapshot, revision, authorizationPolicies, peerAuthentications });
  fs.writeFileSync(paths.planFile, JSON.stringify({ ...plan, authorizationPolicies, peerAuthentications }, null, 2));
  report(`snapshot revision ${revision} written; the agents apply it within a second`);
  return revision;
}

export { sleep };

/** A sandbox built with `up --api`, or a clear error naming the command that needs one. */
function apiSandbox(prefix: string, what: string): { plan: SandboxPlan; paths: SandboxPaths } {
  const plan = readPlan(prefix);
  const paths = sandboxPaths(prefix);
  if (!runsOnApi(paths)) throw new SandboxStateError(`${what}: sandbox "${prefix}" was built without --api and has no API server`);
  return { plan, paths };
}

/** `ferry sandbox kubeconfig`: the admin kubeconfig of the sandbox's API server. */
export function sandboxKubeconfig(prefix: string): string {
  return readApiEndpoint(apiSandbox(prefix, 'ferry sandbox kubeconfig').paths).kubeconfig;
}

/** `ferry sandbox kubectl ARGS…`: kubectl of the dev cluster's release against the sandbox's API server. */
export async function sandboxKubectlCommand(prefix: string, args: string[]): Promise<number> {
  const result = await sandboxKubectl(apiSandbox(prefix, 'ferry sandbox kubectl').paths, args);
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  return result.code;
}

/** `ferry sandbox controller kill`: SIGKILL, as if it crashed; agents keep serving with what they have. */
export async function sandboxKillController(prefix: string): Promise<void> {
  requireRoot('ferry sandbox controller kill');
  const { plan } = apiSandbox(prefix, 'ferry sandbox controller kill');
  const dir = path.join(cgroup2Root(), plan.prefix, 'controller');
  killCgroup(dir);
  await waitFor(() => cgroupPids(dir).length === 0, 5000);
}

/** `ferry sandbox controller start`: the controller again, on the same socket; returns once it serves. */
export async function sandboxStartController(prefix: string): Promise<void> {
  requireRoot('ferry sandbox controller start');
  const { plan, paths } = apiSandbox(prefix, 'ferry sandbox controller start');
  const dir = path.join(cgroup2Root(), plan.prefix, 'controller');
  if (cgroupPids(dir).length > 0) throw new SandboxStateError('the controller is already running');
  startController(plan, paths, readAgentSettings(paths).logLevel, new Ledger(paths.ledgerFile));
  const socket = apiPaths(paths).controllerSocket;
  if (!(await waitFor(() => fs.existsSync(socket), 60_000, 100))) {
    throw new SandboxAgentError(`the controller did not open ${socket} within 60 s (log: ${path.join(paths.logDir, 'controller.log')})`);
  }
}
