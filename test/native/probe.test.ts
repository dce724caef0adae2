// probeKernel() against the real kernel: this machine (root, bpffs and cgroup2 mounted, kernel
// with BTF and sk_lookup) must pass every check. Root-only: fails when not root.
import * as assert from 'node:assert/strict';
import * as os from 'node:os';
import { before, test } from 'node:test';

import { assertKernelReady, probeKernel } from '../../src/native';
import { assertRoot, cgroup2Mount, ensureBpffs } from './helpers';

before(() => {
  assertRoot();
  ensureBpffs();
});

test('probe reports every check ok on this machine', () => {
  const report = probeKernel();
  assert.equal(report.kernelRelease, os.release());
  assert.deepEqual(
    report.checks.map((check) => check.name),
    [
      'bpf_syscall',
      'cgroup2',
      'bpffs',
      'btf',
      'prog_cgroup_sock_addr',
      'prog_sk_lookup',
      'prog_sock_ops',
      'map_sockhash',
      'cap_bpf',
      'cap_net_admin',
      'cap_sys_admin',
      'so_netns_cookie',
      'ip_transparent',
      'policy_routing',
    ],
  );
  const failed = report.checks.filter((check) => !check.ok);
  assert.deepEqual(failed, []);
  for (const check of report.checks) assert.ok(check.detail.length > 0, `${check.name} has no detail`);
  assertKernelReady(report);
});

test('the transparent-proxy checks say what they found', () => {
  const checks = new Map(probeKernel().checks.map((check) => [check.name, check]));
  assert.match(checks.get('ip_transparent')?.detail ?? '', /IP_TRANSPARENT can be set/);
  assert.equal(checks.get('policy_routing')?.detail, 'policy routing rules: IPv4 available, IPv6 available');
});

test('the cgroup2 check names the mount point it found', () => {
  const check = probeKernel().checks.find((c) => c.name === 'cgroup2');
  assert.ok(check);
  assert.ok(check.detail.includes(cgroup2Mount()), check.detail);
});
