// Tests for PolicySet.peerAuthentication / mtlsMode: Istio's PeerAuthentication precedence (workload > namespace >
// mesh > PERMISSIVE), UNSET inheritance and port-level overrides. Policies go through validatePeerAuthentication.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  DEFAULT_ROOT_NAMESPACE,
  PolicySet,
  validatePeerAuthentication,
  type MtlsDecision,
  type PeerAuthentication,
  type PolicyWorkload,
} from '../../src/policy';

function pa(namespace: string, name: string, spec: Record<string, unknown>): PeerAuthentication {
  const result = validatePeerAuthentication({
    apiVersion: 'security.istio.io/v1',
    kind: 'PeerAuthentication',
    metadata: { name, namespace },
    spec,
  });
  assert.deepEqual(result.problems, []);
  assert.ok(result.value !== undefined);
  return result.value;
}

const mesh = (mode: string): PeerAuthentication => pa(DEFAULT_ROOT_NAMESPACE, 'default', { mtls: { mode } });
const namespaceWide = (mode: string, name = 'default'): PeerAuthentication => pa('shop', name, { mtls: { mode } });
const forWeb = (spec: Record<string, unknown>, name = 'web'): PeerAuthentication =>
  pa('shop', name, { selector: { matchLabels: { app: 'web' } }, ...spec });

const WEB: PolicyWorkload = { namespace: 'shop', labels: { app: 'web', tier: 'front' } };
const DB: PolicyWorkload = { namespace: 'shop', labels: { app: 'db' } };
const ELSEWHERE: PolicyWorkload = { namespace: 'legacy', labels: { app: 'web' } };

interface Case {
  name: string;
  policies: PeerAuthentication[];
  workload?: PolicyWorkload;
  port?: number;
  want: MtlsDecision;
}

const cases: Case[] = [
  { name: 'no policy: PERMISSIVE by default', policies: [], want: { mode: 'PERMISSIVE', configured: 'PERMISSIVE', level: 'default' } },
  {
    name: 'mesh-wide STRICT',
    policies: [mesh('STRICT')],
    want: { mode: 'STRICT', configured: 'STRICT', level: 'mesh', policy: 'ferry-system/default' },
  },
  {
    name: 'mesh-wide applies in every namespace',
    policies: [mesh('STRICT')],
    workload: ELSEWHERE,
    want: { mode: 'STRICT', configured: 'STRICT', level: 'mesh', policy: 'ferry-system/default' },
  },
  {
    name: 'mesh-wide applies to the root namespace itself',
    policies: [mesh('STRICT')],
    workload: { namespace: DEFAULT_ROOT_NAMESPACE, labels: {} },
    want: { mode: 'STRICT', configured: 'STRICT', level: 'mesh', policy: 'ferry-system/default' },
  },
  {
    name: 'namespace-wide overrides mesh-wide',
    policies: [mesh('STRICT'), namespaceWide('PERMISSIVE')],
    want: { mode: 'PERMISSIVE', configured: 'PERMISSIVE', level: 'namespace', policy: 'shop/default' },
  },
  {
    name: 'namespace-wide UNSET inherits mesh-wide',
    policies: [mesh('STRICT'), namespaceWide('UNSET')],
    want: { mode: 'STRICT', configured: 'STRICT', level: 'mesh', policy: 'ferry-system/default' },
  },
  {
    name: 'namespace-wide without mtls is UNSET',
    policies: [mesh('STRICT'), pa('shop', 'empty', {})],
    want: { mode: 'STRICT', configured: 'STRICT', level: 'mesh', policy: 'ferry-system/default' },
  },
  {
    name: 'a namespace policy does not reach another namespace',
    policies: [namespaceWide('STRICT')],
    workload: ELSEWHERE,
    want: { mode: 'PERMISSIVE', configured: 'PERMISSIVE', level: 'default' },
  },
  {
    name: 'workload selector overrides namespace-wide',
    policies: [namespaceWide('PERMISSIVE'), forWeb({ mtls: { mode: 'STRICT' } })],
    want: { mode: 'STRICT', configured: 'STRICT', level: 'workload', policy: 'shop/web' },
  },
  {
    name: 'a selector that does not match leaves the namespace-wide mode',
    policies: [namespaceWide('STRICT'), forWeb({ mtls: { mode: 'PERMISSIVE' } })],
    workload: DB,
    want: { mode: 'STRICT', configured: 'STRICT', level: 'namespace', policy: 'shop/default' },
  },
  {
    name: 'workload UNSET inherits namespace-wide',
    policies: [namespaceWide('STRICT'), forWeb({ mtls: { mode: 'UNSET' } })],
    want: { mode: 'STRICT', configured: 'STRICT', level: 'namespace', policy: 'shop/default' },
  },
  {
    name: 'port-level overrides the workload mode on that port',
    policies: [forWeb({ mtls: { mode: 'STRICT' }, portLevelMtls: { 8080: { mode: 'PERMISSIVE' } } })],
    port: 8080,
    want: { mode: 'PERMISSIVE', configured: 'PERMISSIVE', level: 'port', policy: 'shop/web' },
  },
  {
    name: 'port-level leaves other ports alone',
    policies: [forWeb({ mtls: { mode: 'STRICT' }, portLevelMtls: { 8080: { mode: 'PERMISSIVE' } } })],
    port: 9090,
    want: { mode: 'STRICT', configured: 'STRICT', level: 'workload', policy: 'shop/web' },
  },
  {
    name: 'port-level UNSET inherits the workload level',
    policies: [namespaceWide('PERMISSIVE'), forWeb({ mtls: { mode: 'STRICT' }, portLevelMtls: { 8080: { mode: 'UNSET' } } })],
    port: 8080,
    want: { mode: 'STRICT', configured: 'STRICT', level: 'workload', policy: 'shop/web' },
  },
  {
    name: 'port-level STRICT under an UNSET workload and a PERMISSIVE mesh',
    policies: [mesh('PERMISSIVE'), forWeb({ portLevelMtls: { '5432': { mode: 'STRICT' } } })],
    port: 5432,
    want: { mode: 'STRICT', configured: 'STRICT', level: 'port', policy: 'shop/web' },
  },
  {
    name: 'DISABLE is enforced as PERMISSIVE',
    policies: [mesh('STRICT'), namespaceWide('DISABLE')],
    want: { mode: 'PERMISSIVE', configured: 'DISABLE', level: 'namespace', policy: 'shop/default' },
  },
  {
    name: 'a selector in the root namespace is ignored (as in Istio)',
    policies: [pa(DEFAULT_ROOT_NAMESPACE, 'web', { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'STRICT' } })],
    want: { mode: 'PERMISSIVE', configured: 'PERMISSIVE', level: 'default' },
  },
  {
    name: 'two namespace-wide policies: the first by name wins',
    policies: [namespaceWide('PERMISSIVE', 'b'), namespaceWide('STRICT', 'a')],
    want: { mode: 'STRICT', configured: 'STRICT', level: 'namespace', policy: 'shop/a' },
  },
  {
    name: 'two matching workload policies: the first by name wins',
    policies: [
      forWeb({ mtls: { mode: 'PERMISSIVE' } }, 'z'),
      pa('shop', 'front', { selector: { matchLabels: { tier: 'front' } }, mtls: { mode: 'STRICT' } }),
    ],
    want: { mode: 'STRICT', configured: 'STRICT', level: 'workload', policy: 'shop/front' },
  },
];

describe('PolicySet.peerAuthentication', () => {
  for (const c of cases) {
    test(c.name, () => {
      const set = new PolicySet([], c.policies);
      assert.deepEqual(set.peerAuthentication(c.workload ?? WEB, c.port ?? 8080), c.want);
      assert.equal(set.mtlsMode(c.workload ?? WEB, c.port ?? 8080), c.want.mode);
    });
  }
});

describe('PeerAuthentication warnings', () => {
  test('same-level conflicts are warned about, naming both policies', () => {
    const set = new PolicySet(
      [],
      [
        mesh('STRICT'),
        pa(DEFAULT_ROOT_NAMESPACE, 'other', { mtls: { mode: 'PERMISSIVE' } }),
        namespaceWide('STRICT', 'b'),
        namespaceWide('STRICT', 'a'),
        forWeb({ mtls: { mode: 'STRICT' } }, 'web'),
        pa('shop', 'front', { selector: { matchLabels: { tier: 'front' } }, mtls: { mode: 'STRICT' } }),
        // Disjoint from both: app differs from web's, tier from front's.
        pa('shop', 'db', { selector: { matchLabels: { app: 'db', tier: 'back' } }, mtls: { mode: 'STRICT' } }),
      ],
    );
    assert.deepEqual(set.conflicts, [
      'PeerAuthentication ferry-system/other: another mesh-wide PeerAuthentication, ferry-system/default, is in force (the first by name; Istio would use the oldest); delete one of them',
      'PeerAuthentication shop/b: another namespace-wide PeerAuthentication, shop/a, is in force in namespace shop (the first by name; Istio would use the oldest); delete one of them',
      'PeerAuthentication shop/web: its selector can match the same workloads as shop/front, which wins for them (the first by name; Istio would use the oldest); make the selectors disjoint',
    ]);
    assert.deepEqual(set.warnings, set.conflicts);
  });

  test('a selector in the root namespace is warned about at validation and at load', () => {
    const result = validatePeerAuthentication({
      apiVersion: 'security.istio.io/v1beta1',
      kind: 'PeerAuthentication',
      metadata: { name: 'web', namespace: DEFAULT_ROOT_NAMESPACE },
      spec: { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'STRICT' } },
    });
    const expected =
      'PeerAuthentication ferry-system/web: spec.selector: has no effect: as in Istio, a PeerAuthentication with a selector in the root namespace ferry-system is ignored';
    assert.deepEqual(result.warnings, [expected]);
    assert.ok(result.value !== undefined);
    assert.deepEqual(new PolicySet([], [result.value]).warnings, [expected]);
  });
});
