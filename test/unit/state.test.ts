// Tests for src/state: Service VIP and pod IP resolution in ClusterState, policies in a snapshot and in
// ClusterState. Pure computation.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import { ClusterState, type ClusterSnapshot, type Destination, type Service, type Workload } from '../../src/state';
import type { AuthorizationPolicy, PeerAuthentication } from '../../src/policy';

const VIP = '10.96.0.10';

function workload(name: string, ip: string, extra: Partial<Workload> = {}): Workload {
  return {
    uid: `shop/${name}`,
    namespace: 'shop',
    name,
    node: 'node-a',
    serviceAccount: 'default',
    ips: [ip],
    labels: { app: name },
    meshEnabled: true,
    netnsPath: `/run/netns/${name}`,
    excludeOutboundPorts: [],
    excludeOutboundCidrs: [],
    ...extra,
  };
}

function service(extra: Partial<Service> = {}): Service {
  return {
    namespace: 'shop',
    name: 'cart',
    hostname: 'cart.shop.svc.cluster.local',
    vips: [VIP],
    ports: [
      {
        name: 'http',
        port: 80,
        endpoints: [
          { ip: '10.244.0.11', port: 8080, workloadUid: 'shop/cart-1' },
          { ip: '10.244.0.12', port: 8080, workloadUid: 'shop/cart-2' },
          { ip: '10.244.1.13', port: 8080 },
        ],
      },
      { name: 'admin', port: 9000, endpoints: [] },
    ],
    ...extra,
  };
}

function snapshot(revision: number, extra: Partial<ClusterSnapshot> = {}): ClusterSnapshot {
  return {
    version: 1,
    revision,
    workloads: [
      workload('cart-1', '10.244.0.11'),
      workload('cart-2', '10.244.0.12'),
      workload('cart-3', '10.244.1.13', { node: 'node-b' }),
      workload('legacy', '10.244.0.20', { meshEnabled: false }),
    ],
    services: [service()],
    ...extra,
  };
}

function stateOf(snap: ClusterSnapshot): ClusterState {
  const state = new ClusterState();
  state.replace(snap);
  return state;
}

function endpointOf(destination: Destination): string {
  assert.equal(destination.kind, 'service', `expected a service destination, got ${destination.kind}`);
  if (destination.kind !== 'service') throw new Error('unreachable');
  return `${destination.endpoint.ip}:${destination.endpoint.port}`;
}

describe('ClusterState.resolve', () => {
  test('a Service VIP picks its endpoints round robin, in order, and wraps', () => {
    const state = stateOf(snapshot(1));
    const picked = Array.from({ length: 7 }, () => endpointOf(state.resolve(VIP, 80)));
    assert.deepEqual(picked, [
      '10.244.0.11:8080',
      '10.244.0.12:8080',
      '10.244.1.13:8080',
      '10.244.0.11:8080',
      '10.244.0.12:8080',
      '10.244.1.13:8080',
      '10.244.0.11:8080',
    ]);
  });

  test('a service destination carries the Service, the port and the backing workload', () => {
    const state = stateOf(snapshot(1));
    const first = state.resolve(VIP, 80);
    assert.equal(first.kind, 'service');
    if (first.kind !== 'service') return;
    assert.equal(first.service.name, 'cart');
    assert.equal(first.port.port, 80);
    assert.equal(first.workload?.uid, 'shop/cart-1');
    state.resolve(VIP, 80);
    // The third endpoint names no workloadUid: it is found by its IP.
    const third = state.resolve(VIP, 80);
    assert.equal(third.kind, 'service');
    if (third.kind !== 'service') return;
    assert.equal(third.workload?.uid, 'shop/cart-3');
  });

  test('every VIP of a Service resolves, each with its own rotation', () => {
    const state = stateOf(snapshot(1, { services: [service({ vips: [VIP, 'fd00:96::10'] })] }));
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.11:8080');
    assert.equal(endpointOf(state.resolve('fd00:96::10', 80)), '10.244.0.11:8080');
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.12:8080');
  });

  test('the rotation is kept across replace', () => {
    const state = stateOf(snapshot(1));
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.11:8080');
    state.replace(snapshot(2));
    assert.equal(state.revision, 2);
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.12:8080');
    state.replace(snapshot(3));
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.1.13:8080');
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.11:8080');
  });

  test('the rotation stays within the endpoints when a replace shrinks them', () => {
    const state = stateOf(snapshot(1));
    state.resolve(VIP, 80);
    state.resolve(VIP, 80); // cursor now at the third endpoint
    const shrunk = service();
    shrunk.ports[0].endpoints = shrunk.ports[0].endpoints.slice(0, 2);
    state.replace(snapshot(2, { services: [shrunk] }));
    const picked = Array.from({ length: 4 }, () => endpointOf(state.resolve(VIP, 80)));
    for (const p of picked) assert.ok(['10.244.0.11:8080', '10.244.0.12:8080'].includes(p), p);
    assert.notEqual(picked[0], picked[1]);
  });

  test('a Service port without endpoints is no-endpoints', () => {
    const state = stateOf(snapshot(1));
    const destination = state.resolve(VIP, 9000);
    assert.equal(destination.kind, 'no-endpoints');
    if (destination.kind !== 'no-endpoints') return;
    assert.equal(destination.service.name, 'cart');
    assert.equal(destination.port.port, 9000);
  });

  test('a VIP on a port the Service does not declare passes through', () => {
    const state = stateOf(snapshot(1));
    assert.deepEqual(state.resolve(VIP, 443), { kind: 'passthrough', ip: VIP, port: 443 });
  });

  test('a port the Service does not declare on an address that is also a pod IP resolves the pod', () => {
    // Not a real cluster layout, but it pins the order: VIP:port first, then pod IP.
    const state = stateOf(snapshot(1, { services: [service({ vips: ['10.244.0.12'] })] }));
    assert.equal(endpointOf(state.resolve('10.244.0.12', 80)), '10.244.0.11:8080');
    const other = state.resolve('10.244.0.12', 443);
    assert.equal(other.kind, 'workload');
    if (other.kind === 'workload') assert.equal(other.workload.uid, 'shop/cart-2');
  });

  test('a pod IP resolves to its workload with the original port', () => {
    const state = stateOf(snapshot(1));
    const destination = state.resolve('10.244.1.13', 8080);
    assert.equal(destination.kind, 'workload');
    if (destination.kind !== 'workload') return;
    assert.equal(destination.workload.uid, 'shop/cart-3');
    assert.equal(destination.ip, '10.244.1.13');
    assert.equal(destination.port, 8080);
  });

  test('an unknown IP passes through unchanged', () => {
    const state = stateOf(snapshot(1));
    assert.deepEqual(state.resolve('192.0.2.7', 443), { kind: 'passthrough', ip: '192.0.2.7', port: 443 });
  });

  test('replace drops what the new snapshot no longer has', () => {
    const state = stateOf(snapshot(1));
    state.replace(snapshot(2, { workloads: [], services: [] }));
    assert.equal(state.resolve(VIP, 80).kind, 'passthrough');
    assert.equal(state.resolve('10.244.0.11', 8080).kind, 'passthrough');
    assert.equal(state.workload('shop/cart-1'), undefined);
  });

  test('an empty state resolves everything as passthrough', () => {
    const state = new ClusterState();
    assert.equal(state.revision, 0);
    assert.deepEqual(state.resolve(VIP, 80), { kind: 'passthrough', ip: VIP, port: 80 });
  });
});

describe('ClusterState lookups', () => {
  test('meshedWorkloadsOn filters by node and meshEnabled', () => {
    const state = stateOf(snapshot(1));
    assert.deepEqual(
      state.meshedWorkloadsOn('node-a').map((w) => w.uid),
      ['shop/cart-1', 'shop/cart-2'],
    );
    assert.deepEqual(
      state.meshedWorkloadsOn('node-b').map((w) => w.uid),
      ['shop/cart-3'],
    );
    assert.deepEqual(state.meshedWorkloadsOn('node-c'), []);
  });

  test('workloadByIp, workload and serviceByVip', () => {
    const state = stateOf(snapshot(1));
    assert.equal(state.workloadByIp('10.244.0.20')?.uid, 'shop/legacy');
    assert.equal(state.workload('shop/cart-2')?.ips[0], '10.244.0.12');
    assert.equal(state.serviceByVip(VIP, 80)?.service.name, 'cart');
    assert.equal(state.serviceByVip(VIP, 81), undefined);
  });
});

describe('policies in the snapshot', () => {
  const denyLegacy: AuthorizationPolicy = {
    namespace: 'shop',
    name: 'deny-legacy',
    action: 'DENY',
    dryRun: false,
    rules: [{ from: [{ namespaces: ['legacy'] }] }],
  };
  const strict: PeerAuthentication = { namespace: 'ferry-system', name: 'default', mode: 'STRICT', portLevelMtls: [] };
  const withPolicies = (
    revision: number,
    authorizationPolicies: AuthorizationPolicy[],
    peerAuthentications: PeerAuthentication[] = [],
  ): ClusterSnapshot => snapshot(revision, { authorizationPolicies, peerAuthentications });
  const CART = workload('cart-1', '10.244.0.11');
  const FROM_LEGACY = {
    source: { principal: 'spiffe://cluster.local/ns/legacy/sa/default', ip: '10.244.1.5' },
    destination: { ip: '10.244.0.11', port: 8080 },
  };

  test('ClusterState compiles them on replace', () => {
    const state = stateOf(withPolicies(1, [denyLegacy], [strict]));
    assert.equal(state.policies.authorize(CART, FROM_LEGACY).allow, false);
    assert.equal(state.policies.mtlsMode(CART, 8080), 'STRICT');
  });

  test('a snapshot without policies (or an empty state) allows everything, PERMISSIVE', () => {
    for (const state of [new ClusterState(), stateOf(snapshot(1))]) {
      assert.equal(state.policies.authorize(CART, FROM_LEGACY).allow, true);
      assert.equal(state.policies.mtlsMode(CART, 8080), 'PERMISSIVE');
      assert.equal(state.policyRevision, 0);
    }
  });

  test('policyRevision moves only when the policies change, and the PolicySet is kept otherwise', () => {
    const state = stateOf(withPolicies(1, [denyLegacy]));
    const first = state.policies;
    assert.equal(state.policyRevision, 1);
    state.replace(withPolicies(2, [structuredClone(denyLegacy)], []));
    assert.equal(state.policyRevision, 1, 'same policies in a new snapshot');
    assert.equal(state.policies, first);
    state.replace(withPolicies(3, [denyLegacy], [strict]));
    assert.equal(state.policyRevision, 2);
    assert.notEqual(state.policies.fingerprint, first.fingerprint);
    state.replace(snapshot(4));
    assert.equal(state.policyRevision, 3);
    assert.equal(state.policies.authorize(CART, FROM_LEGACY).allow, true);
  });

  test('a policy that cannot be compiled leaves the state as it was', () => {
    const state = stateOf(withPolicies(1, [denyLegacy]));
    const bad: AuthorizationPolicy = { ...denyLegacy, rules: [{ from: [{ ipBlocks: ['10.0.0.0/40'] }] }] };
    assert.throws(() => state.replace(withPolicies(2, [bad])), { code: 'FERRY_ERR_POLICY_INVALID' });
    assert.equal(state.revision, 1);
    assert.equal(state.policyRevision, 1);
  });
});
