// `ferry check`: a node's preflight. What the agent needs from this machine — the kernel's BPF
// features and helpers-bearing program types, cgroup v2 and bpffs where the agent is told to use them,
// its capabilities, a Node.js/nghttp2 without the known HTTP/2 floods — and another mesh's node agent
// or CNI plugin in the way. Each failure carries its remedy; the exit code says whether all passed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ProbeReport } from '../native';
import { http2RuntimeProblem } from '../proxy';

export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
  /** What to do about a failure. */
  remedy?: string;
}

export interface NodeCheckReport {
  kernelRelease: string;
  ok: boolean;
  checks: CheckResult[];
}

export interface NodeCheckOptions {
  /** The agent's --cgroup: must be a directory of a cgroup v2 hierarchy. */
  cgroupPath?: string;
  /** The agent's --pin-dir: must be (or be made) on a bpf filesystem. */
  pinDir?: string;
  /** Where the node's CNI configuration lives (another mesh's plugin shows there). */
  cniConfDir?: string;
}

/** What the checks read of the machine; the CLI passes the real ones, tests what they mask. */
export interface NodeCheckDeps {
  probe(): ProbeReport;
  versions: NodeJS.ProcessVersions;
  /** statfs(2)'s filesystem type of a path (fs.statfsSync). */
  filesystemType(target: string): number;
  /** Names of the processes running (/proc/PID/comm). */
  processNames(): string[];
  /** File names in a directory, [] when it does not exist. */
  listDir(dir: string): string[];
  readFile(file: string): string;
}

/** statfs(2) f_type values (linux/magic.h). */
const CGROUP2_SUPER_MAGIC = 0x63677270;
const CGROUP_SUPER_MAGIC = 0x27e0eb;
const TMPFS_MAGIC = 0x01021994;
const BPF_FS_MAGIC = 0xcafe4a11;

/** The remedy for each of the kernel probe's checks (native/src/probe.cc). */
const PROBE_REMEDIES: Record<string, string> = {
  bpf_syscall:
    'run the agent as root or with CAP_BPF (CAP_SYS_ADMIN before 5.8); check kernel.unprivileged_bpf_disabled is not blocking root and no seccomp profile denies bpf()',
  cgroup2:
    'mount cgroup v2 (mount -t cgroup2 none /sys/fs/cgroup, or boot with systemd.unified_cgroup_hierarchy=1); on a hybrid host the agent can use /sys/fs/cgroup/unified',
  bpffs:
    'mount the bpf filesystem: mount -t bpf bpf /sys/fs/bpf (in a DaemonSet: a hostPath volume of /sys/fs/bpf with mountPropagation: Bidirectional)',
  btf: 'use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 5.4 are)',
  prog_cgroup_sock_addr: 'use kernel 4.17 or later with CONFIG_CGROUP_BPF=y',
  prog_sk_lookup: 'use kernel 5.9 or later (sk_lookup steers inbound connections)',
  prog_sock_ops: 'use kernel 4.13 or later with CONFIG_CGROUP_BPF=y',
  map_sockhash: 'use kernel 4.18 or later with CONFIG_BPF_STREAM_PARSER=y',
  cap_bpf: 'grant CAP_BPF (securityContext.capabilities.add: [BPF]; CAP_SYS_ADMIN before kernel 5.8)',
  cap_net_admin: 'grant CAP_NET_ADMIN (securityContext.capabilities.add: [NET_ADMIN])',
  cap_sys_admin: 'grant CAP_SYS_ADMIN (securityContext.capabilities.add: [SYS_ADMIN]): setns(2) into pod network namespaces needs it',
  so_netns_cookie: 'use kernel 5.14 or later (SO_NETNS_COOKIE tells pods apart)',
  ip_transparent: 'grant CAP_NET_ADMIN (IP_TRANSPARENT delivers with the client address)',
  policy_routing: 'use a kernel with CONFIG_IP_MULTIPLE_TABLES=y (and IPV6_MULTIPLE_TABLES for IPv6)',
};

/** Process names of other meshes' node agents and CNI installers. */
const OTHER_MESH_PROCESSES: Record<string, string> = {
  ztunnel: 'Istio ambient (ztunnel)',
  'istio-cni': 'Istio CNI',
  'install-cni': 'Istio CNI installer',
  'cilium-agent': 'Cilium',
  'linkerd-cni': 'Linkerd CNI',
  'linkerd2-proxy': 'Linkerd (a sidecar on this node)',
};

/** CNI plugin types of other meshes, as they appear in a conflist's plugins. */
const OTHER_MESH_CNI: Record<string, string> = {
  'istio-cni': 'Istio CNI',
  'linkerd-cni': 'Linkerd CNI',
  'cilium-cni': 'Cilium',
};

export function realNodeCheckDeps(probe: () => ProbeReport): NodeCheckDeps {
  return {
    probe,
    versions: process.versions,
    filesystemType: (target) => Number(fs.statfsSync(target).type),
    processNames() {
      const names: string[] = [];
      for (const entry of fs.readdirSync('/proc')) {
        if (!/^[0-9]+$/.test(entry)) continue;
        try {
          names.push(fs.readFileSync(`/proc/${entry}/comm`, 'utf8').trim());
        } catch {
          // gone meanwhile
        }
      }
      return names;
    },
    listDir(dir) {
      try {
        return fs.readdirSync(dir);
      } catch {
        return [];
      }
    },
    readFile: (file) => fs.readFileSync(file, 'utf8'),
  };
}

function filesystemName(type: number): string {
  switch (type) {
    case CGROUP2_SUPER_MAGIC:
      return 'cgroup2';
    case CGROUP_SUPER_MAGIC:
      return 'cgroup v1';
    case BPF_FS_MAGIC:
      return 'bpf';
    case TMPFS_MAGIC:
      return 'tmpfs';
    default:
      return `filesystem 0x${type.toString(16)}`;
  }
}

/** The nearest existing directory at or above `target` (the agent makes its pin directory below bpffs). */
function nearestExisting(target: string, deps: NodeCheckDeps): { at: string; type: number } | undefined {
  for (let at = path.resolve(target); ; at = path.dirname(at)) {
    try {
      return { at, type: deps.filesystemType(at) };
    } catch {
      if (at === path.dirname(at)) return undefined;
    }
  }
}

function cgroupCheck(cgroupPath: string, deps: NodeCheckDeps): CheckResult {
  let type: number;
  try {
    type = deps.filesystemType(cgroupPath);
  } catch (err) {
    return {
      name: 'cgroup_path',
      ok: false,
      detail: `--cgroup ${cgroupPath}: ${(err as Error).message}`,
      remedy: 'give --cgroup an existing directory of the cgroup v2 hierarchy above every pod (e.g. /sys/fs/cgroup, or its kubepods slice)',
    };
  }
  if (type === CGROUP2_SUPER_MAGIC)
    return { name: 'cgroup_path', ok: true, detail: `--cgroup ${cgroupPath} is in the cgroup v2 hierarchy` };
  return {
    name: 'cgroup_path',
    ok: false,
    detail: `--cgroup ${cgroupPath} is on ${filesystemName(type)}, not cgroup v2: the connect and sock_ops programs attach only to cgroup v2 directories`,
    remedy:
      type === CGROUP_SUPER_MAGIC
        ? 'this is a cgroup v1 hierarchy: point --cgroup at the cgroup2 mount (e.g. /sys/fs/cgroup/unified on a hybrid host) or boot with systemd.unified_cgroup_hierarchy=1'
        : 'point --cgroup at a directory of the cgroup2 mount (see /proc/self/mountinfo for cgroup2)',
  };
}

function pinDirCheck(pinDir: string, deps: NodeCheckDeps): CheckResult {
  const found = nearestExisting(pinDir, deps);
  if (found?.type === BPF_FS_MAGIC)
    return { name: 'pin_dir', ok: true, detail: `--pin-dir ${pinDir} is on the bpf filesystem (${found.at})` };
  return {
    name: 'pin_dir',
    ok: false,
    detail: `--pin-dir ${pinDir} is ${found ? `on ${filesystemName(found.type)} (${found.at})` : 'nowhere that exists'}, not on a bpf filesystem: pinned programs and maps would not outlive the agent`,
    remedy:
      'mount -t bpf bpf /sys/fs/bpf and keep --pin-dir below it (in a DaemonSet: a hostPath volume of /sys/fs/bpf, mountPropagation: Bidirectional)',
  };
}

function otherMeshCheck(options: NodeCheckOptions, deps: NodeCheckDeps): CheckResult {
  const found = new Set<string>();
  for (const name of deps.processNames()) {
    const mesh = OTHER_MESH_PROCESSES[name];
    if (mesh) found.add(`${mesh}: process ${name}`);
  }
  const dir = options.cniConfDir ?? '/etc/cni/net.d';
  for (const file of deps.listDir(dir)) {
    if (!/\.(conflist|conf|json)$/.test(file)) continue;
    let text: string;
    try {
      text = deps.readFile(path.join(dir, file));
    } catch {
      continue;
    }
    for (const [type, mesh] of Object.entries(OTHER_MESH_CNI)) {
      if (new RegExp(`"type"\\s*:\\s*"${type}"`).test(text)) found.add(`${mesh}: plugin ${type} in ${path.join(dir, file)}`);
    }
  }
  if (found.size === 0) return { name: 'other_mesh', ok: true, detail: `no other mesh's node agent or CNI plugin (processes, ${dir})` };
  return {
    name: 'other_mesh',
    ok: false,
    detail: `another mesh captures traffic on this node: ${[...found].sort().join('; ')}`,
    remedy: "uninstall the other mesh from this node first: two meshes redirecting the same pods' traffic break each other",
  };
}

/** Every check of this node, in a stable order. */
export function checkNode(options: NodeCheckOptions, deps: NodeCheckDeps): NodeCheckReport {
  const report = deps.probe();
  const checks: CheckResult[] = report.checks.map((c) => ({
    name: c.name,
    ok: c.ok,
    detail: c.detail,
    ...(c.ok ? {} : { remedy: PROBE_REMEDIES[c.name] ?? 'see the detail' }),
  }));
  const runtime = http2RuntimeProblem(deps.versions);
  checks.push(
    runtime === undefined
      ? { name: 'nodejs', ok: true, detail: `Node.js ${deps.versions.node}, nghttp2 ${deps.versions.nghttp2}` }
      : { name: 'nodejs', ok: false, detail: runtime, remedy: 'run the agent on a current Node.js LTS (the Dockerfile uses one)' },
  );
  if (options.cgroupPath !== undefined) checks.push(cgroupCheck(options.cgroupPath, deps));
  if (options.pinDir !== undefined) checks.push(pinDirCheck(options.pinDir, deps));
  checks.push(otherMeshCheck(options, deps));
  return { kernelRelease: report.kernelRelease, ok: checks.every((c) => c.ok), checks };
}

/** The report for people: one line per check, a remedy under each failure. */
export function formatNodeCheck(report: NodeCheckReport): string {
  const lines = [`kernel ${report.kernelRelease}`];
  for (const c of report.checks) {
    lines.push(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name.padEnd(22)} ${c.detail}`);
    if (!c.ok && c.remedy) lines.push(`     ${''.padEnd(22)} remedy: ${c.remedy}`);
  }
  const failed = report.checks.filter((c) => !c.ok).length;
  lines.push(failed === 0 ? 'all checks passed' : `${failed} check(s) failed`);
  return `${lines.join('\n')}\n`;
}
