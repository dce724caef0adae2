// `ferry controller` end to end on a dev cluster: it runs with its own service account's token under
// least-privilege RBAC, and an agent's side of the config stream (GrpcConfigSource into a ClusterState) and CA
// client (GrpcCaClient) talk to it with a real pod-bound token, over TLS checked against the mesh root the
// controller published; last, the controller on a unix socket, with the agent's pod records giving a pod's
// workload its network namespace.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { CONTROLLER_SERVER_NAME, startController, type RunningController } from '../../src/app';
import { PodNetnsDirectory } from '../../src/app/pod-netns-directory';
import { GrpcConfigSource } from '../../src/config-client';
import { AGENT_TOKEN_AUDIENCE } from '../../src/controller';
import { type DevCluster, startDevCluster } from '../../src/devcluster';
import { GrpcCaClient, spiffeUri } from '../../src/identity';
import { ClusterState, type Workload } from '../../src/state';
import { createRootLogger } from '../../src/telemetry';
import { forgeCsr } from '../fixtures/certs';
import { clusterCa, kubectlJson, kubectlOk, waitFor } from './helpers';

const NS = 'ferryt-shop';
const CRDS = path.join(__dirname, '..', '..', '..', 'deploy', 'crds');
const log = createRootLogger('silent');

let cluster: DevCluster;
let dir: string;
let controller: RunningController | undefined;
let controllerKubeconfig: string;
const state = new ClusterState();
let source: GrpcConfigSource;

/** Ferry's RBAC: the namespace, both service accounts, the controller's least privilege. */
const FERRY_RBAC = path.join(__dirname, '..', '..', '..', 'deploy', 'rbac', 'ferry.yaml');

function pod(namespace: string, name: string, node: string, serviceAccount: string, labels: Record<string, string> = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: { app: name, ...labels } },
    spec: { nodeName: node, serviceAccountName: serviceAccount, containers: [{ name: 'c', image: 'none' }] },
  };
}

async function apply(objects: unknown[]): Promise<void> {
  await kubectlOk(cluster, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
}

let port = 0;

/** Starts the controller on the same loopback port every time (a free one picked at the first start). */
async function startOurController(listen?: string): Promise<void> {
  if (listen !== undefined) {
    controller = await startController({ kubeconfig: controllerKubeconfig, listen }, log);
    return;
  }
  if (port === 0) {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    port = (probe.address() as net.AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
  }
  controller = await startController({ kubeconfig: controllerKubeconfig, listen: `127.0.0.1:${port}` }, log);
}

before(
  async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferryt-controller-'));
    cluster = await startDevCluster({ name: 'controller' });
    await kubectlOk(cluster, ['apply', '--server-side', '-f', CRDS]);
    await kubectlOk(cluster, ['wait', '--for=condition=Established', '--timeout=60s', 'crd/authorizationpolicies.security.istio.io']);
    await apply([
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ferry-system' } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, annotations: { 'ferry.dev/mesh': 'enabled' } } },
      { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' } },
      { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-b' } },
    ]);
    await kubectlOk(cluster, ['apply', '-f', FERRY_RBAC]);
    await apply([
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'cart', namespace: NS } },
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'web', namespace: NS } },
      pod('ferry-system', 'ferry-agent-a', 'node-a', 'ferry-agent'),
      pod(NS, 'cart', 'node-a', 'cart'),
      pod(NS, 'web', 'node-b', 'web'),
    ]);
    // The controller's kubeconfig: its own service account's token, so RBAC above is what it runs with.
    const controllerToken = (
      await kubectlOk(cluster, ['-n', 'ferry-system', 'create', 'token', 'ferry-controller', '--duration=1h'])
    ).trim();
    controllerKubeconfig = path.join(dir, 'controller.kubeconfig');
    fs.writeFileSync(
      controllerKubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          { name: 'dev', cluster: { server: cluster.server, 'certificate-authority-data': clusterCa(cluster).toString('base64') } },
        ],
        users: [{ name: 'ferry-controller', user: { token: controllerToken } }],
        contexts: [{ name: 'dev', context: { cluster: 'dev', user: 'ferry-controller' } }],
        'current-context': 'dev',
      }),
    );
    await startOurController();
    // What the node's kubelet would project into the agent pod, and what the agent trusts the controller by.
    const agentToken = (
      await kubectlOk(cluster, [
        '-n',
        'ferry-system',
        'create',
        'token',
        'ferry-agent',
        `--audience=${AGENT_TOKEN_AUDIENCE}`,
        '--bound-object-kind=Pod',
        '--bound-object-name=ferry-agent-a',
        '--duration=1h',
      ])
    ).trim();
    fs.writeFileSync(path.join(dir, 'token'), agentToken);
    const bundle = await kubectlJson<{ data: Record<string, string> }>(cluster, [
      '-n',
      'ferry-system',
      'get',
      'configmap',
      'ferry-ca-root-cert',
    ]);
    fs.writeFileSync(path.join(dir, 'roots.pem'), bundle.data['root-cert.pem']);
    source = new GrpcConfigSource({
      address: `127.0.0.1:${port}`,
      caFile: path.join(dir, 'roots.pem'),
      tokenFile: path.join(dir, 'token'),
      node: 'node-a',
      serverName: CONTROLLER_SERVER_NAME,
      log,
      backoff: { initialMs: 100, maxMs: 500 },
    });
    source.start({ apply: (delta) => void state.apply(delta) });
  },
  { timeout: 180_000 },
);

after(async () => {
  await source?.stop();
  await controller?.stop();
  await cluster?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const workloadNamed = (name: string): Workload | undefined => state.workloads.find((w) => w.namespace === NS && w.name === name);

test('the agent gets every workload over the stream, and the controller names its node from the token', async () => {
  await waitFor(
    'both shop workloads at the agent',
    async () => (workloadNamed('cart') && workloadNamed('web') ? true : undefined),
    10_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; source ${JSON.stringify(source.stats())}; controller ${JSON.stringify(controller?.stats())}`);
  });
  assert.equal(workloadNamed('cart')?.node, 'node-a');
  assert.equal(workloadNamed('cart')?.meshEnabled, true);
  assert.equal(source.stats().node, 'node-a');
});

test('kubectl apply of an AuthorizationPolicy is at the agent within 1 s; an invalid one arrives as its deny-all stand-in and the stream goes on', async () => {
  await apply([
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'cart-web-only', namespace: NS },
      spec: {
        selector: { matchLabels: { app: 'cart' } },
        rules: [{ from: [{ source: { principals: [`cluster.local/ns/${NS}/sa/web`] } }] }],
      },
    },
  ]);
  await waitFor(
    'the policy at the agent',
    async () => (state.authorizationPolicies.some((p) => p.name === 'cart-web-only') ? true : undefined),
    // 1 s after kubectl returned: kubectl's own start-up is not the mesh's.
    1000,
  );
  const cart = workloadNamed('cart');
  assert.ok(cart);
  const decide = (principal: string) =>
    state.policies.authorize(cart, { source: { ip: '10.244.1.9', principal }, destination: { ip: '10.244.0.10', port: 8080 } }).allow;
  assert.equal(decide(`cluster.local/ns/${NS}/sa/web`), true);
  assert.equal(decide(`cluster.local/ns/${NS}/sa/other`), false);

  await apply([
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'web-bad-cidr', namespace: NS },
      spec: { action: 'DENY', selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { ipBlocks: ['10.0.0.999/8'] } }] }] },
    },
    pod(NS, 'after-bad', 'node-a', 'cart'),
  ]);
  await waitFor(
    'the stand-in and the next pod',
    async () => (state.authorizationPolicies.some((p) => p.name === 'web-bad-cidr') && workloadNamed('after-bad') ? true : undefined),
    5000,
  );
  assert.deepEqual(state.authorizationPolicies.find((p) => p.name === 'web-bad-cidr')?.rules, [{}]);
  assert.equal(source.stats().nacks, 0);
});

test('the CA signs for a service account with a pod on the agent’s node, and refuses one whose pods are only on another node', async () => {
  const client = new GrpcCaClient({
    address: `127.0.0.1:${port}`,
    caFile: path.join(dir, 'roots.pem'),
    tokenFile: path.join(dir, 'token'),
    serverName: CONTROLLER_SERVER_NAME,
  });
  try {
    const cart = { trustDomain: 'cluster.local', namespace: NS, serviceAccount: 'cart' };
    const signed = await client.sign({ csrPem: await forgeCsr({ uris: [spiffeUri(cart)] }), identity: cart, ttlSeconds: 3600 });
    assert.ok(signed.chainPem.length >= 1);
    const web = { trustDomain: 'cluster.local', namespace: NS, serviceAccount: 'web' };
    await assert.rejects(client.sign({ csrPem: await forgeCsr({ uris: [spiffeUri(web)] }), identity: web, ttlSeconds: 3600 }), /node-a/);
  } finally {
    client.close();
  }
});

test('with the controller gone the agent keeps its configuration; when it returns, the resync changes nothing', async () => {
  const revision = state.policyRevision;
  const workloads = state.workloads.length;
  await controller?.stop();
  controller = undefined;
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(state.workloads.length, workloads);
  assert.equal(state.policyRevision, revision);
  // The same address, as a restarted controller behind its Service is reached.
  await startOurController();
  await waitFor('the agent reconnected', async () => (source.stats().connected ? true : undefined), 15_000);
  assert.equal(state.policyRevision, revision, 'policies were not recompiled by the resync');
  assert.equal(state.workloads.length, workloads);
});

test('on a unix socket (TLS, the server name given): the stream and the CA; pod records give the workload its namespace', async () => {
  await controller?.stop();
  controller = undefined;
  const socket = path.join(dir, 'controller.sock');
  await startOurController(`unix:${socket}`);
  const records = path.join(dir, 'pods');
  fs.mkdirSync(records, { mode: 0o700 });
  const cart = await kubectlJson<{ metadata: { uid: string } }>(cluster, ['-n', NS, 'get', 'pod', 'cart']);
  const uid = cart.metadata.uid;
  fs.writeFileSync(
    path.join(records, `${uid}.json`),
    JSON.stringify({ uid, namespace: NS, name: 'cart', netnsPath: '/run/netns/ferryt-pod-cart', cgroupDir: '/sys/fs/cgroup/none' }),
    { mode: 0o600 },
  );
  const unixState = new ClusterState();
  const unixSource = new PodNetnsDirectory(
    new GrpcConfigSource({
      address: `unix:${socket}`,
      caFile: path.join(dir, 'roots.pem'),
      tokenFile: path.join(dir, 'token'),
      node: 'node-a',
      serverName: CONTROLLER_SERVER_NAME,
      log,
      backoff: { initialMs: 100, maxMs: 500 },
    }),
    { dir: records, node: 'node-a', log },
  );
  const client = new GrpcCaClient({
    address: `unix:${socket}`,
    caFile: path.join(dir, 'roots.pem'),
    tokenFile: path.join(dir, 'token'),
    serverName: CONTROLLER_SERVER_NAME,
  });
  try {
    unixSource.start({ apply: (delta) => void unixState.apply(delta) });
    await waitFor(
      'the workloads over the unix socket',
      async () => (unixSource.synced && unixState.workload(uid) ? true : undefined),
      10_000,
    );
    assert.equal(unixState.workload(uid)?.netnsPath, '/run/netns/ferryt-pod-cart', "the record's namespace, the API having none");
    const after = unixState.workloads.find((w) => w.namespace === NS && w.name === 'after-bad');
    assert.equal(after?.netnsPath, '', 'a pod without a record stays without a namespace');
    const identity = { trustDomain: 'cluster.local', namespace: NS, serviceAccount: 'cart' };
    const signed = await client.sign({ csrPem: await forgeCsr({ uris: [spiffeUri(identity)] }), identity, ttlSeconds: 3600 });
    assert.ok(signed.chainPem.length >= 1);
    assert.ok((await client.trustBundle()).length >= 1);
  } finally {
    client.close();
    await unixSource.stop();
  }
});
