// The sandbox's kubelet and container runtime for one node: registers the Node, and for every Pod bound to it
// builds the network namespace, cgroup and veth, runs the containers' commands, writes the Pod's status
// (addresses, phase, Ready) through the status subresource, and tears it all down when the Pod is deleted.
// It also writes, for the node's agent, which network namespace belongs to which pod UID — a root-only file on
// the node, never a field of the API that a pod's owner could point at another namespace.
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CoreV1Api, type KubeConfig, type V1Container, type V1Pod, type V1PodCondition, type V1Service } from '@kubernetes/client-node';
import { WatchedResource } from '../k8s';
import type { Logger } from '../telemetry';
import { Ledger } from './ledger';
import { containerEnvironment } from './container-env';
import { SandboxStateError } from './runtime-errors';
import { netnsHttpGet, portOpen } from './netns-http';
import {
  POD_HOST_OFFSET,
  MAX_PODS_PER_NODE,
  hostsFile,
  placePod,
  resolvConf,
  type PlannedNode,
  type PodNetworkPlan,
  type SandboxPlan,
} from './plan';
import { createPodNetwork, removePodNetwork, writePodDns } from './pod-network';
import type { SandboxPaths } from './state-dir';
import { CGROUP_EXEC, cgroup2Root, cgroupPids, killCgroup, pidAlive, waitFor } from './system';

/** `kubectl annotate pod … sandbox.ferry.dev/stopped=true`: the kubelet stops the pod's containers and keeps them stopped. */
export const STOPPED_ANNOTATION = 'sandbox.ferry.dev/stopped';
/** The only namespace whose pods may use the node's network (the sandbox's own agents). */
export const HOST_NETWORK_NAMESPACE = 'ferry-system';
const RESTART_BACKOFF_START_MS = 500;
const RESTART_BACKOFF_CAP_MS = 10_000;
const TERMINATION_GRACE_CAP_MS = 30_000;
const PROBE_INTERVAL_MS = 200;
const TOKEN_REFRESH_FRACTION = 0.8;
const NODE_HEARTBEAT_MS = 10_000;

/** What the node's agent reads to find a pod's network namespace (`<podsDir>/<uid>.json`). */
export interface LocalPodRecord {
  uid: string;
  namespace: string;
  name: string;
  netnsPath: string;
  /** The pod's cgroup (absolute), for `sandbox exec`. */
  cgroupDir: string;
}

export function kubeletPaths(paths: SandboxPaths, nodeName: string): { nodeDir: string; podsDir: string; volumesDir: string } {
  const nodeDir = path.join(paths.stateDir, 'nodes', nodeName);
  return { nodeDir, podsDir: path.join(nodeDir, 'pods'), volumesDir: path.join(nodeDir, 'volumes') };
}

interface RunningContainer {
  spec: V1Container;
  /** Its `env`, resolved when the pod is set up (containerEnvironment). */
  env: Record<string, string>;
  child?: ChildProcess;
  pid?: number;
  restarts: number;
  exitCode?: number;
  startedAt?: Date;
  backoffMs: number;
  timer?: NodeJS.Timeout;
}

interface LocalPod {
  uid: string;
  namespace: string;
  name: string;
  hostNetwork: boolean;
  network?: PodNetworkPlan;
  host?: number;
  cgroupDir: string;
  podDir: string;
  containers: Map<string, RunningContainer>;
  ready: boolean;
  stopped: boolean;
  terminating: boolean;
  tokenTimers: NodeJS.Timeout[];
  startTime: Date;
  failed?: string;
}

export interface KubeletOptions {
  plan: SandboxPlan;
  nodeName: string;
  kubeConfig: KubeConfig;
  paths: SandboxPaths;
  log: Logger;
}

export class SandboxKubelet {
  readonly node: PlannedNode;
  readonly #plan: SandboxPlan;
  readonly #core: CoreV1Api;
  readonly #log: Logger;
  readonly #paths: SandboxPaths;
  readonly #ledger: Ledger;
  readonly #pods: WatchedResource<V1Pod>;
  readonly #services: WatchedResource<V1Service>;
  readonly #local = new Map<string, LocalPod>();
  readonly #hosts = new Set<number>();
  readonly #dirs: ReturnType<typeof kubeletPaths>;
  /** Pod work runs one step at a time, in arrival order: ip(8) changes to one node must not interleave. */
  #queue: Promise<void> = Promise.resolve();
  #stopping = false;
  #probeTimer: NodeJS.Timeout | undefined;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #dnsTimer: NodeJS.Timeout | undefined;

  constructor(options: KubeletOptions) {
    const node = options.plan.nodes.find((n) => n.name === options.nodeName);
    if (node === undefined) throw new SandboxStateError(`sandbox "${options.plan.prefix}" has no node ${options.nodeName}`);
    this.node = node;
    this.#plan = options.plan;
    this.#core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.#log = options.log.child({ component: 'kubelet', node: node.name });
    this.#paths = options.paths;
    this.#ledger = new Ledger(options.paths.ledgerFile);
    this.#dirs = kubeletPaths(options.paths, node.name);
    const fieldSelector = `spec.nodeName=${node.name}`;
    this.#pods = new WatchedResource<V1Pod>({
      kubeConfig: options.kubeConfig,
      path: '/api/v1/pods',
      fieldSelector,
      list: () => this.#core.listPodForAllNamespaces({ fieldSelector }),
      log: this.#log,
    });
    this.#services = new WatchedResource<V1Service>({
      kubeConfig: options.kubeConfig,
      path: '/api/v1/services',
      list: () => this.#core.listServiceForAllNamespaces(),
      log: this.#log,
    });
    const enqueue = (pod: V1Pod): void => this.#enqueue(() => this.#sync(pod));
    this.#pods.on('add', enqueue);
    this.#pods.on('update', enqueue);
    this.#pods.on('delete', (pod) => this.#enqueue(() => this.#teardown(pod.metadata?.uid ?? '', 'deleted', pod)));
    const servicesChanged = (): void => this.#scheduleDns();
    for (const event of ['add', 'update', 'delete'] as const) this.#services.on(event, servicesChanged);
  }

  /** Registers the Node (Ready, with its pod CIDRs and fabric address) and starts following its pods. */
  async start(): Promise<void> {
    for (const dir of [this.#dirs.podsDir, this.#dirs.volumesDir]) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    await this.#registerNode();
    this.#services.start();
    await this.#services.synced;
    this.#pods.start();
    await this.#pods.synced;
    this.#probeTimer = setInterval(() => this.#enqueue(() => this.#probeAll()), PROBE_INTERVAL_MS);
    this.#heartbeatTimer = setInterval(() => {
      this.#postNodeStatus().catch((err: unknown) => this.#log.warn({ err }, 'node heartbeat failed'));
    }, NODE_HEARTBEAT_MS);
  }

  /** Stops following the API; running pods stay (the sandbox's `down` removes them). */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#probeTimer);
    clearInterval(this.#heartbeatTimer);
    clearTimeout(this.#dnsTimer);
    for (const pod of this.#local.values()) for (const timer of pod.tokenTimers) clearTimeout(timer);
    for (const pod of this.#local.values()) for (const c of pod.containers.values()) clearTimeout(c.timer);
    await Promise.all([this.#pods.stop(), this.#services.stop()]);
    await this.#queue;
  }

  localPods(): LocalPodRecord[] {
    return [...this.#local.values()].flatMap((p) =>
      p.network
        ? [{ uid: p.uid, namespace: p.namespace, name: p.name, netnsPath: `/run/netns/${p.network.netns}`, cgroupDir: p.cgroupDir }]
        : [],
    );
  }

  #enqueue(work: () => Promise<void>): void {
    this.#queue = this.#queue.then(work).catch((err: unknown) => this.#log.error({ err }, 'pod work failed'));
  }

  async #registerNode(): Promise<void> {
    const node = this.node;
    const body = {
      metadata: {
        name: node.name,
        labels: {
          'kubernetes.io/hostname': node.name,
          'kubernetes.io/os': 'linux',
          'kubernetes.io/arch': process.arch === 'x64' ? 'amd64' : process.arch,
        },
      },
      spec: { podCIDR: node.podCidr, podCIDRs: [node.podCidr, ...(node.podCidr6 ? [node.podCidr6] : [])] },
    };
    try {
      await this.#core.createNode({ body });
    } catch (err) {
      if (statusOf(err) !== 409) throw err;
    }
    await this.#postNodeStatus();
  }

  /**
   * The Node's status with a fresh Ready heartbeat. The node-lifecycle controller marks a node whose heartbeat is
   * older than its grace period NotReady and then evicts its pods, so this runs every NODE_HEARTBEAT_MS.
   * Controllers update the Node too: a conflicting write reads again.
   */
  async #postNodeStatus(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#replaceNodeStatus();
        return;
      } catch (err) {
        if (statusOf(err) !== 409 || attempt >= 10) throw err;
      }
    }
  }

  async #replaceNodeStatus(): Promise<void> {
    const node = this.node;
    const current = await this.#core.readNode({ name: node.name });
    const now = new Date();
    const ready = current.status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'True');
    const readySince = ready?.lastTransitionTime;
    const capacity = { pods: String(MAX_PODS_PER_NODE), cpu: '2', memory: '4Gi' };
    current.status = {
      ...current.status,
      capacity,
      allocatable: capacity,
      addresses: [
        { type: 'InternalIP', address: node.fabricIp },
        ...(node.fabricIp6 ? [{ type: 'InternalIP', address: node.fabricIp6 }] : []),
        { type: 'Hostname', address: node.name },
      ],
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'KubeletReady',
          message: 'sandbox kubelet is posting ready status',
          lastHeartbeatTime: now,
          lastTransitionTime: readySince ?? now,
        },
      ],
      nodeInfo: {
        architecture: process.arch,
        bootID: '',
        containerRuntimeVersion: 'ferry-sandbox://1',
        kernelVersion: '',
        kubeProxyVersion: '',
        kubeletVersion: 'ferry-sandbox',
        machineID: '',
        operatingSystem: 'linux',
        osImage: 'ferry sandbox',
        systemUUID: '',
      },
    };
    await this.#core.replaceNodeStatus({ name: node.name, body: current });
  }

  // --- One pod ------------------------------------------------------------------------------------------------

  async #sync(pod: V1Pod): Promise<void> {
    if (this.#stopping) return;
    const uid = pod.metadata?.uid ?? '';
    const local = this.#local.get(uid);
    if (pod.metadata?.deletionTimestamp) {
      await this.#teardown(uid, 'terminating', pod);
      return;
    }
    if (local === undefined) {
      await this.#setup(pod);
      return;
    }
    const stopped = pod.metadata?.annotations?.[STOPPED_ANNOTATION] === 'true';
    if (stopped !== local.stopped) {
      local.stopped = stopped;
      if (stopped) await this.#stopContainers(local, 'SIGKILL', 0);
      else for (const container of local.containers.values()) this.#startContainer(local, container);
      await this.#writeStatus(local);
    }
  }

  async #setup(pod: V1Pod): Promise<void> {
    const metadata = pod.metadata ?? {};
    const uid = metadata.uid ?? '';
    const namespace = metadata.namespace ?? 'default';
    const name = metadata.name ?? '';
    const hostNetwork = pod.spec?.hostNetwork === true;
    const podDir = path.join(this.#dirs.volumesDir, uid);
    const cgroupRelative = hostNetwork ? `${this.node.agentCgroup}` : `${this.node.cgroup}/pod-${uid}`;
    const local: LocalPod = {
      uid,
      namespace,
      name,
      hostNetwork,
      cgroupDir: path.join(cgroup2Root(), cgroupRelative),
      podDir,
      containers: new Map(
        (pod.spec?.containers ?? []).map((c) => [c.name, { spec: c, env: {}, restarts: 0, backoffMs: RESTART_BACKOFF_START_MS }]),
      ),
      ready: false,
      stopped: metadata.annotations?.[STOPPED_ANNOTATION] === 'true',
      terminating: false,
      tokenTimers: [],
      startTime: new Date(),
    };
    this.#local.set(uid, local);
    if (hostNetwork && namespace !== HOST_NETWORK_NAMESPACE) {
      local.failed = `hostNetwork pods are only run in namespace ${HOST_NETWORK_NAMESPACE} (the sandbox's own agents)`;
      this.#log.warn({ pod: `${namespace}/${name}` }, local.failed);
      await this.#writeStatus(local);
      return;
    }
    try {
      fs.mkdirSync(podDir, { recursive: true, mode: 0o700 });
      if (!fs.existsSync(local.cgroupDir)) {
        fs.mkdirSync(local.cgroupDir);
        this.#ledger.add({ kind: 'cgroup', path: local.cgroupDir });
      }
      if (!hostNetwork) {
        const host = this.#allocateHost();
        local.host = host;
        local.network = placePod(this.#plan.prefix, this.node, { namespace, name }, host, this.#plan.dualStack === true);
        this.#resolveEnvironments(local, pod);
        await createPodNetwork(this.node, local.network, this.#dns(local), this.#ledger);
        const record: LocalPodRecord = { uid, namespace, name, netnsPath: `/run/netns/${local.network.netns}`, cgroupDir: local.cgroupDir };
        writeFileAtomic(path.join(this.#dirs.podsDir, `${uid}.json`), JSON.stringify(record));
      }
      if (hostNetwork) this.#resolveEnvironments(local, pod);
      await this.#projectTokens(local, pod);
      if (!local.stopped) for (const container of local.containers.values()) this.#startContainer(local, container);
      this.#log.info({ pod: `${namespace}/${name}`, uid, ip: local.network?.ip }, 'pod started');
    } catch (err) {
      local.failed = (err as Error).message;
      this.#log.error({ err, pod: `${namespace}/${name}` }, 'pod could not be started');
    }
    await this.#writeStatus(local);
  }

  /**
   * Stop the pod's processes (SIGTERM, then SIGKILL after its grace period, at most 30 s here), remove its
   * network, then finish the deletion in the API (grace 0, preconditioned on the UID, as the kubelet does). The
   * grace period runs beside the kubelet's other work, as a kubelet's pod workers do: one pod slow to stop holds
   * up no other. A pod deleted from the API at once (`kubectl delete --force`) still gets its grace period: its
   * processes run until then, and the mesh no longer knows the pod.
   */
  async #teardown(uid: string, why: 'deleted' | 'terminating', pod?: V1Pod): Promise<void> {
    const local = this.#local.get(uid);
    if (local !== undefined && !local.terminating) {
      local.terminating = true;
      void this.#terminate(local, why, pod).catch((err: unknown) =>
        this.#log.error({ err, pod: `${local.namespace}/${local.name}` }, 'pod could not be removed'),
      );
      return;
    }
    if (local === undefined) await this.#finishDeletion(uid, why, pod);
  }

  async #terminate(local: LocalPod, why: 'deleted' | 'terminating', pod?: V1Pod): Promise<void> {
    for (const timer of local.tokenTimers) clearTimeout(timer);
    const grace = Math.min((pod?.spec?.terminationGracePeriodSeconds ?? 30) * 1000, TERMINATION_GRACE_CAP_MS);
    await this.#stopContainers(local, 'SIGTERM', grace);
    fs.rmSync(path.join(this.#dirs.podsDir, `${local.uid}.json`), { force: true });
    if (local.network) await removePodNetwork(local.network);
    if (!local.hostNetwork) {
      await waitFor(() => {
        try {
          fs.rmdirSync(local.cgroupDir);
          return true;
        } catch (err) {
          return (err as NodeJS.ErrnoException).code === 'ENOENT';
        }
      }, 5000);
    }
    fs.rmSync(local.podDir, { recursive: true, force: true });
    if (local.host !== undefined) this.#hosts.delete(local.host);
    this.#local.delete(local.uid);
    this.#log.info({ pod: `${local.namespace}/${local.name}`, uid: local.uid, why }, 'pod removed');
    await this.#finishDeletion(local.uid, why, pod);
  }

  async #finishDeletion(uid: string, why: 'deleted' | 'terminating', pod?: V1Pod): Promise<void> {
    if (why !== 'terminating' || !pod?.metadata?.name || this.#stopping) return;
    try {
      await this.#core.deleteNamespacedPod({
        name: pod.metadata.name,
        namespace: pod.metadata.namespace ?? 'default',
        gracePeriodSeconds: 0,
        body: { gracePeriodSeconds: 0, preconditions: { uid } },
      });
    } catch (err) {
      if (statusOf(err) !== 404 && statusOf(err) !== 409) throw err;
    }
  }

  #allocateHost(): number {
    for (let host = POD_HOST_OFFSET; host < POD_HOST_OFFSET + MAX_PODS_PER_NODE; host++) {
      if (!this.#hosts.has(host)) {
        this.#hosts.add(host);
        return host;
      }
    }
    throw new SandboxStateError(`node ${this.node.name} has no free pod address left in ${this.node.podCidr}`);
  }

  // --- Containers ---------------------------------------------------------------------------------------------

  /** Every container's environment from the pod, before anything runs: a variable it cannot give fails the pod. */
  #resolveEnvironments(local: LocalPod, pod: V1Pod): void {
    const podIps = local.network
      ? [local.network.ip, ...(local.network.ip6 !== undefined ? [local.network.ip6] : [])]
      : [this.node.fabricIp, ...(this.node.fabricIp6 !== undefined ? [this.node.fabricIp6] : [])];
    for (const container of local.containers.values()) {
      container.env = containerEnvironment(pod, container.spec, { podIps, hostIp: this.node.fabricIp });
    }
  }

  #startContainer(local: LocalPod, container: RunningContainer): void {
    if (local.terminating || local.stopped || this.#stopping || container.pid !== undefined) return;
    const spec = container.spec;
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: '/root',
      HOSTNAME: local.name,
      FERRY_POD_DIR: local.podDir,
    };
    Object.assign(env, container.env);
    // Kubernetes expands $(VAR) in command and args from the container's environment.
    const expand = (word: string): string => word.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, name: string) => env[name] ?? all);
    const argv = [...(spec.command ?? []), ...(spec.args ?? [])].map(expand);
    if (argv.length === 0) {
      container.exitCode = 127;
      return;
    }
    // A pod gets `ip netns exec`, which also bind-mounts its /etc/netns DNS files over /etc. A host-network pod (an
    // agent) gets only the node's network: `ip netns exec` would remount /sys, and with it bpffs and cgroup2.
    const enter = local.hostNetwork
      ? ['nsenter', `--net=/run/netns/${this.node.netns}`, '--']
      : ['ip', 'netns', 'exec', local.network?.netns ?? ''];
    const prefixArgv = [...enter, 'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
    const logFile = path.join(this.#paths.logDir, `pod-${local.namespace}-${local.name}-${spec.name}.log`);
    const out = fs.openSync(logFile, 'a');
    const child = spawn('/bin/sh', ['-c', CGROUP_EXEC, 'ferry-kubelet', local.cgroupDir, ...prefixArgv, ...argv], {
      detached: true,
      stdio: ['ignore', out, out],
      env: {},
      cwd: spec.workingDir,
    });
    fs.closeSync(out);
    container.child = child;
    container.pid = child.pid;
    container.startedAt = new Date();
    if (child.pid !== undefined)
      this.#ledger.add({ kind: 'process', pid: child.pid, role: `pod ${local.namespace}/${local.name} container ${spec.name}` });
    child.on('error', () => undefined);
    child.on('exit', (code, signal) => {
      container.child = undefined;
      container.pid = undefined;
      container.exitCode = code ?? (signal ? 128 : 1);
      if (local.terminating || this.#stopping) return;
      this.#log.info({ pod: `${local.namespace}/${local.name}`, container: spec.name, code, signal }, 'container exited');
      local.ready = false;
      this.#enqueue(() => this.#writeStatus(local));
      if (local.stopped) return;
      container.restarts++;
      const delay = container.backoffMs;
      container.backoffMs = Math.min(container.backoffMs * 2, RESTART_BACKOFF_CAP_MS);
      container.timer = setTimeout(() => this.#startContainer(local, container), delay);
    });
  }

  async #stopContainers(local: LocalPod, signal: 'SIGTERM' | 'SIGKILL', graceMs: number): Promise<void> {
    for (const c of local.containers.values()) clearTimeout(c.timer);
    const pids = [...local.containers.values()].flatMap((c) => (c.pid !== undefined ? [c.pid] : []));
    for (const pid of pids) {
      try {
        process.kill(pid, signal);
      } catch {
        /* gone */
      }
    }
    if (graceMs > 0) await waitFor(() => pids.every((pid) => !pidAlive(pid)), graceMs);
    if (!local.hostNetwork) {
      // Whatever the containers started is in the pod's cgroup; none of it may outlive the pod.
      killCgroup(local.cgroupDir);
      await waitFor(() => cgroupPids(local.cgroupDir).length === 0, 5000);
    } else {
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      await waitFor(() => pids.every((pid) => !pidAlive(pid)), 5000);
    }
    local.ready = false;
  }

  // --- Status and readiness ------------------------------------------------------------------------------------

  async #probeAll(): Promise<void> {
    for (const local of this.#local.values()) {
      if (local.terminating || local.failed !== undefined) continue;
      const running = [...local.containers.values()].every((c) => c.pid !== undefined);
      const ready = running && !local.stopped && (await this.#probe(local));
      if (ready !== local.ready) {
        local.ready = ready;
        if (ready) for (const c of local.containers.values()) c.backoffMs = RESTART_BACKOFF_START_MS;
        await this.#writeStatus(local);
      }
    }
  }

  /** A readinessProbe (httpGet or tcpSocket) when the container has one; else every declared containerPort open. */
  async #probe(local: LocalPod): Promise<boolean> {
    const netnsPath = `/run/netns/${local.hostNetwork ? this.node.netns : local.network?.netns}`;
    const ip = local.hostNetwork ? this.node.fabricIp : (local.network?.ip ?? '');
    for (const { spec } of local.containers.values()) {
      const probe = spec.readinessProbe;
      if (probe?.httpGet) {
        const port = Number(probe.httpGet.port);
        try {
          const { status } = await netnsHttpGet(netnsPath, ip, port, probe.httpGet.path ?? '/', 1000);
          if (status < 200 || status >= 400) return false;
        } catch {
          return false;
        }
        continue;
      }
      const ports = probe?.tcpSocket ? [Number(probe.tcpSocket.port)] : (spec.ports ?? []).map((p) => p.containerPort);
      for (const port of ports) if (!(await portOpen(netnsPath, ip, port))) return false;
    }
    return true;
  }

  async #writeStatus(local: LocalPod): Promise<void> {
    if (this.#stopping || local.terminating) return;
    const now = new Date();
    const condition = (type: string, ok: boolean): V1PodCondition => ({ type, status: ok ? 'True' : 'False', lastTransitionTime: now });
    const ips = local.hostNetwork
      ? [this.node.fabricIp, ...(this.node.fabricIp6 ? [this.node.fabricIp6] : [])]
      : local.network
        ? [local.network.ip, ...(local.network.ip6 ? [local.network.ip6] : [])]
        : [];
    const failed = local.failed !== undefined;
    const status = {
      phase: failed ? 'Failed' : 'Running',
      ...(failed ? { reason: 'SandboxError', message: local.failed } : {}),
      hostIP: this.node.fabricIp,
      hostIPs: [{ ip: this.node.fabricIp }],
      ...(ips.length > 0 ? { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } : {}),
      startTime: local.startTime,
      conditions: [
        condition('PodScheduled', true),
        condition('Initialized', true),
        condition('ContainersReady', local.ready),
        condition('Ready', local.ready),
      ],
      containerStatuses: [...local.containers.values()].map((c) => ({
        name: c.spec.name,
        image: c.spec.image ?? '',
        imageID: '',
        ready: local.ready && c.pid !== undefined,
        restartCount: c.restarts,
        started: c.pid !== undefined,
        state:
          c.pid !== undefined
            ? { running: { startedAt: c.startedAt } }
            : c.exitCode !== undefined
              ? { terminated: { exitCode: c.exitCode, reason: local.stopped ? 'Stopped' : 'Error' } }
              : { waiting: { reason: local.stopped ? 'Stopped' : 'ContainerCreating' } },
        ...(c.pid !== undefined ? { containerID: `sandbox://${c.pid}` } : {}),
      })),
    };
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const current = await this.#core.readNamespacedPod({ name: local.name, namespace: local.namespace });
        if (current.metadata?.uid !== local.uid) return;
        // A terminal phase is final, as for a real kubelet: a pod marked Succeeded or Failed (by an eviction, or
        // through the status subresource) is not written back to Running.
        const phase = current.status?.phase;
        if (!failed && (phase === 'Succeeded' || phase === 'Failed')) return;
        current.status = status as V1Pod['status'];
        await this.#core.replaceNamespacedPodStatus({ name: local.name, namespace: local.namespace, body: current });
        return;
      } catch (err) {
        const code = statusOf(err);
        if (code === 404) return;
        if (code !== 409) throw err;
      }
    }
  }

  // --- Tokens and DNS -----------------------------------------------------------------------------------------

  /**
   * Projected service-account tokens, as the kubelet provides them: a TokenRequest bound to this pod (so the
   * token names the pod and its node) written to `$(FERRY_POD_DIR)/volumes/VOLUME/PATH`, renewed at 80% of its life.
   */
  async #projectTokens(local: LocalPod, pod: V1Pod): Promise<void> {
    for (const volume of pod.spec?.volumes ?? []) {
      for (const source of volume.projected?.sources ?? []) {
        const token = source.serviceAccountToken;
        if (token === undefined) continue;
        const file = path.join(local.podDir, 'volumes', volume.name, token.path);
        if (!file.startsWith(`${local.podDir}/`))
          throw new SandboxStateError(
            `Pod ${local.namespace}/${local.name}: spec.volumes[${volume.name}].projected serviceAccountToken.path ${token.path} leaves the pod's directory`,
          );
        const renew = async (): Promise<void> => {
          const seconds = Math.max(token.expirationSeconds ?? 3600, 600);
          const response = await this.#core.createNamespacedServiceAccountToken({
            name: pod.spec?.serviceAccountName || 'default',
            namespace: local.namespace,
            body: {
              spec: {
                audiences: token.audience ? [token.audience] : [],
                expirationSeconds: seconds,
                boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: local.name, uid: local.uid },
              },
            },
          });
          fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
          writeFileAtomic(file, response.status?.token ?? '');
          const timer = setTimeout(
            () => {
              renew().catch((err: unknown) => this.#log.warn({ err, pod: `${local.namespace}/${local.name}` }, 'token renewal failed'));
            },
            seconds * 1000 * TOKEN_REFRESH_FRACTION,
          );
          timer.unref();
          local.tokenTimers.push(timer);
        };
        await renew();
      }
    }
  }

  #dns(local: LocalPod): { hosts: string; resolvConf: string } {
    const services = this.#services.list().flatMap((s) => {
      const vip = s.spec?.clusterIP;
      return vip && vip !== 'None' ? [{ namespace: s.metadata?.namespace ?? 'default', name: s.metadata?.name ?? '', vip }] : [];
    });
    const ip = local.network?.ip ?? '';
    return {
      hosts: hostsFile(
        { namespace: local.namespace, name: local.name, ip, ...(local.network?.ip6 ? { ip6: local.network.ip6 } : {}) },
        services,
      ),
      resolvConf: resolvConf(local.namespace),
    };
  }

  /** Services changed: rewrite every pod's hosts file, once per burst. */
  #scheduleDns(): void {
    if (this.#dnsTimer !== undefined) return;
    this.#dnsTimer = setTimeout(() => {
      this.#dnsTimer = undefined;
      this.#enqueue(async () => {
        for (const local of this.#local.values()) if (local.network && !local.terminating) writePodDns(local.network, this.#dns(local));
      });
    }, 50);
  }
}

function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown; body?: unknown };
  if (typeof e.code === 'number') return e.code;
  if (typeof e.statusCode === 'number') return e.statusCode;
  return undefined;
}

function writeFileAtomic(file: string, text: string): void {
  const temporary = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temporary, text, { mode: 0o600 });
  fs.renameSync(temporary, file);
}
