// Starts a dev cluster (`ferry-devcluster serve`) in its own process group, waits until it is usable and
// hands back how to reach it and how to stop it.
//
// Lifetime: the cluster belongs to the process that started it. stop() ends it (SIGTERM, SIGKILL after a
// deadline) and removes its data directory. When this process exits without stop(), an exit hook kills it;
// when this process dies without running hooks (SIGKILL, a crash), the cluster notices by itself: it runs with
// --exit-with-parent and shuts down once its parent pid changes, because Node.js cannot ask the kernel for
// PR_SET_PDEATHSIG on a child the way Go's SysProcAttr.Pdeathsig does.
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { devClusterBinariesFrom, type DevClusterBinaries } from '../config';
import { DevClusterArgumentError, DevClusterBinaryMissingError, DevClusterStartError, DevClusterStopError } from './errors';
import { type KubectlResult, runKubectl } from './kubectl';

export interface DevClusterOptions {
  /** Where certificates, etcd data and kubeconfigs go; must be absent or empty. Default: a new temporary directory. */
  dataDir?: string;
  /** Short name in the temporary directory's name and in messages. Default: `dev`. */
  name?: string;
  /** Where the cluster's log goes (appended). Default: `devcluster.log` in the data directory. */
  logFile?: string;
  /** How long start may take until the cluster is usable. Default: 120 s. */
  timeoutMs?: number;
  /** The binaries; default: from FERRY_DEVCLUSTER / FERRY_KUBECTL or this checkout's build (src/config). */
  binaries?: DevClusterBinaries;
  /** More kube-apiserver flags, after the dev cluster's own (e.g. a short `--etcd-compaction-interval`). */
  apiserverArgs?: string[];
}

export interface DevCluster {
  /** The admin's kubeconfig (O=system:masters), certificates embedded. */
  kubeconfigPath: string;
  /** e.g. https://127.0.0.1:41235 */
  server: string;
  dataDir: string;
  pid: number;
  /** The cluster's log file. */
  logFile: string;
  /** kubectl of the same release as the cluster's admin. Resolves with kubectl's exit code; never rejects for it. */
  kubectl(args: string[], input?: string): Promise<KubectlResult>;
  /**
   * Stop the cluster and start it again on the same data directory and port: etcd's data, certificates and
   * kubeconfigs stay, so clients reconnect as after a real apiserver restart (and watches resume or get 410).
   */
  restart(): Promise<void>;
  /** SIGTERM, SIGKILL after 20 s, then the data directory removed. Idempotent; concurrent calls share one stop. */
  stop(): Promise<void>;
}

/** DIR/cluster.json as ferry-devcluster serve writes it once the apiserver is ready. */
interface ClusterInfo {
  server: string;
  pid: number;
  kubeconfig: string;
  caCert: string;
  adminCert: string;
  adminKey: string;
}

const NAME = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;
const DEFAULT_TIMEOUT_MS = 120_000;
const TERM_GRACE_MS = 20_000;
const KILL_GRACE_MS = 5_000;
const POLL_MS = 200;
const LOG_TAIL_BYTES = 6 * 1024;

export async function startDevCluster(options: DevClusterOptions = {}): Promise<DevCluster> {
  const name = options.name ?? 'dev';
  if (!NAME.test(name)) {
    throw new DevClusterArgumentError(`dev cluster name ${JSON.stringify(name)}: expected 1-32 lowercase letters, digits and inner dashes`);
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new DevClusterArgumentError(`dev cluster ${name}: timeoutMs ${timeoutMs} is not a positive number of milliseconds`);
  }
  const binaries = options.binaries ?? devClusterBinariesFrom();
  assertExecutable(binaries.devcluster, binaries.from.devcluster === 'FERRY_DEVCLUSTER' ? 'FERRY_DEVCLUSTER' : undefined);
  if (binaries.from.kubectl !== 'FERRY_DEVCLUSTER') {
    assertExecutable(binaries.kubectl.command, binaries.from.kubectl === 'FERRY_KUBECTL' ? 'FERRY_KUBECTL' : undefined);
  }

  const dataDir = makeDataDir(name, options.dataDir);
  const logFile = path.resolve(options.logFile ?? path.join(dataDir, 'devcluster.log'));
  let logFd: number;
  try {
    logFd = fs.openSync(logFile, 'a', 0o644);
  } catch (err) {
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw new DevClusterArgumentError(`dev cluster ${name}: cannot open log file ${logFile}: ${(err as Error).message}`, { cause: err });
  }

  const launch = async (port?: number): Promise<{ process: ClusterProcess; info: ClusterInfo }> => {
    let fd: number;
    try {
      fd = fs.openSync(logFile, 'a', 0o644);
    } catch (err) {
      throw new DevClusterArgumentError(`dev cluster ${name}: cannot open log file ${logFile}: ${(err as Error).message}`, { cause: err });
    }
    let child: ChildProcess;
    try {
      // detached: setsid(2), so the cluster has its own process group and a Ctrl-C aimed at ours is not its stop.
      // Everything it prints, before and after it opens its own log, goes to the same file.
      const args = ['serve', `--data-dir=${dataDir}`, '--exit-with-parent'];
      if (port !== undefined) args.push(`--port=${port}`);
      for (const arg of options.apiserverArgs ?? []) args.push(`--apiserver-arg=${arg}`);
      child = spawn(binaries.devcluster, args, { detached: true, stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    const launched = new ClusterProcess(child, name, dataDir, logFile);
    try {
      await launched.spawned();
      return { process: launched, info: await waitUsable(launched, timeoutMs) };
    } catch (err) {
      await launched.stop().catch(() => {});
      throw err;
    }
  };
  fs.closeSync(logFd);
  let current = await launch();
  const info = current.info;
  const target = { kubectl: binaries.kubectl, kubeconfigPath: info.kubeconfig, cacheDir: path.join(dataDir, 'kubectl-cache') };
  const port = Number(new URL(info.server).port);
  let stopped: Promise<void> | undefined;
  return {
    kubeconfigPath: info.kubeconfig,
    server: info.server,
    dataDir,
    get pid() {
      return current.process.pid;
    },
    logFile,
    kubectl: (args, input) => runKubectl(target, args, input),
    restart: async () => {
      if (stopped !== undefined) throw new DevClusterArgumentError(`dev cluster ${name}: restart after stop`);
      await current.process.halt();
      current = await launch(port);
    },
    stop: () => {
      stopped ??= current.process.stop();
      return stopped;
    },
  };
}

function assertExecutable(file: string, variable: 'FERRY_DEVCLUSTER' | 'FERRY_KUBECTL' | undefined): void {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    if (!fs.statSync(file).isFile()) throw new Error('not a regular file');
  } catch (err) {
    const why =
      (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `is not an executable file (${(err as Error).message})`;
    const fix =
      variable === undefined
        ? 'run scripts/setup.sh (or scripts/build-devcluster.sh) to build it, or set FERRY_DEVCLUSTER (and FERRY_KUBECTL) to existing binaries'
        : `fix ${variable}, or unset it and run scripts/setup.sh to build the dev cluster`;
    throw new DevClusterBinaryMissingError(`dev cluster: ${file} ${why}: ${fix}`, { cause: err });
  }
}

/** The data directory, created here so stop() may remove it: a given one must be absent or empty. */
function makeDataDir(name: string, requested: string | undefined): string {
  if (requested === undefined) return fs.mkdtempSync(path.join(os.tmpdir(), `ferry-devcluster-${name}-`));
  const dir = path.resolve(requested);
  let entries: string[] | undefined;
  try {
    entries = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new DevClusterArgumentError(`dev cluster ${name}: dataDir ${dir}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (entries !== undefined && entries.length > 0) {
    throw new DevClusterArgumentError(
      `dev cluster ${name}: dataDir ${dir} is not empty (${entries.slice(0, 3).join(', ')}…); stop() removes the data directory, so it must be the cluster's own`,
    );
  }
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** The child process: its exit, its log, and the one way to stop it. */
class ClusterProcess {
  readonly pid: number;
  private exitCode: number | null | undefined;
  private exitSignal: NodeJS.Signals | null = null;
  private readonly exited: Promise<void>;
  private stopping: Promise<void> | undefined;
  private readonly onProcessExit = () => this.killNow();

  constructor(
    private readonly child: ChildProcess,
    readonly name: string,
    readonly dataDir: string,
    readonly logFile: string,
  ) {
    this.pid = child.pid ?? -1;
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        resolve();
      });
      // A failed spawn emits 'error' and never 'exit'.
      child.on('error', () => resolve());
    });
    // The cluster must not keep this process alive, nor outlive it.
    child.unref();
    process.on('exit', this.onProcessExit);
  }

  /** Resolves once the child is running; rejects when it could not be started at all. */
  spawned(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.child.pid !== undefined) return resolve();
      this.child.once('error', (err) =>
        reject(new DevClusterStartError(`dev cluster ${this.name}: cannot start: ${err.message}`, { cause: err })),
      );
    });
  }

  get hasExited(): boolean {
    return this.exitCode !== undefined || this.exitSignal !== null;
  }

  describeExit(): string {
    return this.exitSignal !== null ? `was killed by ${this.exitSignal}` : `exited with code ${this.exitCode}`;
  }

  /** The end of the log, for error messages. */
  logTail(): string {
    try {
      const fd = fs.openSync(this.logFile, 'r');
      try {
        const size = fs.fstatSync(fd).size;
        const length = Math.min(size, LOG_TAIL_BYTES);
        const buffer = Buffer.alloc(length);
        fs.readSync(fd, buffer, 0, length, size - length);
        const text = buffer.toString('utf8');
        return (length < size ? text.slice(text.indexOf('\n') + 1) : text).trimEnd();
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      return `(log ${this.logFile} unreadable: ${(err as Error).message})`;
    }
  }

  stop(): Promise<void> {
    this.stopping ??= this.stopOnce(true);
    return this.stopping;
  }

  /** Ends the process and keeps the data directory (for a restart on it). */
  halt(): Promise<void> {
    this.stopping ??= this.stopOnce(false);
    return this.stopping;
  }

  private async stopOnce(removeData: boolean): Promise<void> {
    process.removeListener('exit', this.onProcessExit);
    if (this.pid > 0 && !this.hasExited) {
      this.signal('SIGTERM');
      if (!(await this.waitExit(TERM_GRACE_MS))) {
        this.signal('SIGKILL');
        if (!(await this.waitExit(KILL_GRACE_MS))) {
          throw new DevClusterStopError(`dev cluster ${this.name}: pid ${this.pid} still running ${KILL_GRACE_MS} ms after SIGKILL`);
        }
      }
    }
    if (!removeData) return;
    try {
      await fs.promises.rm(this.dataDir, { recursive: true, force: true });
    } catch (err) {
      throw new DevClusterStopError(`dev cluster ${this.name}: cannot remove ${this.dataDir}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The whole process group: the cluster starts no children today, but none may outlive it either. */
  private signal(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }

  private async waitExit(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([this.exited.then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** This process is exiting without stop(): nothing asynchronous runs any more, so kill and clean up now. */
  private killNow(): void {
    if (this.pid > 0 && !this.hasExited) this.signal('SIGKILL');
    try {
      fs.rmSync(this.dataDir, { recursive: true, force: true });
    } catch {
      // A file written between the kill and the removal; the directory is in the temporary directory.
    }
  }
}

/**
 * Polls until the cluster is usable: cluster.json written (the apiserver answered /readyz), /readyz still ok,
 * the `default` ServiceAccount made by the serviceaccount controller, the root CA ConfigMap published, and
 * RBAC's bootstrap roles present.
 */
async function waitUsable(cluster: ClusterProcess, timeoutMs: number): Promise<ClusterInfo> {
  const deadline = Date.now() + timeoutMs;
  let waitingFor = 'cluster.json';
  let lastAnswer = 'none yet';
  let info: ClusterInfo | undefined;
  let client: AdminClient | undefined;
  const checks: Array<[string, string, (status: number, body: string) => boolean]> = [
    ['/readyz', '/readyz', (status, body) => status === 200 && body === 'ok'],
    ['the default namespace', '/api/v1/namespaces/default', (status) => status === 200],
    ['the default ServiceAccount', '/api/v1/namespaces/default/serviceaccounts/default', (status) => status === 200],
    ['the kube-root-ca.crt ConfigMap', '/api/v1/namespaces/default/configmaps/kube-root-ca.crt', (status) => status === 200],
    ['RBAC bootstrap roles', '/apis/rbac.authorization.k8s.io/v1/clusterroles/cluster-admin', (status) => status === 200],
  ];
  let next = 0;
  for (;;) {
    if (cluster.hasExited) {
      throw new DevClusterStartError(
        `dev cluster ${cluster.name} ${cluster.describeExit()} while waiting for ${waitingFor}; log ${cluster.logFile} ends:\n${cluster.logTail()}`,
      );
    }
    if (Date.now() > deadline) {
      throw new DevClusterStartError(
        `dev cluster ${cluster.name} not usable within ${timeoutMs} ms: waiting for ${waitingFor} (last answer: ${lastAnswer}); log ${cluster.logFile} ends:\n${cluster.logTail()}`,
      );
    }
    if (info === undefined) {
      info = readClusterInfo(path.join(cluster.dataDir, 'cluster.json'), cluster.pid);
      if (info !== undefined) client = new AdminClient(info);
    }
    if (info !== undefined && client !== undefined) {
      const [what, urlPath, ok] = checks[next];
      waitingFor = what;
      try {
        const { status, body } = await client.get(urlPath);
        lastAnswer = `${status} ${body.slice(0, 200)}`;
        if (ok(status, body)) {
          next += 1;
          if (next === checks.length) return info;
          continue;
        }
      } catch (err) {
        lastAnswer = (err as Error).message;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function readClusterInfo(file: string, pid: number): ClusterInfo | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const info = JSON.parse(text) as Partial<ClusterInfo>;
  for (const field of ['server', 'kubeconfig', 'caCert', 'adminCert', 'adminKey'] as const) {
    if (typeof info[field] !== 'string') throw new DevClusterStartError(`${file}: field ${field} is not a string`);
  }
  if (info.pid !== pid) throw new DevClusterStartError(`${file}: pid ${info.pid} is not the started process ${pid}`);
  return info as ClusterInfo;
}

/** GETs as the cluster's admin over mutual TLS, for the readiness checks. */
class AdminClient {
  private readonly agent: https.Agent;

  constructor(private readonly info: ClusterInfo) {
    this.agent = new https.Agent({
      ca: fs.readFileSync(info.caCert),
      cert: fs.readFileSync(info.adminCert),
      key: fs.readFileSync(info.adminKey),
      keepAlive: false,
    });
  }

  get(urlPath: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const request = https.get(new URL(urlPath, this.info.server), { agent: this.agent, timeout: 5_000 }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        response.on('error', reject);
      });
      request.on('timeout', () => request.destroy(new Error(`GET ${urlPath}: no answer within 5 s`)));
      request.on('error', reject);
    });
  }
}
