// Kubernetes objects → Ferry's model: enrolment rules, exclusions, endpoints from EndpointSlices, and policies
// Ferry cannot enforce as written becoming restrictive stand-ins.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import type { V1EndpointSlice, V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import { authorizationPolicyFromK8s, peerAuthenticationFromK8s, serviceFromK8s, workloadFromPod } from '../../src/k8s';
import { PolicySet } from '../../src/policy';

const enrolled: V1Namespace = { metadata: { name: 'shop', annotations: { 'ferry.dev/mesh': 'enabled' } } };
const plain: V1Namespace = { metadata: { name: 'shop' } };

function pod(extra: { annotations?: Record<string, string>; phase?: string; hostNetwork?: boolean } = {}): V1Pod {
  return {
    metadata: {
      name: 'cart-1',
      namespace: 'shop',
      uid: '4f0c1d2e-0000-4000-8000-000000000001',
      labels: { app: 'cart' },
      resourceVersion: '17',
      ...(extra.annotations ? { annotations: extra.annotations } : {}),
    },
    spec: { nodeName: 'node-a', serviceAccountName: 'cart', containers: [{ name: 'c' }], hostNetwork: extra.hostNetwork },
    status: { phase: extra.phase ?? 'Running', podIP: '10.244.1.5', podIPs: [{ ip: '10.244.1.5' }, { ip: 'fd10:244:1::5' }] },
  };
}

describe('workloadFromPod', () => {
  test('an enrolled namespace enrols its pods, keyed by UID, with both addresses, node and service account', () => {
    const { value, problems } = workloadFromPod(pod(), enrolled);
    assert.deepEqual(problems, []);
    assert.deepEqual(value, {
      uid: '4f0c1d2e-0000-4000-8000-000000000001',
      namespace: 'shop',
      name: 'cart-1',
      node: 'node-a',
      serviceAccount: 'cart',
      ips: ['10.244.1.5', 'fd10:244:1::5'],
      labels: { app: 'cart' },
      meshEnabled: true,
      netnsPath: '',
      excludeOutboundPorts: [],
      excludeOutboundCidrs: [],
    });
  });

  test('opt-in is the namespace owner’s: a pod cannot enrol itself, but can opt out', () => {
    assert.equal(workloadFromPod(pod({ annotations: { 'ferry.dev/mesh': 'enabled' } }), plain).value.meshEnabled, false);
    assert.equal(workloadFromPod(pod(), undefined).value.meshEnabled, false);
    assert.equal(workloadFromPod(pod({ annotations: { 'ferry.dev/mesh': 'disabled' } }), enrolled).value.meshEnabled, false);
  });

  test('host-network and finished pods are never enrolled; finished pods keep no addresses', () => {
    assert.equal(workloadFromPod(pod({ hostNetwork: true }), enrolled).value.meshEnabled, false);
    const done = workloadFromPod(pod({ phase: 'Succeeded' }), enrolled).value;
    assert.equal(done.meshEnabled, false);
    assert.deepEqual(done.ips, []);
  });

  test('the default service account when none is named', () => {
    const p = pod();
    delete p.spec?.serviceAccountName;
    assert.equal(workloadFromPod(p, enrolled).value.serviceAccount, 'default');
  });

  test('exclusion annotations are parsed; a bad one is reported by field and the pod stays captured in full', () => {
    const good = workloadFromPod(
      pod({ annotations: { 'ferry.dev/exclude-outbound-ports': '5432, 6379', 'ferry.dev/exclude-outbound-cidrs': '10.9.0.1/16' } }),
      enrolled,
    );
    assert.deepEqual(good.value.excludeOutboundPorts, [5432, 6379]);
    assert.deepEqual(good.value.excludeOutboundCidrs, ['10.9.0.0/16']);
    assert.equal(good.warnings.length, 1);
    assert.match(good.warnings[0], /^Pod shop\/cart-1: "10.9.0.1\/16" /);

    const bad = workloadFromPod(
      pod({ annotations: { 'ferry.dev/exclude-outbound-ports': '5432,99999', 'ferry.dev/typo': 'x' } }),
      enrolled,
    );
    assert.equal(bad.value.meshEnabled, true);
    assert.deepEqual(bad.value.excludeOutboundPorts, []);
    assert.deepEqual(
      bad.problems.map((p) => [p.path.join('.'), p.message.split(';')[0]]),
      [
        ['metadata.annotations.ferry.dev/typo', 'unknown Ferry annotation'],
        ['metadata.annotations.ferry.dev/exclude-outbound-ports', '"99999" is not a port'],
      ],
    );
  });
});

describe('serviceFromK8s', () => {
  const service: V1Service = {
    metadata: { name: 'cart', namespace: 'shop' },
    spec: {
      clusterIP: '10.96.0.20',
      clusterIPs: ['10.96.0.20', 'fd10:96::20'],
      ports: [
        { name: 'http', port: 80, targetPort: 'web' as unknown as never, protocol: 'TCP' },
        { name: 'dns', port: 53, protocol: 'UDP' },
      ],
    },
  };
  const slice = (name: string, endpoints: V1EndpointSlice['endpoints'], port = 8080): V1EndpointSlice => ({
    metadata: { name, namespace: 'shop', labels: { 'kubernetes.io/service-name': 'cart' } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port, protocol: 'TCP' }],
    endpoints,
  });

  test('VIPs of both families, TCP ports only, ready endpoints from every slice with their pod UIDs', () => {
    const result = serviceFromK8s(service, [
      slice('cart-a', [
        { addresses: ['10.244.1.5'], conditions: { ready: true }, targetRef: { kind: 'Pod', uid: 'uid-1', name: 'cart-1' } },
        { addresses: ['10.244.1.6'], conditions: { ready: false }, targetRef: { kind: 'Pod', uid: 'uid-2', name: 'cart-2' } },
      ]),
      slice('cart-b', [{ addresses: ['10.244.2.7'], conditions: {} }]),
    ]);
    assert.deepEqual(result, {
      namespace: 'shop',
      name: 'cart',
      hostname: 'cart.shop.svc.cluster.local',
      vips: ['10.96.0.20', 'fd10:96::20'],
      ports: [
        {
          name: 'http',
          port: 80,
          endpoints: [
            { ip: '10.244.1.5', port: 8080, workloadUid: 'uid-1' },
            { ip: '10.244.2.7', port: 8080 },
          ],
        },
      ],
    });
  });

  test('a headless Service has no VIP; a slice port of another name gives no endpoints', () => {
    const headless: V1Service = { ...service, spec: { ...service.spec, clusterIP: 'None', clusterIPs: ['None'] } };
    const result = serviceFromK8s(headless, [{ ...slice('x', [{ addresses: ['10.244.1.5'] }]), ports: [{ name: 'other', port: 9 }] }]);
    assert.deepEqual(result.vips, []);
    assert.deepEqual(result.ports[0].endpoints, []);
  });
});

describe('policies from the API', () => {
  const apiMetadata = {
    name: 'cart-allow',
    namespace: 'shop',
    uid: 'f00',
    resourceVersion: '9',
    generation: 1,
    creationTimestamp: '2026-12-01T00:00:00Z',
  };

  test('a valid AuthorizationPolicy as the API returns it is taken as written', () => {
    const t = authorizationPolicyFromK8s({
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: apiMetadata,
      spec: { selector: { matchLabels: { app: 'cart' } }, rules: [{ from: [{ source: { namespaces: ['shop'] } }] }] },
    });
    assert.deepEqual(t.problems, []);
    assert.equal(t.value.action, 'ALLOW');
    assert.deepEqual(t.value.selector, { app: 'cart' });
  });

  test('an AuthorizationPolicy Ferry cannot read denies everything to what it selects, and says which field', () => {
    const t = authorizationPolicyFromK8s({
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: apiMetadata,
      spec: { action: 'DENY', selector: { matchLabels: { app: 'cart' } }, rules: [{ from: [{ source: { ipBlocks: ['10.0.0.300/8'] } }] }] },
    });
    assert.ok(t.problems.length > 0);
    assert.ok(t.problems.some((p) => p.path.join('.') === 'spec.rules.0.from.0.source.ipBlocks.0'));
    assert.deepEqual(t.value, {
      namespace: 'shop',
      name: 'cart-allow',
      action: 'DENY',
      dryRun: false,
      selector: { app: 'cart' },
      rules: [{}],
    });
    const set = new PolicySet([t.value], [], 'ferry-system');
    const cart = { namespace: 'shop', labels: { app: 'cart' } };
    const web = { namespace: 'shop', labels: { app: 'web' } };
    const decide = (workload: typeof cart) =>
      set.authorize(workload, {
        source: { ip: '10.244.1.9', principal: 'cluster.local/ns/shop/sa/web' },
        destination: { ip: '10.244.1.5', port: 80 },
      });
    assert.equal(decide(cart).allow, false);
    assert.equal(decide(cart).policy, 'shop/cart-allow');
    assert.equal(decide(web).allow, true);
  });

  test('a PeerAuthentication Ferry cannot read is STRICT for what it selects', () => {
    const t = peerAuthenticationFromK8s({
      apiVersion: 'security.istio.io/v1',
      kind: 'PeerAuthentication',
      metadata: apiMetadata,
      spec: { mtls: { mode: 'SOMETIMES' } },
    });
    assert.ok(t.problems.some((p) => p.path.join('.') === 'spec.mtls.mode'));
    assert.deepEqual(t.value, { namespace: 'shop', name: 'cart-allow', mode: 'STRICT', portLevelMtls: [] });
  });
});
