// `ferry check` on this machine, run as its binary, with features masked for real rather than mocked: bpffs and
// cgroup2 unmounted in a private mount namespace (unshare), a capability dropped from the bounding set
// (setpriv), a cgroup v1 directory or a plain one given as --cgroup, another mesh's CNI conflist in a CNI
// directory the test made. Root-only (the probe loads BPF programs; unshare and setpriv need root).
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { NodeCheckReport } from '../../src/app';
import { cgroup2Root } from '../../src/sandbox/system';
import { assertRoot, mountsOfType } from './helpers';

const FERRY = path.resolve(__dirname, '..', '..', '..', 'bin', 'ferry.js');
let dir: string;

before(() => {
  assertRoot();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrytest-check-'));
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(fs.existsSync(dir), false);
});

/** Runs argv (ending in `ferry check … -o json`); the exit code and the parsed report. */
function check(argv: string[]): Promise<{ code: number; report: NodeCheckReport }> {
  return new Promise((resolve, reject) => {
    execFile(argv[0], argv.slice(1), { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? -1) : 0;
      try {
        resolve({ code, report: JSON.parse(stdout) as NodeCheckReport });
      } catch {
        reject(new Error(`ferry check printed no JSON (exit ${code}):\n${stdout}\n${stderr}`));
      }
    });
  });
}

function failed(report: NodeCheckReport): Record<string, string | undefined> {
  return Object.fromEntries(report.checks.filter((c) => !c.ok).map((c) => [c.name, c.remedy]));
}

const cniDir = (): string => {
  const cni = path.join(dir, 'cni');
  fs.mkdirSync(cni, { recursive: true });
  return cni;
};

describe('ferry check', { timeout: 180_000 }, () => {
  test('on this machine, with a cgroup v2 directory and a pin directory below bpffs, every check passes: exit 0', async () => {
    const { code, report } = await check([
      process.execPath,
      FERRY,
      'check',
      '--cgroup',
      cgroup2Root(),
      '--pin-dir',
      '/sys/fs/bpf/ferrytest-check',
      '--cni-conf-dir',
      cniDir(),
      '-o',
      'json',
    ]);
    assert.deepEqual(failed(report), {});
    assert.equal(report.ok, true);
    assert.equal(code, 0);
    const names = report.checks.map((c) => c.name);
    for (const name of [
      'bpf_syscall',
      'cgroup2',
      'bpffs',
      'prog_cgroup_sock_addr',
      'prog_sk_lookup',
      'prog_sock_ops',
      'map_sockhash',
      'cap_bpf',
      'cap_net_admin',
      'nodejs',
      'cgroup_path',
      'pin_dir',
      'other_mesh',
    ]) {
      assert.ok(names.includes(name), `check ${name} is run`);
    }
  });

  test('bpffs and cgroup2 unmounted (a private mount namespace): each is reported with its remedy, exit 1', async () => {
    const unified = mountsOfType('cgroup2');
    const script = [...mountsOfType('bpf').map((m) => `umount ${m}`), ...unified.map((m) => `umount ${m}`), `exec "$@"`].join(' && ');
    const { code, report } = await check([
      'unshare',
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      script,
      'ferry-check',
      process.execPath,
      FERRY,
      'check',
      '--pin-dir',
      '/sys/fs/bpf/ferrytest-check',
      '--cni-conf-dir',
      cniDir(),
      '-o',
      'json',
    ]);
    assert.equal(code, 1);
    const failures = failed(report);
    assert.deepEqual(Object.keys(failures).sort(), ['bpffs', 'cgroup2', 'pin_dir']);
    assert.match(failures.bpffs ?? '', /mount -t bpf bpf \/sys\/fs\/bpf/);
    assert.match(failures.cgroup2 ?? '', /cgroup2/);
    assert.match(failures.pin_dir ?? '', /mount -t bpf/);
    // The host's mounts are untouched.
    assert.ok(mountsOfType('bpf').includes('/sys/fs/bpf'));
    assert.deepEqual(mountsOfType('cgroup2'), unified);
  });

  test('--cgroup on a cgroup v1 hierarchy (or a plain directory) fails, naming the hierarchy and the cgroup2 mount to use', async () => {
    const v1 = fs
      .readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' '))
      .find((f) => f[2] === 'cgroup')?.[1];
    const plain = path.join(dir, 'not-a-cgroup');
    fs.mkdirSync(plain, { recursive: true });
    for (const target of v1 !== undefined ? [v1, plain] : [plain]) {
      const { code, report } = await check([
        process.execPath,
        FERRY,
        'check',
        '--cgroup',
        target,
        '--cni-conf-dir',
        cniDir(),
        '-o',
        'json',
      ]);
      assert.equal(code, 1, target);
      const entry = report.checks.find((c) => c.name === 'cgroup_path');
      assert.equal(entry?.ok, false, target);
      assert.match(entry?.detail ?? '', /not cgroup v2/);
      assert.match(entry?.remedy ?? '', target === v1 ? /cgroup v1 hierarchy/ : /cgroup2 mount/);
    }
  });

  test('CAP_NET_ADMIN dropped from the bounding set: reported with the capability to grant', async () => {
    const { code, report } = await check([
      'setpriv',
      '--bounding-set',
      '-net_admin',
      '--inh-caps',
      '-net_admin',
      process.execPath,
      FERRY,
      'check',
      '--cni-conf-dir',
      cniDir(),
      '-o',
      'json',
    ]);
    assert.equal(code, 1);
    assert.match(failed(report).cap_net_admin ?? '', /NET_ADMIN/);
  });

  test("another mesh's CNI plugin in the CNI configuration is named, with its file", async () => {
    const cni = path.join(dir, 'cni-istio');
    fs.mkdirSync(cni);
    fs.writeFileSync(
      path.join(cni, '10-calico.conflist'),
      JSON.stringify({ cniVersion: '1.0.0', name: 'k8s-pod-network', plugins: [{ type: 'calico' }, { type: 'istio-cni' }] }),
    );
    const { code, report } = await check([process.execPath, FERRY, 'check', '--cni-conf-dir', cni, '-o', 'json']);
    assert.equal(code, 1);
    const entry = report.checks.find((c) => c.name === 'other_mesh');
    assert.equal(entry?.ok, false);
    assert.match(entry?.detail ?? '', /Istio CNI: plugin istio-cni in .*10-calico\.conflist/);
    assert.match(entry?.remedy ?? '', /uninstall the other mesh/);
  });
});
