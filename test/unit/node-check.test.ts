// The node preflight's checks over what they read (the probe, versions, filesystems, processes, CNI files),
// and its text report. The machine itself is checked, with features masked for real, in test/native/check.test.ts.
import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkNode, formatNodeCheck } from '../../src/app';
import type { NodeCheckDeps } from '../../src/app/check';

const CGROUP2 = 0x63677270;
const BPF = 0xcafe4a11;

function deps(overrides: Partial<NodeCheckDeps> = {}): NodeCheckDeps {
  return {
    probe: () => ({
      kernelRelease: '6.1.0',
      checks: [
        { name: 'bpf_syscall', ok: true, detail: 'bpf() loads programs' },
        { name: 'prog_sk_lookup', ok: false, detail: 'sk_lookup programs do not load (5.9+)' },
      ],
    }),
    versions: { ...process.versions, node: '20.20.2', nghttp2: '1.61.0' },
    filesystemType: (target) => {
      if (target.startsWith('/sys/fs/cgroup')) return CGROUP2;
      if (target === '/sys/fs/bpf') return BPF;
      if (target.startsWith('/sys/fs/bpf/')) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return 0xef53;
    },
    processNames: () => ['systemd', 'node'],
    listDir: () => [],
    readFile: () => '',
    ...overrides,
  };
}

describe('checkNode', () => {
  test('a probe failure carries its remedy; passing checks carry none', () => {
    const report = checkNode({}, deps());
    assert.equal(report.ok, false);
    const skLookup = report.checks.find((c) => c.name === 'prog_sk_lookup');
    assert.match(skLookup?.remedy ?? '', /kernel 5\.9/);
    assert.equal(report.checks.find((c) => c.name === 'bpf_syscall')?.remedy, undefined);
  });

  test('a Node.js with the known HTTP/2 floods fails with the runtime problem named', () => {
    const report = checkNode({}, deps({ versions: { ...process.versions, node: '20.11.0', nghttp2: '1.59.0' } }));
    const nodejs = report.checks.find((c) => c.name === 'nodejs');
    assert.equal(nodejs?.ok, false);
    assert.match(nodejs?.detail ?? '', /nghttp2|Node/);
    assert.match(nodejs?.remedy ?? '', /LTS/);
  });

  test('the pin directory counts from its nearest existing parent; anything but bpffs fails', () => {
    assert.equal(checkNode({ pinDir: '/sys/fs/bpf/ferry/node-a' }, deps()).checks.find((c) => c.name === 'pin_dir')?.ok, true);
    const off = checkNode({ pinDir: '/var/lib/ferry' }, deps()).checks.find((c) => c.name === 'pin_dir');
    assert.equal(off?.ok, false);
    assert.match(off?.detail ?? '', /filesystem 0xef53/);
  });

  test('another mesh found by its process and its CNI plugin type', () => {
    const report = checkNode(
      { cniConfDir: '/etc/cni/net.d' },
      deps({
        processNames: () => ['ztunnel'],
        listDir: () => ['05-cilium.conflist', 'README'],
        readFile: () => '{"plugins":[{"type": "cilium-cni"}]}',
      }),
    );
    const mesh = report.checks.find((c) => c.name === 'other_mesh');
    assert.equal(mesh?.ok, false);
    assert.equal(
      mesh?.detail,
      'another mesh captures traffic on this node: Cilium: plugin cilium-cni in /etc/cni/net.d/05-cilium.conflist; Istio ambient (ztunnel): process ztunnel',
    );
  });

  test('the text report: one line per check, the remedy under a failure, the count at the end', () => {
    const text = formatNodeCheck(checkNode({}, deps()));
    assert.match(text, /^kernel 6\.1\.0\n/);
    assert.match(text, /FAIL prog_sk_lookup +sk_lookup programs do not load \(5\.9\+\)\n +remedy: use kernel 5\.9 or later/);
    assert.match(text, /ok {3}bpf_syscall/);
    assert.match(text, /1 check\(s\) failed\n$/);
  });
});
