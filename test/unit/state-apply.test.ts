// Tests for src/state's deltas: ClusterState.apply keeps every index right for just what changed (IPs, VIPs,
// endpoints, nodes), keeps round-robin positions and unchanged objects, recompiles policies only when a policy
// changed; snapshotDelta; the memory source; validateResource. Pure computation.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import type { AuthorizationPolicy } from '../../src/policy';
import {
  ClusterState,
  MemoryConfigSource,
  snapshotDelta,
  validateResource,
  type ClusterSnapshot,
  type ConfigUpdate,
  type Destination,
  type StateDelta,
} from '../../src/state';
import { service, workload } from './config-harness';

const VIP = '10.96.0.10';

function endpointOf(d: Destination): string {
  assert.equal(d.kind, 'service');
  return d.kind === 'service' ? `${d.endpoint.ip}:${d.endpoint.port}` : '';
}

const DENY: AuthorizationPolicy = {
  namespace: 'shop',
  name: 'deny',
  action: 'DENY',
  dryRun: false,
  rules: [{ from: [{ namespaces: ['legacy'] }] }],
};

describe('ClusterState.apply', () => {
  test('workloads: upsert and remove update the IP, uid and node indexes for just those workloads', () => {
    const state = new ClusterState();
    const a = workload('a', '10.244.0.1');
    const b = workload('b', '10.244.0.2', { node: 'node-b' });
    assert.deepEqual(state.apply({ workloads: { upsert: [a, b] } }), { workloads: 2, services: 0, policies: false });
    assert.equal(state.workloadByIp('10.244.0.2'), b);
    assert.deepEqual(
      state.meshedWorkloadsOn('node-b').map((w) => w.uid),
      ['shop/b'],
    );
    const moved = workload('b', '10.244.0.3', { node: 'node-a' });
    state.apply({ workloads: { upsert: [moved] } });
    assert.equal(state.workloadByIp('10.244.0.2'), undefined, 'the old address left the index');
    assert.equal(state.workloadByIp('10.244.0.3'), moved);
    assert.deepEqual(state.meshedWorkloadsOn('node-b'), []);
    assert.deepEqual(
      state.meshedWorkloadsOn('node-a').map((w) => w.uid),
      ['shop/a', 'shop/b'],
    );
    state.apply({ workloads: { remove: ['shop/a', 'shop/nope'] } });
    assert.equal(state.workload('shop/a'), undefined);
    assert.equal(state.workloadByIp('10.244.0.1'), undefined);
    assert.deepEqual(
      state.workloads.map((w) => w.uid),
      ['shop/b'],
    );
  });

  test('an upsert equal to what is held changes nothing and keeps the object', () => {
    const state = new ClusterState();
    const a = workload('a', '10.244.0.1');
    state.apply({ workloads: { upsert: [a] } });
    const list = state.workloads;
    assert.deepEqual(state.apply({ workloads: { upsert: [structuredClone(a)] } }), { workloads: 0, services: 0, policies: false });
    assert.equal(state.workload('shop/a'), a);
    assert.equal(state.workloads, list, 'the list is not even rebuilt');
  });

  test('two workloads claiming one IP: the newer answers; removing it uncovers the other', () => {
    const state = new ClusterState();
    const old = workload('old', '10.244.0.9');
    const fresh = workload('fresh', '10.244.0.9');
    state.apply({ workloads: { upsert: [old] } });
    state.apply({ workloads: { upsert: [fresh] } });
    assert.equal(state.workloadByIp('10.244.0.9'), fresh);
    state.apply({ workloads: { remove: ['shop/fresh'] } });
    assert.equal(state.workloadByIp('10.244.0.9'), old);
  });

  test('services: VIPs and endpoints follow upserts and removals; the rotation is kept while the VIP is served', () => {
    const state = new ClusterState();
    const eps = [{ ip: '10.244.0.1' }, { ip: '10.244.0.2' }, { ip: '10.244.0.3' }];
    state.apply({ services: { upsert: [service('cart', VIP, eps)] } });
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.1:8080');
    // An endpoint added: the position is kept.
    state.apply({ services: { upsert: [service('cart', VIP, [...eps, { ip: '10.244.0.4' }])] } });
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.2:8080');
    // Another Service listing one of the endpoints: serviceOf names the first by namespace/name.
    state.apply({ services: { upsert: [service('aaa', '10.96.0.11', [{ ip: '10.244.0.2' }])] } });
    assert.equal(state.serviceOf(workload('x', '10.244.0.2'), 8080)?.name, 'aaa');
    state.apply({ services: { remove: ['shop/aaa'] } });
    assert.equal(state.serviceOf(workload('x', '10.244.0.2'), 8080)?.name, 'cart');
    assert.equal(state.serviceByVip('10.96.0.11', 80), undefined);
    // Removed and added again: a fresh rotation.
    state.apply({ services: { remove: ['shop/cart'] } });
    assert.equal(state.resolve(VIP, 80).kind, 'passthrough');
    state.apply({ services: { upsert: [service('cart', VIP, eps)] } });
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.1:8080');
  });

  test('policies are recompiled only when a policy resource changes, and policyRevision moves once per change', () => {
    const state = new ClusterState();
    state.apply({ workloads: { upsert: [workload('a', '10.244.0.1')] } });
    const empty = state.policies;
    assert.equal(state.policyRevision, 0);
    const change = state.apply({
      authorizationPolicies: { upsert: [DENY, { ...DENY, name: 'deny-2' }] },
      peerAuthentications: { upsert: [{ namespace: 'shop', name: 'pa', mode: 'STRICT', portLevelMtls: [] }] },
    });
    assert.equal(change.policies, true);
    assert.equal(state.policyRevision, 1, 'three policies, one move');
    const compiled = state.policies;
    state.apply({ workloads: { upsert: [workload('b', '10.244.0.2')] }, services: { upsert: [service('s', VIP, [])] } });
    assert.equal(state.policies, compiled, 'not recompiled for workloads and services');
    state.apply({ authorizationPolicies: { upsert: [structuredClone(DENY)] } });
    assert.equal(state.policyRevision, 1, 'the same policy again');
    state.apply({ authorizationPolicies: { remove: ['shop/deny', 'shop/deny-2'] }, peerAuthentications: { remove: ['shop/pa'] } });
    assert.equal(state.policyRevision, 2);
    assert.equal(state.policies.fingerprint, empty.fingerprint);
  });

  test('a delta whose policies cannot be compiled changes nothing at all', () => {
    const state = new ClusterState();
    state.apply({ authorizationPolicies: { upsert: [DENY] } }, 7);
    const bad: AuthorizationPolicy = { ...DENY, name: 'bad', rules: [{ from: [{ ipBlocks: ['10.0.0.0/40'] }] }] };
    assert.throws(
      () => state.apply({ workloads: { upsert: [workload('a', '10.244.0.1')] }, authorizationPolicies: { upsert: [bad] } }, 8),
      { code: 'FERRY_ERR_POLICY_INVALID' },
    );
    assert.equal(state.workloads.length, 0);
    assert.equal(state.authorizationPolicies.length, 1);
    assert.equal(state.revision, 7);
  });

  test("revision: the source's when given, else one more per delta", () => {
    const state = new ClusterState();
    state.apply({}, 41);
    assert.equal(state.revision, 41);
    state.apply({});
    assert.equal(state.revision, 42);
  });
});

describe('replace as a computed delta', () => {
  const snap = (revision: number, extra: Partial<ClusterSnapshot> = {}): ClusterSnapshot => ({
    version: 1,
    revision,
    workloads: [workload('a', '10.244.0.1'), workload('b', '10.244.0.2')],
    services: [service('cart', VIP, [{ ip: '10.244.0.1' }, { ip: '10.244.0.2' }])],
    ...extra,
  });

  test('an equal snapshot changes nothing: objects, rotation and policies stay', () => {
    const state = new ClusterState();
    state.replace(snap(1));
    const a = state.workload('shop/a');
    state.resolve(VIP, 80);
    assert.deepEqual(state.replace(snap(2)), { workloads: 0, services: 0, policies: false });
    assert.equal(state.workload('shop/a'), a);
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.2:8080');
    assert.equal(state.revision, 2);
  });

  test('snapshotDelta lists only what differs', () => {
    const before = snap(1);
    const after = snap(2, { workloads: [workload('a', '10.244.0.1'), workload('c', '10.244.0.3')] });
    const delta = snapshotDelta(
      { workloads: before.workloads, services: before.services, authorizationPolicies: [], peerAuthentications: [] },
      after,
    );
    assert.deepEqual(
      delta.workloads?.upsert?.map((w) => w.uid),
      ['shop/c'],
    );
    assert.deepEqual(delta.workloads?.remove, ['shop/b']);
    assert.deepEqual(delta.services, { upsert: [], remove: [] });
  });
});

describe('config sources', () => {
  class Sink {
    readonly state = new ClusterState();
    readonly updates: Array<{ delta: StateDelta; update: ConfigUpdate }> = [];
    apply(delta: StateDelta, update: ConfigUpdate): void {
      this.state.apply(delta, update.revision);
      this.updates.push({ delta, update });
    }
  }

  test('MemoryConfigSource delivers each push at once; synced sticks once given', async () => {
    const source = new MemoryConfigSource();
    const sink = new Sink();
    assert.throws(() => source.push({}), /before start/);
    source.start(sink);
    source.push({ workloads: { upsert: [workload('a', '10.244.0.1')] } }, { synced: false });
    assert.equal(source.synced, false);
    assert.ok(sink.state.workload('shop/a'));
    source.push({}, { synced: true });
    source.push({ workloads: { remove: ['shop/a'] } }, { synced: false });
    assert.equal(source.synced, true);
    assert.equal(sink.updates.at(-1)?.update.synced, true);
    await source.stop();
    assert.throws(() => source.push({}));
  });
});

describe('validateResource', () => {
  test('a valid workload, service and policy have no problems', () => {
    assert.deepEqual(validateResource('workload', workload('a', '10.244.0.1', { excludeOutboundCidrs: ['10.0.0.0/8'] })), []);
    assert.deepEqual(validateResource('service', service('s', VIP, [{ ip: 'fd00::1' }])), []);
    assert.deepEqual(validateResource('authorizationPolicy', DENY), []);
  });

  test('each problem names its field', () => {
    const fields = (problems: Array<{ field: string }>): string[] => problems.map((p) => p.field).sort();
    assert.deepEqual(
      fields(
        validateResource('workload', {
          ...workload('a', 'nope'),
          uid: '',
          excludeOutboundCidrs: ['10.0.0.0/99'],
          serviceAccount: '',
        }),
      ),
      ['excludeOutboundCidrs[0]', 'ips[0]', 'serviceAccount', 'uid'],
    );
    assert.deepEqual(fields(validateResource('workload', { ...workload('a', '10.244.0.1'), extra: 1 })), ['extra']);
    assert.deepEqual(fields(validateResource('service', service('s', 'nope', [{ ip: '10.244.0.300' }]))), [
      'ports[0].endpoints[0].ip',
      'vips[0]',
    ]);
    const badPolicy = validateResource('authorizationPolicy', { ...DENY, rules: [{ when: [{ key: 'source.ip', values: ['nope'] }] }] });
    assert.equal(badPolicy.length, 1);
    assert.match(badPolicy[0].field, /rules\[0\]/);
    assert.match(badPolicy[0].message, /"nope" is not an IPv4 or IPv6 address/);
    assert.deepEqual(
      fields(validateResource('peerAuthentication', { namespace: 'shop', name: 'x', mode: 'SOMETIMES', portLevelMtls: [] })),
      ['mode'],
    );
  });
});
