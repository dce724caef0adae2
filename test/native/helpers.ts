// Shared setup for the root-only src/native tests: real network namespaces, veth pairs between
// them, cgroups, bpffs pins and fixture BPF objects, each created under a unique <prefix>-<random>
// name (ferrytest-native unless a test file gives its own) and removed by that exact name.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Root-only tests fail (never skip) without root, so CI cannot pass them by not running them. */
export function assertRoot(): void {
  assert.equal(process.getuid?.(), 0, 'test/native needs root (bpf(), setns(), ip netns, cgroups): run as root');
}

export function uniqueName(prefix = 'ferrytest-native'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** Runs a command, returning stdout; a failure throws with its stderr. */
export function run(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Mount points by filesystem type, from /proc/self/mounts (proc(5)). */
export function mountsOfType(type: string): string[] {
  return fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields[2] === type)
    .map((fields) => fields[1].replace(/\\(\d{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))));
}

/** bpffs at /sys/fs/bpf, mounted if missing (left mounted: other tests and the agent expect it). */
export function ensureBpffs(): void {
  if (!mountsOfType('bpf').includes('/sys/fs/bpf')) run('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf']);
}

export function cgroup2Mount(): string {
  const mounts = mountsOfType('cgroup2');
  assert.ok(mounts.length > 0, 'no cgroup2 mount in /proc/self/mounts');
  return mounts[0];
}

/** A network namespace from `ip netns add`, with lo up; remove() deletes it by its exact name. */
export interface TestNetns {
  name: string;
  path: string;
  remove(): void;
}

export function createNetns(prefix?: string): TestNetns {
  const name = uniqueName(prefix);
  run('ip', ['netns', 'add', name]);
  const netns: TestNetns = {
    name,
    path: `/run/netns/${name}`,
    remove() {
      try {
        run('ip', ['netns', 'del', name]);
      } catch {
        // already gone
      }
    },
  };
  try {
    run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  } catch (error) {
    netns.remove();
    throw error;
  }
  return netns;
}

/**
 * A veth pair made directly inside two test namespaces — `name` in a, `peer` in b, both up — so
 * neither end ever exists in the host's namespace. Interface names are per namespace, so fixed
 * names cannot collide with anyone's; deleting either namespace deletes the pair.
 */
export function createVeth(a: TestNetns, name: string, b: TestNetns, peer: string): void {
  run('ip', ['-n', a.name, 'link', 'add', name, 'type', 'veth', 'peer', 'name', peer, 'netns', b.name]);
  run('ip', ['-n', a.name, 'link', 'set', name, 'up']);
  run('ip', ['-n', b.name, 'link', 'set', peer, 'up']);
}

/** Runs `ip -n NETNS args...` and returns its stdout. */
export function ipIn(netns: TestNetns, args: string[]): string {
  return run('ip', ['-n', netns.name, ...args]);
}

/** Compiled test/native/fixtures/<name>.js (a child-process script compiled by tsc), by path. */
export function fixtureScript(name: string): string {
  return path.join(__dirname, 'fixtures', `${name}.js`);
}

/** Compiles test/native/fixtures/<name>.bpf.c (sources stay in the repo; tsc copies no .c files). */
export function compileFixture(name: string, outDir: string): string {
  const source = path.resolve(__dirname, '..', '..', '..', 'test', 'native', 'fixtures', `${name}.bpf.c`);
  const output = path.join(outDir, `${name}.bpf.o`);
  run('clang', ['-O2', '-g', '-target', 'bpf', `-I/usr/include/${os.machine()}-linux-gnu`, '-c', source, '-o', output]);
  return output;
}

/** Inode of a namespace file: equal inodes, same namespace (namespaces(7)). */
export function nsInode(nsPath: string): number {
  return fs.statSync(nsPath).ino;
}

export function u32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value);
  return buffer;
}

export function u64(value: bigint): Buffer {
  const buffer = Buffer.alloc(8);
  buffer.writeBigUInt64LE(value);
  return buffer;
}
