// Drives a benchmark sandbox through the `ferry sandbox` CLI: up/down/status, a streaming exec into a
// pod, the agents' CPU time from /proc, and a scan of what the agents logged since a mark.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const FERRY = path.join(REPO, 'bin', 'ferry.js');
export const NODE = process.execPath;

const CLI_TIMEOUT_MS = 120_000;

export interface SandboxStatusJson {
  nodes: Array<{ name: string; agentPid?: number; agentRunning: boolean; ready: boolean }>;
  pods: Array<{ namespace: string; name: string; node: string; ip: string; meshed: boolean; running: boolean }>;
  services: Array<{ namespace: string; name: string; vip: string; ports: string; endpoints: string[] }>;
  logDir: string;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function ferry(args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await execFileAsync(NODE, [FERRY, ...args], { timeout: CLI_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

/** CPU time of one process in milliseconds: utime + stime, fields 14 and 15 of proc(5) /proc/PID/stat. */
export function processCpuMs(pid: number, clockTicks: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / clockTicks;
}

/** Busy and total CPU time of the whole machine in ms, from the first line of proc(5) /proc/stat. */
export function machineCpuMs(clockTicks: number): { busyMs: number; totalMs: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
  // cpu user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const busy = user + nice + system + irq + softirq + steal;
  return { busyMs: (busy * 1000) / clockTicks, totalMs: ((busy + idle + iowait) * 1000) / clockTicks };
}

/** CPU time in ms of every task in a cgroup v2 subtree (usage_usec of cpu.stat, kept without the cpu controller). */
export function cgroupCpuMs(dir: string): number {
  const stat = fs.readFileSync(path.join(dir, 'cpu.stat'), 'utf8');
  const usage = /^usage_usec (\d+)$/m.exec(stat);
  return usage ? Number(usage[1]) / 1000 : 0;
}

export function cgroup2Root(): string {
  const mount = fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[2] === 'cgroup2');
  if (!mount) throw new Error('no cgroup v2 hierarchy is mounted');
  return mount[1];
}

/** Clock ticks per second for /proc times (sysconf(_SC_CLK_TCK); 100 on every mainstream Linux). */
export async function clockTicks(): Promise<number> {
  try {
    const { stdout } = await execFileAsync('getconf', ['CLK_TCK']);
    const ticks = Number(stdout.trim());
    return Number.isFinite(ticks) && ticks > 0 ? ticks : 100;
  } catch {
    return 100;
  }
}

/** What the agents logged between a mark and now: access records and anything at warn or above. */
export interface AgentLogScan {
  accessRecords: number;
  accessErrors: number;
  warnings: number;
  errorsByMessage: Record<string, number>;
}

export class BenchSandbox {
  private readonly dir: string;
  private readonly manifestFile: string;
  private readonly running = new Set<ChildProcess>();

  constructor(
    readonly prefix: string,
    manifest: string,
  ) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
    this.manifestFile = path.join(this.dir, 'manifest.yaml');
    fs.writeFileSync(this.manifestFile, manifest);
  }

  get stateDir(): string {
    return `/run/ferry/${this.prefix}`;
  }

  /** The cgroup holding every process of the sandbox: agents, pods and whatever exec put in them. */
  get cgroupDir(): string {
    return path.join(cgroup2Root(), this.prefix);
  }

  /** Bring the sandbox up, first removing one this prefix left behind (an interrupted earlier run). */
  async up(): Promise<void> {
    if (fs.existsSync(this.stateDir)) {
      const stale = await ferry(['sandbox', 'down', '--prefix', this.prefix]);
      if (stale.code !== 0) throw new Error(`removing the stale sandbox "${this.prefix}" failed:\n${stale.stderr}`);
    }
    const result = await ferry(['sandbox', 'up', '-f', this.manifestFile, '--prefix', this.prefix]);
    if (result.code !== 0) throw new Error(`sandbox up failed:\n${result.stdout}\n${result.stderr}`);
  }

  /**
   * Remove the sandbox. Owns shutdown: first stops the execs this driver started (by their pid;
   * their children inside the pods go with the pods' cgroups in `sandbox down`), then removes the
   * manifest directory. Safe to call twice and when `up` never finished.
   */
  async down(): Promise<CliResult> {
    for (const child of this.running) {
      if (child.exitCode === null && child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGTERM');
        } catch {
          /* already gone */
        }
      }
    }
    this.running.clear();
    let result: CliResult = { code: 0, stdout: '', stderr: '' };
    if (fs.existsSync(this.stateDir)) result = await ferry(['sandbox', 'down', '--prefix', this.prefix]);
    fs.rmSync(this.dir, { recursive: true, force: true });
    return result;
  }

  /**
   * Restart every node's agent with `agentArgs` (the bench's agent modes: plaintext, HBONE, HBONE
   * without the same-node shortcut). A killed agent's pods fail closed until it is back.
   */
  async restartAgents(nodes: string[], agentArgs: string[]): Promise<void> {
    for (const node of nodes) {
      const killed = await ferry(['sandbox', 'agent', 'kill', node, '--prefix', this.prefix]);
      if (killed.code !== 0) throw new Error(`agent kill ${node} failed: ${killed.stderr}`);
      const started = await ferry([
        'sandbox',
        'agent',
        'start',
        node,
        '--prefix',
        this.prefix,
        ...agentArgs.map((a) => `--agent-arg=${a}`),
      ]);
      if (started.code !== 0) throw new Error(`agent start ${node} failed: ${started.stderr}`);
    }
  }

  async status(): Promise<SandboxStatusJson> {
    const result = await ferry(['sandbox', 'status', '--prefix', this.prefix, '-o', 'json']);
    if (result.code !== 0) throw new Error(`sandbox status failed: ${result.stderr}`);
    return JSON.parse(result.stdout) as SandboxStatusJson;
  }

  /**
   * Run a command in a pod and hand each stdout line to `onLine` as it arrives (the load tool's
   * phase markers must be seen while it runs, not after). Killed after `timeoutMs`.
   */
  execStreaming(pod: string, argv: string[], onLine: (line: string) => void, timeoutMs: number): Promise<CliResult> {
    const child = spawn(NODE, [FERRY, 'sandbox', 'exec', '--prefix', this.prefix, pod, '--', ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.running.add(child);
    let stdout = '';
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      stderr += d;
    });
    const lines = readline.createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      stdout += `${line}\n`;
      onLine(line);
    });
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    return new Promise((resolve) => {
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        this.running.delete(child);
        resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
      });
    });
  }

  agentLogFile(logDir: string, node: string): string {
    return path.join(logDir, `agent-${node}.log`);
  }

  /** Current size of each agent's log, to scan only what a lane added. */
  logMark(logDir: string, nodes: string[]): Record<string, number> {
    const mark: Record<string, number> = {};
    for (const node of nodes) {
      const file = this.agentLogFile(logDir, node);
      mark[node] = fs.existsSync(file) ? fs.statSync(file).size : 0;
    }
    return mark;
  }

  scanLogs(logDir: string, mark: Record<string, number>): Record<string, AgentLogScan> {
    const scans: Record<string, AgentLogScan> = {};
    for (const [node, from] of Object.entries(mark)) {
      const scan: AgentLogScan = { accessRecords: 0, accessErrors: 0, warnings: 0, errorsByMessage: {} };
      scans[node] = scan;
      const file = this.agentLogFile(logDir, node);
      if (!fs.existsSync(file)) continue;
      const fd = fs.openSync(file, 'r');
      try {
        const size = fs.fstatSync(fd).size;
        const text = Buffer.alloc(Math.max(0, size - from));
        fs.readSync(fd, text, 0, text.length, from);
        for (const line of text.toString('utf8').split('\n')) {
          if (!line.startsWith('{')) continue;
          let record: { level?: number; component?: string; error?: string; msg?: string };
          try {
            record = JSON.parse(line) as typeof record;
          } catch {
            continue;
          }
          if (record.component === 'access') {
            scan.accessRecords += 1;
            if (record.error) {
              scan.accessErrors += 1;
              // Group by message without the addresses and ports that make every line unique.
              const key = record.error.replace(/\d+\.\d+\.\d+\.\d+:\d+/g, 'ADDR').slice(0, 120);
              scan.errorsByMessage[key] = (scan.errorsByMessage[key] ?? 0) + 1;
            }
          }
          if ((record.level ?? 0) >= 40) {
            scan.warnings += 1;
            const key = `${record.level}: ${record.msg ?? ''}`.slice(0, 120);
            scan.errorsByMessage[key] = (scan.errorsByMessage[key] ?? 0) + 1;
          }
        }
      } finally {
        fs.closeSync(fd);
      }
    }
    return scans;
  }
}
