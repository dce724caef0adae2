// Shared set-up for root integration tests: a real sandbox (network namespaces, cgroups, BPF in
// this machine's kernel) under a test-only prefix, commands inside its pods, and a check that
// nothing of it is left behind.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { forgeLeaf, type ForgeOptions } from '../fixtures/certs';

const execFileAsync = promisify(execFile);

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const FERRY = path.join(REPO, 'bin', 'ferry.js');
export const TOOLS = path.join(REPO, 'test', 'fixtures', 'tools');
export const NODE = process.execPath;

/** Root-only tests must fail, not skip, when they cannot run (CI runs as root). */
export function requireRoot(): void {
  assert.equal(process.getuid?.(), 0, 'integration tests need root: they create network namespaces, cgroups and BPF programs');
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function ferry(args: string[], timeoutMs = 120_000): Promise<CommandResult> {
  try {
    const { stdout, stderr } = await execFileAsync(NODE, [FERRY, ...args], { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

export async function sh(command: string, args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(command, args, { maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

export class TestSandbox {
  readonly manifestFile: string;
  private readonly dir: string;
  private caDir?: string;

  /** `upArgs`: extra `ferry sandbox up` arguments, e.g. ['--agent-arg=--cert-ttl-seconds=60']. */
  constructor(
    readonly prefix: string,
    manifest: string,
    private readonly upArgs: string[] = [],
  ) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
    this.manifestFile = path.join(this.dir, 'manifest.yaml');
    fs.writeFileSync(this.manifestFile, manifest);
  }

  get logDir(): string {
    return `/run/ferry/${this.prefix}/logs`;
  }

  async up(): Promise<void> {
    // A sandbox left by an interrupted earlier run of this test would block `up`: remove it by name.
    if (fs.existsSync(`/run/ferry/${this.prefix}`)) await ferry(['sandbox', 'down', '--prefix', this.prefix]);
    const result = await ferry(['sandbox', 'up', '-f', this.manifestFile, '--prefix', this.prefix, '--log-level', 'debug', ...this.upArgs]);
    assert.equal(result.code, 0, `sandbox up failed:\n${result.stdout}\n${result.stderr}`);
  }

  async down(): Promise<CommandResult> {
    const result = await ferry(['sandbox', 'down', '--prefix', this.prefix]);
    fs.rmSync(this.dir, { recursive: true, force: true });
    return result;
  }

  /** Run a command in a pod; stdout parsed as the tool's one JSON line. */
  async exec(pod: string, argv: string[], timeoutMs = 120_000): Promise<CommandResult> {
    return ferry(['sandbox', 'exec', '--prefix', this.prefix, pod, '--', ...argv], timeoutMs);
  }

  async client(pod: string, args: string[], timeoutMs = 120_000): Promise<Record<string, unknown>> {
    const result = await this.exec(pod, [NODE, path.join(TOOLS, 'tcp-client.js'), ...args], timeoutMs);
    const line = result.stdout.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new Error(`tcp-client ${args.join(' ')} in ${pod} printed no JSON (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
    }
  }

  /** A long-lived client in a pod, driven over stdin. */
  hold(pod: string, host: string, port: number): ChildProcessWithoutNullStreams {
    return spawn(NODE, [
      FERRY,
      'sandbox',
      'exec',
      '--prefix',
      this.prefix,
      pod,
      '--',
      NODE,
      path.join(TOOLS, 'tcp-client.js'),
      'hold',
      host,
      String(port),
    ]);
  }

  agentLog(node: string): string {
    const file = path.join(this.logDir, `agent-${node}.log`);
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  }

  /** Access-log records (one JSON line per finished connection) of a node's agent. */
  accessRecords(node: string): Array<Record<string, unknown>> {
    return this.agentLog(node)
      .split('\n')
      .filter((l) => l.includes('"component":"access"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** `kubectl …` against the sandbox's API server. */
  async kubectl(args: string[], timeoutMs = 60_000): Promise<CommandResult> {
    return ferry(['sandbox', 'kubectl', '--prefix', this.prefix, ...args], timeoutMs);
  }

  /**
   * The mesh CA as the controller keeps it (the Secret ferry-system/ferry-ca: ca.json and its PEM files),
   * written into a fresh directory of the test's own, for fixtures that sign as the CA would.
   */
  async caFilesDir(): Promise<string> {
    const result = await this.kubectl(['-n', 'ferry-system', 'get', 'secret', 'ferry-ca', '-o', 'json']);
    assert.equal(result.code, 0, `reading the CA Secret: ${result.stderr}`);
    const data = (JSON.parse(result.stdout) as { data?: Record<string, string> }).data ?? {};
    const dir = fs.mkdtempSync(path.join(this.dir, 'ca-'));
    for (const [name, value] of Object.entries(data)) {
      assert.match(name, /^[\w.-]+$/, `CA Secret key ${name}`);
      fs.writeFileSync(path.join(dir, name), Buffer.from(value, 'base64'), { mode: 0o600 });
    }
    return dir;
  }

  /**
   * A leaf forged with the controller's current issuer (its CA Secret, read once: callers do not rotate meanwhile)
   * and the mesh's roots, written under `dir` as NAME.crt, NAME.key and bundle.pem: the `--cert`, `--key` and
   * `--ca` flags of the HBONE client tool.
   */
  async forgedCredentials(dir: string, name: string, options: ForgeOptions): Promise<string[]> {
    this.caDir ??= await this.caFilesDir();
    const forged = await forgeLeaf(this.caDir, options);
    const files = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`), ca: path.join(dir, 'bundle.pem') };
    fs.writeFileSync(files.cert, forged.chainPem.join('\n'));
    fs.writeFileSync(files.key, forged.keyPem, { mode: 0o600 });
    fs.writeFileSync(files.ca, forged.bundlePem.join('\n'));
    return ['--cert', files.cert, '--key', files.key, '--ca', files.ca];
  }

  async status(): Promise<{
    dualStack: boolean;
    nodes: Array<{ name: string; agentPid?: number; ready: boolean; cgroup: string }>;
    /** `ip` is the IPv4 address; `ips` every address, IPv4 first (two with `up --dual-stack`). */
    pods: Array<{ namespace: string; name: string; ip: string; ips: string[] }>;
    services: Array<{ namespace: string; name: string; vip: string }>;
  }> {
    const result = await ferry(['sandbox', 'status', '--prefix', this.prefix, '-o', 'json']);
    assert.equal(result.code, 0, result.stderr);
    return JSON.parse(result.stdout);
  }
}

/** Wait until `check` holds, bounded in time. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Everything a sandbox with this prefix could have made, found by its exact names. */
export async function leftovers(prefix: string, netnsNames: string[]): Promise<string[]> {
  const found: string[] = [];
  const netnsList = (await sh('ip', ['netns', 'list']))
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter(Boolean);
  for (const name of netnsNames) if (netnsList.includes(name)) found.push(`netns ${name}`);
  for (const name of netnsNames) if (fs.existsSync(`/etc/netns/${name}`)) found.push(`/etc/netns/${name}`);
  if (fs.existsSync(`/sys/fs/bpf/${prefix}`)) found.push(`/sys/fs/bpf/${prefix}`);
  if (fs.existsSync(`/run/ferry/${prefix}`)) found.push(`/run/ferry/${prefix}`);
  const cgroup2 = fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[2] === 'cgroup2')?.[1];
  if (cgroup2 && fs.existsSync(path.join(cgroup2, prefix))) found.push(`cgroup ${path.join(cgroup2, prefix)}`);
  const links = await sh('ip', ['-o', 'link', 'show']);
  for (const line of links.split('\n')) if (line.includes(`${prefix}-`)) found.push(`root-netns link ${line.trim()}`);
  const ps = await sh('ps', ['-eo', 'pid,args']);
  for (const line of ps.split('\n')) {
    if (line.includes(`/run/ferry/${prefix}/`) || line.includes(`--prefix ${prefix} `)) {
      if (!line.includes('ps -eo')) found.push(`process ${line.trim()}`);
    }
  }
  return found;
}

/**
 * The argv of the echo server fixture on `port`, as a YAML flow sequence for a container's `command`. It listens on
 * 0.0.0.0 unless `host` says otherwise (`::` takes IPv6 too, and shows IPv4 peers as ::ffff:a.b.c.d).
 */
export function echoCommand(port: number, host?: string): string {
  return `["${NODE}", "${path.join(TOOLS, 'echo-server.js')}", "${port}"${host !== undefined ? `, "${host}"` : ''}]`;
}

/**
 * Inside a describe(): bring the sandbox up before its tests and, after them, remove it and check
 * that nothing it made is left (namespaces, DNS files, pins, cgroups, state, processes). `ip`
 * holds each pod's address by pod name once the tests run. `cleanup` runs first on the way out.
 */
export function withSandbox(sandbox: TestSandbox, cleanup: () => void = () => undefined): { ip: Record<string, string> } {
  const pods = { ip: {} as Record<string, string> };
  let netnsNames: string[] = [];
  before(async () => {
    requireRoot();
    await sandbox.up();
    const status = await sandbox.status();
    Object.assign(pods.ip, Object.fromEntries(status.pods.map((p) => [p.name, p.ip])));
    // `-prom` is there only with --prometheus; listing it always makes sure no Prometheus is left either.
    netnsNames = [
      `${sandbox.prefix}-fabric`,
      `${sandbox.prefix}-prom`,
      ...status.nodes.map((n) => `${sandbox.prefix}-node-${n.name}`),
      ...status.pods.map((p) => `${sandbox.prefix}-pod-${p.namespace}-${p.name}`),
    ];
  });
  after(async () => {
    cleanup();
    const result = await sandbox.down();
    assert.equal(result.code, 0, `sandbox down failed: ${result.stderr}`);
    assert.deepEqual(await leftovers(sandbox.prefix, netnsNames), [], 'sandbox down left something behind');
  });
  return pods;
}
