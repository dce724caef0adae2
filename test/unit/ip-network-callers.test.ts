// One table of network texts run through every caller of src/net's parser — the sandbox's
// ferry.dev/exclude-outbound-cidrs annotation, AuthorizationPolicy ipBlocks (validation and matching), and the BPF
// exclusion table encoder — which must give the same answer: the same network, warning or problem. Pure computation.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import * as os from 'node:os';
import { parseManifests } from '../../src/sandbox/manifest';
import { ManifestError } from '../../src/sandbox/errors';
import { PolicySet, validateAuthorizationPolicy } from '../../src/policy';
import { AF_INET, LAYOUT, addressBytes, encodePod } from '../../src/capture/bpf-layout';

type Row = { text: string; network: string; warning?: string; inside: string[]; outside: string[] } | { text: string; problem: string };

// Bare addresses are left out on purpose: policies take them (as Istio does), the annotation wants a CIDR.
const ROWS: Row[] = [
  { text: '10.0.0.0/8', network: '10.0.0.0/8', inside: ['10.255.255.255', '::ffff:10.1.2.3'], outside: ['11.0.0.0', 'fd00::a00:1'] },
  {
    text: '10.0.0.1/8',
    network: '10.0.0.0/8',
    warning: 'has host bits set; using 10.0.0.0/8',
    inside: ['10.0.0.0', '10.200.0.1'],
    outside: ['9.255.255.255'],
  },
  {
    text: 'fd00::1/8',
    network: 'fd00::/8',
    warning: 'has host bits set; using fd00::/8',
    inside: ['fd00::', 'fdff::1'],
    outside: ['fe00::1'],
  },
  { text: '2001:DB8:0::/32', network: '2001:db8::/32', inside: ['2001:db8:ffff::1'], outside: ['2001:db9::'] },
  { text: '0.0.0.0/0', network: '0.0.0.0/0', inside: ['203.0.113.9', '::ffff:192.0.2.1'], outside: ['fd00::1'] },
  // IPv6 /0 holds no IPv4-mapped address: those are IPv4, as connect6 hands them to the exclusion check.
  { text: '::/0', network: '::/0', inside: ['2001:db8::1', '::1'], outside: ['10.0.0.1', '::ffff:10.0.0.1'] },
  {
    text: '::ffff:10.9.0.0/112',
    network: '10.9.0.0/16',
    warning: 'is IPv4-mapped IPv6, matched as IPv4; using 10.9.0.0/16',
    inside: ['10.9.1.2', '::ffff:10.9.255.255'],
    outside: ['10.10.0.0', '::a09:102'],
  },
  {
    text: '::ffff:10.9.1.2/120',
    network: '10.9.1.0/24',
    warning: 'has host bits set and is IPv4-mapped IPv6, matched as IPv4; using 10.9.1.0/24',
    inside: ['10.9.1.255'],
    outside: ['10.9.2.0'],
  },
  {
    text: '::ffff:0:0/96',
    network: '0.0.0.0/0',
    warning: 'is IPv4-mapped IPv6, matched as IPv4; using 0.0.0.0/0',
    inside: ['1.2.3.4'],
    outside: ['fd00::1'],
  },
  { text: 'fe80::1%eth0/64', problem: 'has an IPv6 zone index (%eth0); zone indexes are not allowed' },
  { text: '10.0.0.0/33', problem: 'has a prefix length outside 0..32' },
  { text: 'fd00::/129', problem: 'has a prefix length outside 0..128' },
  { text: '::ffff:10.0.0.0/95', problem: 'has a prefix length outside 96..128 (an IPv4-mapped address counts IPv6 bits: /96 is IPv4 /0)' },
  { text: '10.0.0.0/08', problem: 'has a prefix length that is not a number in 0..32' },
  { text: '10.0.0.0/', problem: 'has a prefix length that is not a number in 0..32' },
  { text: '10.0.0/8', problem: 'is not an IPv4 or IPv6 address or CIDR' },
];

/** What a caller made of one text: the network it uses (when it says), a warning, or a problem. */
type Outcome = { network?: string; warning?: string } | { problem: string };

/** A phrase after `"TEXT" ` and before `; expected …`, as both validators write it. */
function phrase(message: string, text: string, expected: string): string {
  const head = `${JSON.stringify(text)} `;
  assert.ok(message.startsWith(head), message);
  assert.ok(message.endsWith(`; ${expected}`), message);
  return message.slice(head.length, message.length - expected.length - 2);
}

const ANNOTATION_EXPECTED = 'expected a comma-separated list of at most 4 IPv4 or IPv6 networks, e.g. "10.0.0.0/8,fd00::/8"';

function throughManifest(text: string): Outcome {
  const yaml = `apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations: {ferry.dev/exclude-outbound-cidrs: ${JSON.stringify(text)}}
spec:
  nodeName: node-a
  containers: [{name: c, command: [sleep]}]
`;
  try {
    const manifest = parseManifests([{ file: 'in.yaml', text: yaml }]);
    const at = `in.yaml: document 1 (Pod default/p): metadata.annotations["ferry.dev/exclude-outbound-cidrs"]: ${JSON.stringify(text)} `;
    const warnings = manifest.warnings.filter((w) => w.startsWith(at)).map((w) => w.slice(at.length));
    assert.ok(warnings.length <= 1, warnings.join('\n'));
    const outcome: Outcome = { network: manifest.pods[0]?.excludeOutboundCidrs[0] };
    return warnings[0] === undefined ? outcome : { ...outcome, warning: warnings[0] };
  } catch (error) {
    assert.ok(error instanceof ManifestError, String(error));
    assert.equal(error.problems.length, 1, error.message);
    return { problem: phrase(error.problems[0]?.message ?? '', text, ANNOTATION_EXPECTED) };
  }
}

const policyDoc = (text: string): Record<string, unknown> => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'p', namespace: 'shop' },
  spec: { rules: [{ from: [{ source: { ipBlocks: [text] } }] }] },
});

function throughPolicy(text: string): Outcome & { allows?: (ip: string) => boolean } {
  const result = validateAuthorizationPolicy(policyDoc(text));
  if (result.problems.length > 0) {
    assert.equal(result.problems.length, 1);
    assert.deepEqual(result.problems[0]?.path, ['spec', 'rules', 0, 'from', 0, 'source', 'ipBlocks', 0]);
    return { problem: phrase(result.problems[0]?.message ?? '', text, 'expected an IP address or CIDR, e.g. 10.0.0.0/8 or fd00::/8') };
  }
  assert.ok(result.value !== undefined);
  const set = new PolicySet([result.value], []);
  const allows = (ip: string): boolean =>
    set.authorize({ namespace: 'shop', labels: {} }, { source: { ip }, destination: { ip: '10.244.0.10', port: 8080 } }).allow;
  const at = `AuthorizationPolicy shop/p: spec.rules[0].from[0].source.ipBlocks[0]: ${JSON.stringify(text)} `;
  assert.ok(result.warnings.length <= 1, result.warnings.join('\n'));
  const warning = result.warnings[0];
  if (warning === undefined) return { allows };
  assert.ok(warning.startsWith(at), warning);
  return { warning: warning.slice(at.length), allows };
}

/** The BPF table slot encodePod writes for one text: family, prefix length, address bytes; or its problem. */
function throughBpfEncoder(text: string): { family: number; prefixLength: number; addr: string } | { problem: string } {
  let buf: Buffer;
  try {
    buf = encodePod({ state: 'enrolled', podId: 1, excludedPorts: [], excludedCidrs: [text] });
  } catch (error) {
    assert.ok(error instanceof TypeError, String(error));
    const head = `excluded CIDR ${JSON.stringify(text)} `;
    assert.ok(error.message.startsWith(head) && error.message.endsWith('; expected ADDRESS/PREFIX'), error.message);
    return { problem: error.message.slice(head.length, -'; expected ADDRESS/PREFIX'.length) };
  }
  const at = LAYOUT.ferry_pod.fields.excluded_cidrs;
  const f = LAYOUT.ferry_cidr.fields;
  // Kernel structs are in host byte order.
  const u32 = (offset: number): number => (os.endianness() === 'LE' ? buf.readUInt32LE(offset) : buf.readUInt32BE(offset));
  return {
    family: u32(at + f.family),
    prefixLength: u32(at + f.prefix_len),
    addr: buf.subarray(at + f.addr, at + f.addr + 16).toString('hex'),
  };
}

describe('one network parser: the same text means the same thing to every caller', () => {
  for (const row of ROWS) {
    test(row.text, () => {
      const manifest = throughManifest(row.text);
      const policy = throughPolicy(row.text);
      const bpf = throughBpfEncoder(row.text);
      if ('problem' in row) {
        assert.deepEqual(manifest, { problem: row.problem }, 'manifest');
        assert.deepEqual(policy, { problem: row.problem }, 'policy');
        assert.deepEqual(bpf, { problem: row.problem }, 'BPF encoder');
        return;
      }
      // The same warning (or none) from both validators.
      assert.deepEqual(
        manifest,
        row.warning === undefined ? { network: row.network } : { network: row.network, warning: row.warning },
        'manifest',
      );
      assert.ok(!('problem' in policy), 'policy');
      assert.equal(policy.warning, row.warning, 'policy warning');
      // The policy matches exactly that network.
      for (const ip of row.inside) assert.equal(policy.allows?.(ip), true, `policy: ${ip} should be inside ${row.network}`);
      for (const ip of row.outside) assert.equal(policy.allows?.(ip), false, `policy: ${ip} should be outside ${row.network}`);
      // The BPF table holds that network: the family connect4/connect6 compare with, length and base address.
      const [address = '', length] = row.network.split('/');
      const expected = addressBytes(address);
      assert.deepEqual(bpf, { family: expected.family, prefixLength: Number(length), addr: expected.bytes.toString('hex') }, 'BPF encoder');
      if (row.network.includes('.')) assert.equal(expected.family, AF_INET);
    });
  }
});
