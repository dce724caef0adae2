// `ferry sandbox up|down|exec|status`: build a mesh out of network namespaces on this machine,
// run one agent per node and the pods' processes, and remove all of it by exact name.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../native';
import { PORTS } from '../config';
import { DEFAULT_TRUST_DOMAIN } from '../identity';
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
  startAgentOnApi,
  upgradeAgentOnApi,
  startApiSandbox,
} from './api-sandbox';
import { Ledger } from './ledger';
import { loadManifests } from './manifest';
import { netnsHttpGet } from './netns-http';
import { planPrometheus, planSandbox, type PlannedNode, type SandboxPlan } from './plan';
import { assertPrometheusInstalled, prometheusStatus, startPrometheus, type PrometheusStatus } from './prometheus';
import { SandboxAgentError, SandboxHttpError, SandboxStateError } from './runtime-errors';
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
  waitFor,
} from './system';

const AGENT_READY_TIMEOUT_MS = 30_000;
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
}

/** Kept in the state dir: how `up` built the sandbox and started its agents, for the commands that come later. */
interface AgentSettings {
  logLevel: string;
  agentArgs: string[];
  trustDomain: string;
  /** `up --dual-stack`. */
  dualStack?: boolean;
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
  if (fs.existsSync(paths.stateDir)) {
    throw new SandboxStateError(`sandbox "${options.prefix}" is already up (state in ${paths.stateDir}); run: ferry sandbox down`);
  }
  const names = [plan.fabric.netns, ...plan.nodes.map((n) => n.netns), ...(options.prometheus ? [planPrometheus(plan).netns] : [])];
  for (const name of names) {
    if (await netnsExists(name)) {
      throw new SandboxStateError(
        `network namespace ${name} already exists but no sandbox "${options.prefix}" is recorded; ` +
          `remove it (ip netns del ${name}) or use another --prefix`,
      );
    }
  }
  fs.mkdirSync(paths.logDir, { recursive: true });
  fs.writeFileSync(paths.planFile, JSON.stringify(plan, null, 2));
  const settings: AgentSettings = {
    logLevel: options.logLevel ?? 'info',
    agentArgs: options.agentArgs ?? [],
    trustDomain: DEFAULT_TRUST_DOMAIN,
    dualStack: plan.dualStack === true,
  };
  fs.writeFileSync(paths.agentSettingsFile, JSON.stringify(settings, null, 2));
  const ledger = new Ledger(paths.ledgerFile);
  try {
    await buildNetwork(plan, ledger, options);
    createPinRoot(plan, ledger);
    await startApiSandbox(plan, files, ledger, paths, {
      logLevel: settings.logLevel,
      agentArgs: settings.agentArgs,
      report: options.report,
    });
    if (options.prometheus) await startPrometheus(plan, ledger, paths, await agentPodsOnApi(paths), options.report);
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
}

/** A dual-stack plan's IPv6 field; planSandbox always sets it, so its absence means a damaged plan file. */
function required(value: string | undefined, owner: string): string {
  if (value === undefined)
    throw new SandboxStateError(`the dual-stack plan has no IPv6 address for ${owner}; bring the sandbox down and up again`);
  return value;
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
    API_STOP_TIMEOUT_MS,
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
  const record = localPodRecord(plan, sandboxPaths(prefix), namespace, name);
  if (!record) throw new SandboxStateError(`sandbox "${prefix}" runs no pod ${namespace}/${name} on its nodes (see: kubectl get pods -A)`);
  if (command.length === 0) throw new SandboxStateError('ferry sandbox exec: give a command after --');
  const netns = path.basename(record.netnsPath);
  const child = spawn('/bin/sh', ['-c', CGROUP_EXEC, 'ferry-exec', record.cgroupDir, 'ip', 'netns', 'exec', netns, ...command], {
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
  nodes: { name: string; netns: string; agentPid?: number; agentRunning: boolean; ready: boolean; cgroup: string }[];
  /** `ip` is the pod's IPv4 address; `ips` every address, IPv4 first (as the Pod's status lists them). */
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
  const { pods, services } = await apiPodsAndServices(plan, paths, (dir) => cgroupPids(dir).length > 0);
  return {
    prefix,
    dualStack: isDualStack(plan, paths),
    nodes,
    pods,
    services,
    prometheus: await prometheusStatus(plan),
    logDir: paths.logDir,
  };
}

/** Stop one node's agent (SIGKILL: as if it crashed) — the sandbox's way to exercise fail-closed. */
export async function sandboxKillAgent(prefix: string, nodeName: string): Promise<void> {
  requireRoot('ferry sandbox agent kill');
  const node = findNode(readPlan(prefix), nodeName);
  const dir = path.join(cgroup2Root(), node.agentCgroup);
  // The kubelet would restart a killed agent: its Pod is marked stopped, and the kubelet kills it.
  await setAgentStopped(sandboxPaths(prefix), nodeName, true);
  await waitFor(() => cgroupPids(dir).length === 0, 5000);
}

/**
 * Start a node's agent again (it re-adopts its pinned programs and maps) and wait until it is ready.
 * `agentArgs`, when given, replace the extra agent arguments `up` was given, for this start only: the agent Pod
 * is made anew with them, and a later start without them makes it anew with `up`'s.
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
  await startAgentOnApi(paths, node, settings.logLevel, agentArgs !== undefined && agentArgs.length > 0 ? agentArgs : settings.agentArgs);
  if (options.wait === false) return;
  if (!(await waitFor(() => agentReady(node.netns), AGENT_READY_TIMEOUT_MS, 100))) {
    throw new SandboxAgentError(`agent on ${nodeName} not ready after ${AGENT_READY_TIMEOUT_MS / 1000}s (log: ${paths.logDir})`);
  }
}

/**
 * `ferry sandbox upgrade NODE`: a new agent takes the node over from the running one without refusing a
 * connection (see upgradeAgentOnApi), with `agentArgs` when given, else `up`'s. Returns the new agent Pod's name.
 */
export async function sandboxUpgradeAgent(
  prefix: string,
  nodeName: string,
  agentArgs: string[] | undefined,
  report: (line: string) => void,
): Promise<string> {
  requireRoot('ferry sandbox upgrade');
  const node = findNode(readPlan(prefix), nodeName);
  const paths = sandboxPaths(prefix);
  const settings = readAgentSettings(paths);
  const args = agentArgs !== undefined && agentArgs.length > 0 ? agentArgs : settings.agentArgs;
  return upgradeAgentOnApi(paths, node, settings.logLevel, args, report);
}

/**
 * `ferry sandbox ca rotate`: replace the mesh's root without a failed request, through the API: the three phases
 * of the CA Secret (rotateCa), each started only once every running agent has caught up with the one before.
 */
export async function sandboxRotateCa(prefix: string, report: (line: string) => void): Promise<void> {
  requireRoot('ferry sandbox ca rotate');
  const plan = readPlan(prefix);
  const paths = sandboxPaths(prefix);
  const running = plan.nodes.filter((n) => cgroupPids(path.join(cgroup2Root(), n.agentCgroup)).length > 0);
  await rotateCaOnApi(
    plan,
    paths,
    running.map((n) => n.name),
    report,
  );
}

/** `ferry sandbox apply|delete -f FILE…`: any object, as kubectl takes it; the controller and the kubelets follow the API. */
export async function sandboxChangeObjects(
  prefix: string,
  files: string[],
  verb: 'apply' | 'delete',
  report: (line: string) => void,
): Promise<void> {
  requireRoot(`ferry sandbox ${verb}`);
  readPlan(prefix);
  await kubectlFiles(sandboxPaths(prefix), verb, files, report);
}

export { sleep };

/** A sandbox that is up (readPlan's error names the prefix otherwise). */
function apiSandbox(prefix: string): { plan: SandboxPlan; paths: SandboxPaths } {
  return { plan: readPlan(prefix), paths: sandboxPaths(prefix) };
}

/** `ferry sandbox kubeconfig`: the admin kubeconfig of the sandbox's API server. */
export function sandboxKubeconfig(prefix: string): string {
  return readApiEndpoint(apiSandbox(prefix).paths).kubeconfig;
}

/** `ferry sandbox kubectl ARGS…`: kubectl of the dev cluster's release against the sandbox's API server. */
export async function sandboxKubectlCommand(prefix: string, args: string[]): Promise<number> {
  const result = await sandboxKubectl(apiSandbox(prefix).paths, args);
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  return result.code;
}

/** `ferry sandbox controller kill`: SIGKILL, as if it crashed; agents keep serving with what they have. */
export async function sandboxKillController(prefix: string): Promise<void> {
  requireRoot('ferry sandbox controller kill');
  const { plan } = apiSandbox(prefix);
  const dir = path.join(cgroup2Root(), plan.prefix, 'controller');
  killCgroup(dir);
  await waitFor(() => cgroupPids(dir).length === 0, 5000);
}

/** `ferry sandbox controller start`: the controller again, on the same socket; returns once it serves. */
export async function sandboxStartController(prefix: string): Promise<void> {
  requireRoot('ferry sandbox controller start');
  const { plan, paths } = apiSandbox(prefix);
  const dir = path.join(cgroup2Root(), plan.prefix, 'controller');
  if (cgroupPids(dir).length > 0) throw new SandboxStateError('the controller is already running');
  startController(plan, paths, readAgentSettings(paths).logLevel, new Ledger(paths.ledgerFile));
  const socket = apiPaths(paths).controllerSocket;
  if (!(await waitFor(() => fs.existsSync(socket), 60_000, 100))) {
    throw new SandboxAgentError(`the controller did not open ${socket} within 60 s (log: ${path.join(paths.logDir, 'controller.log')})`);
  }
}
