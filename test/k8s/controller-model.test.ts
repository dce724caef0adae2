// The controller's view of a real cluster: informers on a dev cluster's kube-apiserver feed the model builder,
// whose output (workloads, Services with EndpointSlice endpoints, policies) lands in a map per kind. The
// apiserver runs with its watch cache off and etcd compacted every 2 s, so an old resourceVersion really is
// gone: a watch resumed from it gets 410 Gone and the informer must relist.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { EventReporter, INVALID_EVENT_REASON, ModelBuilder, type ModelKind, type ModelSink } from '../../src/controller';
import { type DevCluster, startDevCluster } from '../../src/devcluster';
import { createClusterWatch, watchedResources, type ClusterWatch } from '../../src/k8s';
import type { AuthorizationPolicy } from '../../src/policy';
import type { Service, Workload } from '../../src/state';
import { createRootLogger } from '../../src/telemetry';
import { kubectlJson, kubectlOk, waitFor } from './helpers';

const NS = 'ferryt-model';
const PLAIN_NS = 'ferryt-model-plain';
const NODE = 'ferryt-model-node';
const CRDS = path.join(__dirname, '..', '..', '..', 'deploy', 'crds');

/** The sink the config server will be: the latest value per kind and key, and how many changes arrived. */
class MapSink implements ModelSink {
  readonly kinds = new Map<ModelKind, Map<string, unknown>>();
  changes = 0;
  upsert<K extends ModelKind>(kind: K, key: string, value: unknown): void {
    this.changes++;
    if (!this.kinds.has(kind)) this.kinds.set(kind, new Map());
    this.kinds.get(kind)?.set(key, value);
  }
  remove(kind: ModelKind, key: string): void {
    this.changes++;
    this.kinds.get(kind)?.delete(key);
  }
  get<T>(kind: ModelKind, key: string): T | undefined {
    return this.kinds.get(kind)?.get(key) as T | undefined;
  }
}

let cluster: DevCluster;
let watch: ClusterWatch;
const sink = new MapSink();

before(
  async () => {
    cluster = await startDevCluster({
      name: 'controller-model',
      apiserverArgs: ['--watch-cache=false', '--etcd-compaction-interval=2s'],
    });
    await kubectlOk(cluster, ['apply', '--server-side', '-f', CRDS]);
    await kubectlOk(cluster, [
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/authorizationpolicies.security.istio.io',
      'crd/peerauthentications.security.istio.io',
    ]);
    await kubectlOk(
      cluster,
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [
          { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, annotations: { 'ferry.dev/mesh': 'enabled' } } },
          { apiVersion: 'v1', kind: 'Namespace', metadata: { name: PLAIN_NS } },
          { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } },
        ],
      }),
    );
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(cluster.kubeconfigPath);
    const log = createRootLogger('silent');
    watch = createClusterWatch({ kubeConfig, log, backoffStartMs: 100, backoffCapMs: 1000 });
    new ModelBuilder({ watch, sink, reporter: new EventReporter(kubeConfig, log), log });
    for (const resource of watchedResources(watch)) resource.start();
    await Promise.all(watchedResources(watch).map((resource) => resource.synced));
  },
  { timeout: 180_000 },
);

after(async () => {
  if (watch) await Promise.all(watchedResources(watch).map((resource) => resource.stop()));
  await cluster?.stop();
});

/** A running pod as the sandbox's kubelet would leave it: bound to NODE, with an address and Ready. */
async function runningPod(
  namespace: string,
  name: string,
  ip: string,
  extra: { labels?: Record<string, string>; annotations?: Record<string, string> } = {},
): Promise<string> {
  await kubectlOk(
    cluster,
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace, labels: { app: name, ...extra.labels }, annotations: extra.annotations ?? {} },
      spec: {
        nodeName: NODE,
        serviceAccountName: 'default',
        containers: [{ name: 'c', image: 'none', ports: [{ name: 'http', containerPort: 8080 }] }],
      },
    }),
  );
  const pod = await kubectlJson<{ metadata: { uid: string } }>(cluster, ['-n', namespace, 'get', 'pod', name]);
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const status = {
    status: {
      phase: 'Running',
      podIP: ip,
      podIPs: [{ ip }],
      conditions: [
        { type: 'Ready', status: 'True', lastTransitionTime: now },
        { type: 'ContainersReady', status: 'True', lastTransitionTime: now },
      ],
    },
  };
  await kubectlOk(cluster, ['-n', namespace, 'patch', 'pod', name, '--subresource=status', '--type=merge', '-p', JSON.stringify(status)]);
  return pod.metadata.uid;
}

test('an enrolled namespace’s pod becomes a meshed workload; the annotation’s removal releases it, a pod may opt out', async () => {
  const uid = await runningPod(NS, 'client', '10.244.7.10');
  const meshed = await waitFor(
    'the workload, meshed',
    async () => {
      const w = sink.get<Workload>('workload', uid);
      return w?.meshEnabled && w.ips[0] === '10.244.7.10' ? w : undefined;
    },
    2000,
  );
  assert.equal(meshed.node, NODE);
  assert.equal(meshed.namespace, NS);

  await kubectlOk(cluster, ['annotate', 'namespace', NS, 'ferry.dev/mesh-']);
  await waitFor(
    'the workload, released',
    async () => (sink.get<Workload>('workload', uid)?.meshEnabled === false ? true : undefined),
    2000,
  );
  await kubectlOk(cluster, ['annotate', 'namespace', NS, 'ferry.dev/mesh=enabled']);
  await waitFor('the workload, meshed again', async () => (sink.get<Workload>('workload', uid)?.meshEnabled ? true : undefined), 2000);

  const outUid = await runningPod(NS, 'opted-out', '10.244.7.11', { annotations: { 'ferry.dev/mesh': 'disabled' } });
  const out = await waitFor('the opted-out workload', async () => sink.get<Workload>('workload', outUid), 2000);
  assert.equal(out.meshEnabled, false);
  const plainUid = await runningPod(PLAIN_NS, 'legacy', '10.244.7.12', { annotations: { 'ferry.dev/mesh': 'enabled' } });
  assert.equal(
    (await waitFor('the unenrolled namespace’s workload', async () => sink.get<Workload>('workload', plainUid), 2000)).meshEnabled,
    false,
  );

  await kubectlOk(cluster, ['-n', NS, 'delete', 'pod', 'opted-out', '--grace-period=0', '--force']);
  await waitFor('the deleted pod’s workload gone', async () => (sink.get('workload', outUid) === undefined ? true : undefined), 2000);
});

test('a host-network pod (e.g. a node agent) is no workload: its addresses are its node’s', async () => {
  const marker = await runningPod(NS, 'beside-host', '10.244.7.20');
  await waitFor('a workload of the same namespace', async () => sink.get<Workload>('workload', marker), 2000);
  await kubectlOk(
    cluster,
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'host-agent', namespace: NS },
      spec: { nodeName: NODE, hostNetwork: true, containers: [{ name: 'c', image: 'none' }] },
    }),
  );
  const pod = await kubectlJson<{ metadata: { uid: string } }>(cluster, ['-n', NS, 'get', 'pod', 'host-agent']);
  // The relabel of the marker pod goes through the same informer after the host pod's add: once it is in, the
  // host pod has been seen too.
  await kubectlOk(cluster, ['-n', NS, 'label', 'pod', 'beside-host', 'seen=after-host-agent']);
  await waitFor(
    'the later change',
    async () => (sink.get<Workload>('workload', marker)?.labels.seen === 'after-host-agent' ? true : undefined),
    2000,
  );
  assert.equal(sink.get('workload', pod.metadata.uid), undefined);
  await kubectlOk(cluster, ['-n', NS, 'delete', 'pod', 'host-agent', 'beside-host', '--grace-period=0', '--force']);
});

test('a pod that finished (phase Failed) leaves the model, so its agent refuses whatever is left of it', async () => {
  const uid = await runningPod(NS, 'finishing', '10.244.7.30');
  await waitFor('the running workload', async () => (sink.get<Workload>('workload', uid)?.meshEnabled ? true : undefined), 2000);
  await kubectlOk(cluster, [
    '-n',
    NS,
    'patch',
    'pod',
    'finishing',
    '--subresource=status',
    '--type=merge',
    '-p',
    '{"status":{"phase":"Failed"}}',
  ]);
  await waitFor('the finished workload gone', async () => (sink.get('workload', uid) === undefined ? true : undefined), 2000);
  await kubectlOk(cluster, ['-n', NS, 'delete', 'pod', 'finishing', '--grace-period=0', '--force']);
});

test('a Service’s endpoints come from the EndpointSlice controller, with the pod’s UID', async () => {
  const uid = await runningPod(NS, 'cart', '10.244.7.20');
  await kubectlOk(
    cluster,
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'cart', namespace: NS },
      spec: { selector: { app: 'cart' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
    }),
  );
  const service = await waitFor(
    'the cart Service with its endpoint',
    async () => {
      const s = sink.get<Service>('service', `${NS}/cart`);
      return s?.ports[0]?.endpoints.length === 1 ? s : undefined;
    },
    10_000,
  );
  assert.deepEqual(service.ports[0].endpoints, [{ ip: '10.244.7.20', port: 8080, workloadUid: uid }]);
  assert.match(service.vips[0] ?? '', /^10\.96\./);
  assert.equal(service.hostname, `cart.${NS}.svc.cluster.local`);
});

test('kubectl apply/delete of an AuthorizationPolicy reaches the model within 1 s; an invalid one is a deny-all stand-in and an Event naming the field', async () => {
  const policy = (name: string, ipBlock: string) =>
    JSON.stringify({
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name, namespace: NS },
      spec: { selector: { matchLabels: { app: 'cart' } }, rules: [{ from: [{ source: { ipBlocks: [ipBlock] } }] }] },
    });
  await kubectlOk(cluster, ['apply', '-f', '-'], policy('cart-office', '10.1.0.0/16'));
  const valid = await waitFor(
    'the policy in the model',
    async () => sink.get<AuthorizationPolicy>('authorizationPolicy', `${NS}/cart-office`),
    1000,
  );
  assert.equal(valid.action, 'ALLOW');
  await kubectlOk(cluster, ['-n', NS, 'delete', 'authorizationpolicy', 'cart-office']);
  await waitFor(
    'the policy gone',
    async () => (sink.get('authorizationPolicy', `${NS}/cart-office`) === undefined ? true : undefined),
    1000,
  );

  // The CRD's schema cannot check an address; Ferry's validation can.
  await kubectlOk(cluster, ['apply', '-f', '-'], policy('cart-typo', '10.1.0.300/16'));
  const standIn = await waitFor('the stand-in', async () => sink.get<AuthorizationPolicy>('authorizationPolicy', `${NS}/cart-typo`), 1000);
  assert.deepEqual(standIn, { namespace: NS, name: 'cart-typo', action: 'DENY', dryRun: false, selector: { app: 'cart' }, rules: [{}] });
  const event = await waitFor(
    'the Warning event',
    async () => {
      const events = await kubectlJson<{
        items: Array<{ reason: string; message: string; type: string; involvedObject: { kind: string; name: string } }>;
      }>(cluster, ['-n', NS, 'get', 'events', '--field-selector', 'involvedObject.name=cart-typo']);
      return events.items.find((e) => e.reason === INVALID_EVENT_REASON);
    },
    5000,
  );
  assert.equal(event.type, 'Warning');
  assert.equal(event.involvedObject.kind, 'AuthorizationPolicy');
  assert.match(event.message, /spec\.rules\[0\]\.from\[0\]\.source\.ipBlocks\[0\]: .*10\.1\.0\.300/);
});

test('a watch resumed from a compacted resourceVersion gets 410 Gone and the informer relists, missing nothing', async () => {
  const uid = await runningPod(NS, 'relist', '10.244.7.30');
  await waitFor('the workload', async () => sink.get<Workload>('workload', uid), 2000);
  const lists = watch.pods.stats().lists;
  let goneUid = '';
  await watch.pods.stop();
  try {
    // The list's own resourceVersion (kubectl's -o json of a list is a client-side List without one).
    const before = JSON.parse(await kubectlOk(cluster, ['get', '--raw', '/api/v1/pods?limit=1'])) as {
      metadata: { resourceVersion: string };
    };
    await kubectlOk(cluster, ['-n', NS, 'label', 'pod', 'relist', 'tier=changed-while-away']);
    goneUid = (await kubectlJson<{ metadata: { uid: string } }>(cluster, ['-n', NS, 'get', 'pod', 'client'])).metadata.uid;
    await kubectlOk(cluster, ['-n', NS, 'delete', 'pod', 'client', '--grace-period=0', '--force']);
    // Until etcd has compacted past it, the old version can still be watched from.
    await waitFor(
      'the old resourceVersion compacted',
      async () => {
        const raw = await cluster.kubectl([
          'get',
          '--raw',
          `/api/v1/pods?watch=true&resourceVersion=${before.metadata.resourceVersion}&timeoutSeconds=1`,
        ]);
        return /"code":410/.test(raw.stdout + raw.stderr) ? true : undefined;
      },
      20_000,
    );
  } finally {
    watch.pods.start();
  }
  await waitFor(
    'the label change, after a relist',
    async () => (sink.get<Workload>('workload', uid)?.labels.tier === 'changed-while-away' ? true : undefined),
    10_000,
  );
  await waitFor('the pod deleted while away, gone', async () => (sink.get('workload', goneUid) === undefined ? true : undefined), 10_000);
  assert.ok(watch.pods.stats().lists > lists, `lists ${watch.pods.stats().lists} after ${lists}: a relist was expected`);
});

test('an apiserver restart breaks every watch; each restarts with backoff and later changes still arrive', async () => {
  const errors = watch.namespaces.stats().errors + watch.pods.stats().errors;
  await cluster.restart();
  const uid = await runningPod(NS, 'after-restart', '10.244.7.40');
  await waitFor('a pod made after the restart', async () => sink.get<Workload>('workload', uid), 30_000);
  await kubectlOk(cluster, ['annotate', 'namespace', NS, 'ferry.dev/mesh-']);
  await waitFor(
    'a namespace change after the restart',
    async () => (sink.get<Workload>('workload', uid)?.meshEnabled === false ? true : undefined),
    30_000,
  );
  assert.ok(watch.namespaces.stats().errors + watch.pods.stats().errors > errors, 'the broken watches were counted');
});
