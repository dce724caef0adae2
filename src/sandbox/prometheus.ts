// The sandbox's Prometheus (`ferry sandbox up --prometheus`): Debian's /usr/bin/prometheus in its own network
// namespace on the fabric bridge, scraping every node's agent; its status, instant queries, and stopping it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Ledger } from './ledger';
import { netnsHttpGet, type NetnsHttpResponse } from './netns-http';
import { planPrometheus, type PlannedPrometheus, type SandboxPlan } from './plan';
import { renderFileSdTargets, renderSandboxPrometheusConfig, type AgentPod } from './prometheus-config';
import { SandboxHttpError, SandboxPrometheusError } from './runtime-errors';
import { readPlan, requireRoot, sandboxPaths, type SandboxPaths } from './state-dir';
import {
  cgroup2Root,
  cgroupPids,
  deleteLink,
  enableIpv6,
  ip,
  killCgroup,
  netnsExists,
  pidAlive,
  sleep,
  spawnInCgroup,
  waitFor,
} from './system';

/** Debian's `prometheus` package installs it here; scripts/setup.sh installs the package. */
export const PROMETHEUS_BIN = '/usr/bin/prometheus';
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;
const HTTP_TIMEOUT_MS = 10_000;
const PROBE_TIMEOUT_MS = 2_000;

/** The files of one sandbox's Prometheus, all under its state dir except the log. */
export interface PrometheusFiles {
  dir: string;
  configFile: string;
  targetsFile: string;
  dataDir: string;
  logFile: string;
}

export function prometheusFiles(paths: SandboxPaths): PrometheusFiles {
  return {
    dir: paths.prometheusDir,
    configFile: path.join(paths.prometheusDir, 'prometheus.yml'),
    targetsFile: path.join(paths.prometheusDir, 'targets', 'agents.json'),
    dataDir: path.join(paths.prometheusDir, 'data'),
    logFile: path.join(paths.logDir, 'prometheus.log'),
  };
}

/** Fails, before anything is built, when the Prometheus binary is not there. */
export function assertPrometheusInstalled(): void {
  try {
    fs.accessSync(PROMETHEUS_BIN, fs.constants.X_OK);
  } catch (err) {
    throw new SandboxPrometheusError(
      `--prometheus needs ${PROMETHEUS_BIN}, which is not installed: install Debian's prometheus package ` +
        '(apt-get install --no-install-recommends prometheus; scripts/setup.sh does it)',
      { cause: err },
    );
  }
}

function logTail(file: string, lines = 15): string {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') : '(no log)';
}

/** GET a path of the sandbox's Prometheus API, from inside its namespace. */
export function prometheusGet(prom: PlannedPrometheus, apiPath: string, timeoutMs = HTTP_TIMEOUT_MS): Promise<NetnsHttpResponse> {
  return netnsHttpGet(`/run/netns/${prom.netns}`, '127.0.0.1', prom.port, apiPath, timeoutMs);
}

async function prometheusReady(prom: PlannedPrometheus): Promise<boolean> {
  try {
    return (await prometheusGet(prom, '/-/ready', PROBE_TIMEOUT_MS)).status === 200;
  } catch (err) {
    if (err instanceof SandboxHttpError) return false;
    throw err;
  }
}

/**
 * Start the sandbox's Prometheus, scraping `agents` (their pods as pod discovery would see them), and wait until
 * it is ready. Every name it makes goes into the ledger
 * as it is made (its directory, namespace, fabric veth, cgroup, pid), so a failure here is undone by
 * the caller's rollback (`sandboxDown`), and `down` removes it by exact name. Its namespace holds one
 * veth end on the fabric bridge with the fabric address PROMETHEUS_FABRIC_HOST and no route: the
 * nodes' fabric addresses are on-link, and nothing else is reachable from it.
 */
export async function startPrometheus(
  plan: SandboxPlan,
  ledger: Ledger,
  paths: SandboxPaths,
  agents: readonly AgentPod[],
  report: (line: string) => void,
): Promise<void> {
  assertPrometheusInstalled();
  const prom = planPrometheus(plan);
  const files = prometheusFiles(paths);
  if (await netnsExists(prom.netns)) {
    throw new SandboxPrometheusError(
      `network namespace ${prom.netns} already exists but is not this sandbox's; remove it ` +
        `(ip netns del ${prom.netns}) or use another --prefix`,
    );
  }

  fs.mkdirSync(files.dir);
  ledger.add({ kind: 'dir', path: files.dir });
  fs.mkdirSync(path.dirname(files.targetsFile));
  fs.mkdirSync(files.dataDir);
  fs.writeFileSync(files.targetsFile, renderFileSdTargets(agents));
  fs.writeFileSync(files.configFile, renderSandboxPrometheusConfig(files.targetsFile));

  await ip('netns', 'add', prom.netns);
  ledger.add({ kind: 'netns', name: prom.netns });
  // In a dual-stack sandbox it has the fabric's IPv6 twin address too (it still scrapes the agents over IPv4).
  if (prom.fabricAddress6 !== undefined) await enableIpv6(prom.netns, { forwarding: false });
  await ip('-n', prom.netns, 'link', 'set', 'lo', 'up');
  await ip('-n', plan.fabric.netns, 'link', 'add', prom.fabricVeth, 'type', 'veth', 'peer', 'name', prom.fabricPeer, 'netns', prom.netns);
  ledger.add({ kind: 'veth', netns: plan.fabric.netns, name: prom.fabricVeth });
  await ip('-n', plan.fabric.netns, 'link', 'set', prom.fabricVeth, 'master', plan.fabric.bridge, 'up');
  await ip('-n', prom.netns, 'addr', 'add', prom.fabricAddress, 'dev', prom.fabricPeer);
  if (prom.fabricAddress6 !== undefined)
    await ip('-n', prom.netns, '-6', 'addr', 'add', prom.fabricAddress6, 'dev', prom.fabricPeer, 'nodad');
  await ip('-n', prom.netns, 'link', 'set', prom.fabricPeer, 'up');

  const cgroupDir = path.join(cgroup2Root(), prom.cgroup);
  fs.mkdirSync(cgroupDir);
  ledger.add({ kind: 'cgroup', path: cgroupDir });
  // nsenter --net only: Prometheus keeps the host's mount namespace, and so sees the state dir.
  const pid = spawnInCgroup(
    cgroupDir,
    [
      'nsenter',
      `--net=/run/netns/${prom.netns}`,
      '--',
      PROMETHEUS_BIN,
      `--config.file=${files.configFile}`,
      `--storage.tsdb.path=${files.dataDir}`,
      '--storage.tsdb.retention.time=1d',
      `--web.listen-address=0.0.0.0:${prom.port}`,
      '--log.level=info',
    ],
    files.logFile,
    { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    files.dir,
  );
  ledger.add({ kind: 'process', pid, role: 'prometheus' });

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (await prometheusReady(prom)) break;
    // The pid, not the cgroup: the cgroup is empty until the spawned shell has joined it.
    if (!pidAlive(pid)) {
      throw new SandboxPrometheusError(`prometheus exited during start; its log (${files.logFile}) ends:\n${logTail(files.logFile)}`);
    }
    if (Date.now() >= deadline) {
      throw new SandboxPrometheusError(
        `prometheus not ready after ${READY_TIMEOUT_MS / 1000}s; its log (${files.logFile}) ends:\n${logTail(files.logFile)}`,
      );
    }
    await sleep(200);
  }
  report(
    `prometheus ready in ${prom.netns} (${prom.fabricIp}:${prom.port}), scraping ${agents.length} agents every 2s ` +
      `(log: ${files.logFile}); try: ferry sandbox query 'up'`,
  );
}

/** How `ferry sandbox status` shows the sandbox's Prometheus. */
export interface PrometheusStatus {
  netns: string;
  /** host:port on the fabric; reachable from the nodes' namespaces, not from the host's. */
  address: string;
  pid?: number;
  running: boolean;
  ready: boolean;
  /** Scrape targets (one per agent) and how many answered their last scrape; when Prometheus answers. */
  targets?: { total: number; up: number };
  configFile: string;
  logFile: string;
}

interface TargetsResponse {
  data?: { activeTargets?: Array<{ health?: string }> };
}

/** The status of the sandbox's Prometheus, or undefined when it was not started (`up` without --prometheus). */
export async function prometheusStatus(plan: SandboxPlan): Promise<PrometheusStatus | undefined> {
  const files = prometheusFiles(sandboxPaths(plan.prefix));
  if (!fs.existsSync(files.dir)) return undefined;
  const prom = planPrometheus(plan);
  const pids = cgroupPids(path.join(cgroup2Root(), prom.cgroup));
  const status: PrometheusStatus = {
    netns: prom.netns,
    address: `${prom.fabricIp}:${prom.port}`,
    pid: pids[0],
    running: pids.length > 0,
    ready: false,
    configFile: files.configFile,
    logFile: files.logFile,
  };
  if (!status.running) return status;
  status.ready = await prometheusReady(prom);
  if (!status.ready) return status;
  try {
    const response = await prometheusGet(prom, '/api/v1/targets?state=active', PROBE_TIMEOUT_MS);
    const targets = (JSON.parse(response.body) as TargetsResponse).data?.activeTargets ?? [];
    status.targets = { total: targets.length, up: targets.filter((t) => t.health === 'up').length };
  } catch (err) {
    // The count is a convenience: a slow or odd answer leaves it out rather than failing `status`.
    if (!(err instanceof SandboxHttpError) && !(err instanceof SyntaxError)) throw err;
  }
  return status;
}

/** Prometheus' HTTP API answer to an instant query (docs: querying/api, "Expression query result formats"). */
export type PrometheusSample = [number, string];
export type PrometheusQueryData =
  | { resultType: 'vector'; result: Array<{ metric: Record<string, string>; value: PrometheusSample }> }
  | { resultType: 'matrix'; result: Array<{ metric: Record<string, string>; values: PrometheusSample[] }> }
  | { resultType: 'scalar' | 'string'; result: PrometheusSample };

export interface PrometheusQueryResponse {
  status: 'success' | 'error';
  data?: PrometheusQueryData;
  errorType?: string;
  error?: string;
  warnings?: string[];
}

/** A running sandbox Prometheus, or an error saying why there is none. */
function runningPrometheus(prefix: string): PlannedPrometheus {
  const plan = readPlan(prefix);
  const prom = planPrometheus(plan);
  const files = prometheusFiles(sandboxPaths(prefix));
  if (!fs.existsSync(files.dir)) {
    throw new SandboxPrometheusError(
      `sandbox "${prefix}" has no Prometheus; it starts with the sandbox: ferry sandbox down, ` +
        'then ferry sandbox up -f FILE --prometheus',
    );
  }
  if (cgroupPids(path.join(cgroup2Root(), prom.cgroup)).length === 0) {
    throw new SandboxPrometheusError(
      `the Prometheus of sandbox "${prefix}" is not running; its log (${files.logFile}) ends:\n${logTail(files.logFile, 5)}`,
    );
  }
  return prom;
}

/**
 * `ferry sandbox query PROMQL`: an instant query at the current time against the sandbox's Prometheus
 * (GET /api/v1/query). Returns the raw JSON body too, for `-o json`. Throws SandboxPrometheusError when
 * there is no running Prometheus or when it refuses the query (bad PromQL: its errorType and error).
 */
export async function sandboxQuery(prefix: string, promql: string): Promise<{ raw: string; response: PrometheusQueryResponse }> {
  requireRoot('ferry sandbox query');
  const prom = runningPrometheus(prefix);
  let answer: NetnsHttpResponse;
  try {
    answer = await prometheusGet(prom, `/api/v1/query?query=${encodeURIComponent(promql)}`);
  } catch (err) {
    throw new SandboxPrometheusError(`query ${JSON.stringify(promql)}: Prometheus did not answer: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let response: PrometheusQueryResponse;
  try {
    response = JSON.parse(answer.body) as PrometheusQueryResponse;
  } catch (err) {
    throw new SandboxPrometheusError(
      `query ${JSON.stringify(promql)}: HTTP ${answer.status} with a body that is not JSON: ${answer.body.slice(0, 200)}`,
      { cause: err },
    );
  }
  if (response.status !== 'success' || response.data === undefined) {
    throw new SandboxPrometheusError(
      `query ${JSON.stringify(promql)} refused (HTTP ${answer.status}): ` +
        `${response.errorType ?? 'error'}: ${response.error ?? answer.body.slice(0, 200)}`,
    );
  }
  return { raw: answer.body, response };
}

/**
 * Stop the sandbox's Prometheus and remove what it made (process, fabric veth, namespace, cgroup, its
 * directory), leaving the rest of the sandbox up. SIGTERM first (Prometheus closes its storage), then
 * SIGKILL through the cgroup after STOP_TIMEOUT_MS. The ledger keeps the entries: `down` skips names
 * that are already gone.
 */
export async function stopPrometheus(prefix: string, report: (line: string) => void): Promise<void> {
  requireRoot("stopping the sandbox's Prometheus");
  const plan = readPlan(prefix);
  const prom = planPrometheus(plan);
  const files = prometheusFiles(sandboxPaths(prefix));
  if (!fs.existsSync(files.dir)) throw new SandboxPrometheusError(`sandbox "${prefix}" has no Prometheus to stop`);
  const cgroupDir = path.join(cgroup2Root(), prom.cgroup);
  for (const pid of cgroupPids(cgroupDir)) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
  if (!(await waitFor(() => cgroupPids(cgroupDir).length === 0, STOP_TIMEOUT_MS))) {
    killCgroup(cgroupDir);
    await waitFor(() => cgroupPids(cgroupDir).length === 0, STOP_TIMEOUT_MS);
  }
  await deleteLink(plan.fabric.netns, prom.fabricVeth);
  if (await netnsExists(prom.netns)) await ip('netns', 'del', prom.netns);
  if (fs.existsSync(cgroupDir)) {
    // rmdir of a cgroup fails with EBUSY while a just-killed task is still exiting.
    await waitFor(() => {
      try {
        fs.rmdirSync(cgroupDir);
        return true;
      } catch {
        return false;
      }
    }, STOP_TIMEOUT_MS);
  }
  fs.rmSync(files.dir, { recursive: true, force: true });
  report(`prometheus of sandbox "${prefix}" stopped and removed`);
}
