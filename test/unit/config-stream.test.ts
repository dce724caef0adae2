// End to end over real TLS on 127.0.0.1: a ConfigServer and the agent's GrpcConfigSource feeding a ClusterState.
// Authentication uses StaticTokenAuthenticator, a real AgentAuthenticator that maps fixed tokens to nodes in
// place of the Kubernetes TokenReview one, which needs an API server.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { GrpcConfigSource } from '../../src/config-client';
import { ResourceStore } from '../../src/controller';
import type { AuthorizationPolicy, PeerAuthentication } from '../../src/policy';
import { isEmptyDelta } from '../../src/state';
import {
  RecordingSink,
  SERVER_NAME,
  credentialFiles,
  quietLog,
  service,
  sleep,
  startConfigServer,
  waitFor,
  workload,
  type RunningServer,
} from './config-harness';

type After = { after: (fn: () => unknown) => void };

function startSource(
  t: After,
  running: RunningServer,
  token: string,
  node = 'node-a',
): { source: GrpcConfigSource; sink: RecordingSink; files: ReturnType<typeof credentialFiles> } {
  const files = credentialFiles(t, running.pki.caPem, token);
  const sink = new RecordingSink();
  const source = new GrpcConfigSource({
    address: running.address,
    caFile: files.caFile,
    tokenFile: files.tokenFile,
    node,
    serverName: SERVER_NAME,
    log: quietLog,
    backoff: { initialMs: 50, maxMs: 200 },
  });
  t.after(() => source.stop());
  source.start(sink);
  return { source, sink, files };
}

const DENY: AuthorizationPolicy = {
  namespace: 'shop',
  name: 'deny-legacy',
  action: 'DENY',
  dryRun: false,
  rules: [{ from: [{ namespaces: ['legacy'] }] }],
};
const STRICT: PeerAuthentication = { namespace: 'ferry-system', name: 'default', mode: 'STRICT', portLevelMtls: [] };

function fill(store: ResourceStore): void {
  store.upsert('workload', 'shop/cart-1', workload('cart-1', '10.244.0.11'));
  store.upsert('workload', 'shop/cart-2', workload('cart-2', '10.244.1.12', { node: 'node-b' }));
  store.upsert(
    'service',
    'shop/cart',
    service('cart', '10.96.0.10', [{ ip: '10.244.0.11', workloadUid: 'shop/cart-1' }, { ip: '10.244.1.12' }]),
  );
  store.upsert('authorizationPolicy', 'shop/deny-legacy', DENY);
  store.upsert('peerAuthentication', 'ferry-system/default', STRICT);
}

describe('config stream end to end', () => {
  test('initial sync, then updates and removals reach the state', async (t) => {
    const running = await startConfigServer(t);
    fill(running.store);
    const { source, sink } = startSource(t, running, 'token-a');
    await waitFor(() => source.synced, 'the initial sync');
    const { state } = sink;
    assert.equal(state.workloads.length, 2);
    assert.equal(state.meshedWorkloadsOn('node-a').length, 1);
    assert.equal(state.resolve('10.96.0.10', 80).kind, 'service');
    assert.equal(state.policyRevision, 1, 'both policies compiled at once');
    assert.equal(state.policies.mtlsMode({ namespace: 'shop', labels: {} }, 8080), 'STRICT');
    assert.equal(source.stats().node, 'node-a');

    running.store.upsert('workload', 'shop/cart-1', workload('cart-1', '10.244.0.21'));
    await waitFor(() => state.workloadByIp('10.244.0.21') !== undefined, 'the update');
    assert.equal(state.workloadByIp('10.244.0.11'), undefined, 'the old address is gone from the index');
    running.store.remove('service', 'shop/cart');
    running.store.remove('authorizationPolicy', 'shop/deny-legacy');
    await waitFor(() => state.services.length === 0 && state.authorizationPolicies.length === 0, 'the removals');
    assert.equal(state.resolve('10.96.0.10', 80).kind, 'passthrough');
    assert.equal(state.policyRevision, 2);
    assert.equal(running.server.stats().nacks, 0);
  });

  test('the controller restarts: the agent keeps its state, resyncs, and nothing changes', async (t) => {
    const first = await startConfigServer(t);
    fill(first.store);
    const { source, sink } = startSource(t, first, 'token-a');
    await waitFor(() => source.synced, 'the initial sync');
    const { state } = sink;
    const cart = state.workload('shop/cart-1');
    const policies = state.policies;
    const revision = state.policyRevision;
    const applied = sink.applied.length;

    await first.server.close();
    await waitFor(() => !source.stats().connected, 'the source to notice');
    await sleep(300); // reconnect attempts fail meanwhile
    assert.ok(source.stats().connects >= 2, 'it kept retrying');
    assert.equal(state.workloads.length, 2, 'configuration kept while the controller is away');
    assert.equal(state.resolve('10.96.0.10', 80).kind, 'service');

    // A new controller process: a new store fed the same objects, on the same port.
    const store = new ResourceStore();
    fill(store);
    const second = await startConfigServer(t, { store, port: first.port });
    await waitFor(() => second.server.stats().acks >= 1, 'the resync to be acknowledged', 10_000);
    assert.equal(second.server.stats().pushes, 1, 'one push: the empty, synced resync');
    assert.equal(second.server.stats().bytesSent < 64, true, `no resource sent (${second.server.stats().bytesSent} bytes)`);
    assert.ok(
      sink.applied.slice(applied).every((a) => isEmptyDelta(a.delta)),
      'no resource reached the state',
    );
    assert.equal(state.policyRevision, revision);
    assert.equal(state.policies, policies);
    assert.equal(state.workload('shop/cart-1'), cart, 'the same workload object: nothing to re-enrol');

    // And the new controller's changes flow.
    store.upsert('workload', 'shop/cart-3', workload('cart-3', '10.244.0.13'));
    await waitFor(() => state.workload('shop/cart-3') !== undefined, 'a change after the restart');
  });

  test('an invalid resource is NACKed naming it and its field; the rest is applied and the stream goes on', async (t) => {
    // A controller that knows more than this agent (a newer schema during an upgrade): it stores what the agent refuses.
    const store = new ResourceStore({ validate: () => [] });
    store.upsert('workload', 'shop/good', workload('good', '10.244.0.1'));
    store.upsert('workload', 'shop/bad', workload('bad', '10.244.0.300'));
    const running = await startConfigServer(t, { store });
    const { source, sink } = startSource(t, running, 'token-a');
    await waitFor(() => source.synced, 'the initial sync');
    assert.ok(sink.state.workload('shop/good'));
    assert.equal(sink.state.workload('shop/bad'), undefined);
    await waitFor(() => running.server.stats().nacks === 1, 'the NACK');
    assert.equal(running.server.stats().rejectedResources, 1);
    const [rejection] = running.server.stats().recentRejections;
    assert.deepEqual(
      { node: rejection.node, kind: rejection.kind, name: rejection.name, field: rejection.field, version: rejection.version },
      { node: 'node-a', kind: 'WORKLOAD', name: 'shop/bad', field: 'ips[0]', version: store.version('workload', 'shop/bad') },
    );
    assert.match(rejection.message, /"10\.244\.0\.300" is not an IPv4 or IPv6 address/);
    assert.equal(source.stats().nacks, 1);

    store.upsert('workload', 'shop/later', workload('later', '10.244.0.2'));
    await waitFor(() => sink.state.workload('shop/later') !== undefined, 'a later push');
    assert.equal(source.stats().connects, 1, 'the same stream');
    // The refused one is not claimed on resync, so it would be sent (and refused) again, nothing worse.
    store.upsert('workload', 'shop/bad', workload('bad', '10.244.0.3'));
    await waitFor(() => sink.state.workload('shop/bad') !== undefined, 'the corrected resource');
  });

  test('a refused token leaves the agent unsynced; a new token in the file is read at the next attempt', async (t) => {
    const running = await startConfigServer(t);
    fill(running.store);
    const { source, sink, files } = startSource(t, running, 'token-nobody');
    await waitFor(() => source.stats().connects >= 2, 'a retry');
    assert.equal(source.synced, false);
    assert.equal(sink.applied.length, 0);
    assert.match(source.stats().lastError ?? '', /UNAUTHENTICATED/);
    assert.ok(running.server.stats().closed.unauthenticated >= 1);
    fs.writeFileSync(files.tokenFile, 'token-a\n');
    await waitFor(() => source.synced, 'the sync with the rotated token');
    assert.equal(sink.state.workloads.length, 2);
  });

  test('a controller that names another node is refused: nothing is applied', async (t) => {
    const running = await startConfigServer(t);
    fill(running.store);
    const { source, sink } = startSource(t, running, 'token-b', 'node-a');
    await waitFor(() => source.stats().connects >= 2, 'a retry');
    assert.equal(source.synced, false);
    assert.equal(sink.applied.length, 0);
    assert.match(source.stats().lastError ?? '', /serves node "node-b", but it runs on "node-a"/);
  });

  test("policies that compile alone but not in the state are refused; the push's other resources are applied", async (t) => {
    const running = await startConfigServer(t);
    running.store.upsert('workload', 'shop/cart-1', workload('cart-1', '10.244.0.11'));
    const { source, sink } = startSource(t, running, 'token-a');
    await waitFor(() => source.synced, 'the initial sync');
    sink.failNext = new Error('cannot compile authorization policies together');
    running.store.upsert('authorizationPolicy', 'shop/deny-legacy', DENY);
    running.store.upsert('workload', 'shop/cart-2', workload('cart-2', '10.244.0.12'));
    await waitFor(() => running.server.stats().nacks === 1, 'the NACK');
    assert.ok(sink.state.workload('shop/cart-2'), 'the workload applied');
    assert.equal(sink.state.authorizationPolicies.length, 0, 'the policy refused');
  });
});
