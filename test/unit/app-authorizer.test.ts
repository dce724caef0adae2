// PolicyAuthorizer (src/app/authorizer.ts): the proxy's authorizer over the model. A pod the model
// does not know is denied, not judged as if it had no labels; label changes re-check like policy changes.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { PolicyAuthorizer } from '../../src/app/authorizer';
import type { AuthorizationPolicy } from '../../src/policy';
import type { ProxyPod } from '../../src/proxy';
import { ClusterState, type ClusterSnapshot, type Workload } from '../../src/state';
import { createRootLogger } from '../../src/telemetry';

const CART: Workload = {
  uid: 'shop/cart',
  namespace: 'shop',
  name: 'cart',
  node: 'node-a',
  serviceAccount: 'cart',
  ips: ['10.244.0.11'],
  labels: { app: 'cart' },
  meshEnabled: true,
  netnsPath: '/run/netns/x',
  excludeOutboundPorts: [],
  excludeOutboundCidrs: [],
};
const POD: ProxyPod = {
  uid: CART.uid,
  namespace: 'shop',
  name: 'cart',
  serviceAccount: 'cart',
  netnsPath: CART.netnsPath,
  netnsCookie: 1n,
  ips: CART.ips,
};
/** Denies everything to pods labelled app=cart: a label-less pod would escape it. */
const DENY_CART: AuthorizationPolicy = {
  namespace: 'shop',
  name: 'deny-cart',
  action: 'DENY',
  dryRun: false,
  selector: { app: 'cart' },
  rules: [{}],
};
const SOURCE = {
  peer: { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'client', principal: 'cluster.local/ns/shop/sa/client' },
  ip: '10.244.0.12',
};
const TARGET = { family: 4 as const, ip: '10.244.0.11', port: 8080 };

function snapshot(revision: number, workloads: Workload[], authorizationPolicies: AuthorizationPolicy[] = [DENY_CART]): ClusterSnapshot {
  return { version: 1, revision, workloads, services: [], authorizationPolicies };
}

function setup(): { state: ClusterState; authorizer: PolicyAuthorizer; changes: () => number } {
  const state = new ClusterState();
  const authorizer = new PolicyAuthorizer(state, createRootLogger('silent'));
  let changes = 0;
  authorizer.onChange(() => {
    changes += 1;
  });
  return { state, authorizer, changes: () => changes };
}

test('a destination pod missing from the model is denied, also where a selector-less reading would allow it', () => {
  const { state, authorizer } = setup();
  state.replace(snapshot(1, [CART]));
  authorizer.stateReplaced(1);
  assert.equal(authorizer.authorize(POD, SOURCE, TARGET).allow, false, 'the DENY policy applies to the labelled pod');
  state.replace(snapshot(2, []));
  authorizer.stateReplaced(2);
  const verdict = authorizer.authorize(POD, SOURCE, TARGET);
  assert.equal(verdict.allow, false, 'a vanished pod was matched as label-less and allowed');
  assert.match(verdict.reason, /not in the model/);
  assert.equal(authorizer.admitsPlaintext(POD, 8080), false, 'plaintext admitted to a pod the model does not know');
});

test('a label change announces a re-check, exactly like a policy change; an unchanged snapshot does not', () => {
  const { state, authorizer, changes } = setup();
  state.replace(snapshot(1, [CART]));
  authorizer.stateReplaced(1);
  assert.equal(changes(), 1);
  state.replace(snapshot(2, [structuredClone(CART)]));
  authorizer.stateReplaced(2);
  assert.equal(changes(), 1, 'a snapshot with the same policies and labels re-checked');
  const relabelled = { ...CART, labels: { app: 'cart-v2' } };
  state.replace(snapshot(3, [relabelled]));
  authorizer.stateReplaced(3);
  assert.equal(changes(), 2, 'a label change did not re-check open connections');
  assert.equal(authorizer.authorize(POD, SOURCE, TARGET).allow, true, 'the relabelled pod is no longer selected by deny-cart');
  state.replace(snapshot(4, []));
  authorizer.stateReplaced(4);
  assert.equal(changes(), 3, 'a vanished workload did not re-check');
});
