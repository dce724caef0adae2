// Thin wrappers over the host tools the sandbox drives (iproute2, mounts, cgroup v2 files).
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { SandboxSystemError } from './runtime-errors';

const execFileAsync = promisify(execFile);

/** Run a command without a shell; failures name the command line and carry its stderr. */
export async function run(command: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new SandboxSystemError(`${command} ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`, { cause: err });
  }
}

export function ip(...args: string[]): Promise<string> {
  return run('ip', args);
}

interface Mount {
  source: string;
  target: string;
  type: string;
}

function mounts(): Mount[] {
  return fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [source, target, type] = line.split(' ');
      return { source, target: target.replace(/\\040/g, ' '), type };
    });
}

/** Where cgroup v2 is mounted: /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones. */
export function cgroup2Root(): string {
  const found = mounts().find((m) => m.type === 'cgroup2');
  if (!found) {
    throw new SandboxSystemError(
      'no cgroup v2 hierarchy is mounted; Ferry attaches its connect programs to a cgroup v2 directory ' +
        '(mount one with: mount -t cgroup2 none /sys/fs/cgroup/unified)',
    );
  }
  return found.target;
}

/** Mount bpffs at /sys/fs/bpf when nothing is mounted there; pins live in it. */
export async function ensureBpffs(): Promise<void> {
  if (mounts().some((m) => m.target === '/sys/fs/bpf' && m.type === 'bpf')) return;
  await run('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf']);
}

export async function netnsExists(name: string): Promise<boolean> {
  return fs.existsSync(`/run/netns/${name}`);
}

/** Delete the interface `name` inside network namespace `netns` when both exist (its veth peer goes with it). */
export async function deleteLink(netns: string, name: string): Promise<void> {
  if (!(await netnsExists(netns))) return;
  const links = JSON.parse(await ip('-j', '-n', netns, 'link', 'show')) as Array<{ ifname: string }>;
  if (links.some((link) => link.ifname === name)) await ip('-n', netns, 'link', 'del', name);
}

/** PIDs in a cgroup v2 directory (empty when it is gone). */
export function cgroupPids(dir: string): number[] {
  try {
    return fs.readFileSync(`${dir}/cgroup.procs`, 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** SIGKILL everything in a cgroup subtree (cgroup.kill, Linux 5.14+), falling back to signalling each pid. */
export function killCgroup(dir: string): void {
  if (!fs.existsSync(dir)) return;
  try {
    fs.writeFileSync(`${dir}/cgroup.kill`, '1');
    return;
  } catch {
    // Older kernels have no cgroup.kill: signal what is listed.
  }
  for (const pid of cgroupPids(dir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll until `check` is true or the deadline passes; returns the last result. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(stepMs);
  }
}

/**
 * Joins the cgroup given as $1, then execs the rest: every process the sandbox starts is in its
 * cgroup from its first instruction. The open-files limit is raised to the hard limit: the agent
 * holds two sockets per proxied connection.
 */
export const CGROUP_EXEC = 'echo $$ > "$1/cgroup.procs" && { ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; } && shift && exec "$@"';

/**
 * Start argv detached, inside cgroupDir (a cgroup the sandbox made, never the root one), with stdout
 * and stderr appended to logFile; returns its pid, which stays the pid of argv[0] after the exec.
 */
export function spawnInCgroup(cgroupDir: string, argv: string[], logFile: string, env: NodeJS.ProcessEnv, cwd?: string): number {
  const out = fs.openSync(logFile, 'a');
  const child = spawn('/bin/sh', ['-c', CGROUP_EXEC, 'ferry-spawn', cgroupDir, ...argv], {
    detached: true,
    stdio: ['ignore', out, out],
    env,
    cwd,
  });
  fs.closeSync(out);
  child.unref();
  if (child.pid === undefined) throw new SandboxSystemError(`could not start ${argv.join(' ')}`);
  return child.pid;
}

/**
 * Make IPv6 work at once in a namespace the sandbox has just made, before any interface is in it (a new interface
 * copies the namespace's `default` settings, ip-sysctl.rst). disable_ipv6=0: a host that disables IPv6 can hand that
 * on to new namespaces (net.core.devconf_inherit_init_net). accept_dad=0: duplicate address detection would hold
 * every address tentative — unusable as a source — for about a second (RFC 4862 §5.4); the sandbox's addresses
 * are unique by construction, so `ip addr add … nodad` skips it for them and this for the link-local ones.
 * `forwarding` makes the namespace route between its interfaces (a node, between its pods' veths and the fabric).
 */
export async function enableIpv6(netns: string, options: { forwarding: boolean }): Promise<void> {
  const settings = [
    'net.ipv6.conf.all.disable_ipv6=0',
    'net.ipv6.conf.default.disable_ipv6=0',
    'net.ipv6.conf.all.accept_dad=0',
    'net.ipv6.conf.default.accept_dad=0',
    ...(options.forwarding ? ['net.ipv6.conf.all.forwarding=1'] : []),
  ];
  await run('ip', ['netns', 'exec', netns, 'sysctl', '-qw', ...settings]);
}

/** Fails before anything is built when this kernel has no IPv6 (booted with ipv6.disable=1, or built without it). */
export function assertIpv6Available(what: string): void {
  if (!fs.existsSync('/proc/sys/net/ipv6')) {
    throw new SandboxSystemError(
      `${what} needs IPv6, which this kernel does not offer (no /proc/sys/net/ipv6: ` +
        'booted with ipv6.disable=1, or built without CONFIG_IPV6)',
    );
  }
}
