// The dev cluster as Ferry uses it: one real kube-apiserver + controller-manager + scheduler (built from the
// upstream modules, scripts/build-devcluster.sh) for the whole file, exercised through kubectl and raw HTTPS.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { type DevCluster, installGatewayApiCrds, startDevCluster } from '../../src/devcluster';
import { isLoopback, kubectlJson, kubectlOk, listenersOf, requestWithToken, waitFor } from './helpers';

const RELEASE = 'v1.37.2';
const NS = 'ferry-k8s-test';
const NODE = 'ferry-node-a';
const AUDIENCE = 'https://kubernetes.default.svc.cluster.local';

let cluster: DevCluster;

before(
  async () => {
    // A missing binary fails here with the launcher's message (run scripts/setup.sh or set FERRY_DEVCLUSTER).
    cluster = await startDevCluster({ name: 'k8s-suite' });
    await kubectlOk(cluster, ['create', 'namespace', NS]);
    await waitFor('the default ServiceAccount of the test namespace', async () =>
      (await cluster.kubectl(['-n', NS, 'get', 'serviceaccount', 'default'])).code === 0 ? true : undefined,
    );
    await registerReadyNode(NODE);
  },
  { timeout: 180_000 },
);

after(async () => {
  await cluster?.stop();
});

interface ObjectMeta {
  name: string;
  uid: string;
  ownerReferences?: Array<{ kind: string; name: string }>;
}

/** A Node object with a Ready status posted through the status subresource, as a kubelet would. */
async function registerReadyNode(name: string): Promise<void> {
  await kubectlOk(
    cluster,
    ['apply', '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'ferry.dev/test': 'true' } } }),
  );
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const resources = { cpu: '4', memory: '8Gi', pods: '110' };
  const status = {
    status: {
      capacity: resources,
      allocatable: resources,
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'KubeletReady',
          message: 'posted by the test',
          lastHeartbeatTime: now,
          lastTransitionTime: now,
        },
      ],
      addresses: [{ type: 'InternalIP', address: '10.250.0.10' }],
    },
  };
  await kubectlOk(cluster, ['patch', 'node', name, '--subresource=status', '--type=merge', '-p', JSON.stringify(status)]);
}

/** A Pod bound to NODE whose status (IP, Running, Ready) is written through the status subresource. */
async function runningPod(name: string, ip: string, labels: Record<string, string>, serviceAccountName = 'default'): Promise<ObjectMeta> {
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS, labels },
    spec: {
      nodeName: NODE,
      serviceAccountName,
      containers: [{ name: 'app', image: 'ferry.dev/test-app:1', ports: [{ containerPort: 8080 }] }],
    },
  };
  await kubectlOk(cluster, ['apply', '-f', '-'], JSON.stringify(pod));
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const status = {
    status: {
      phase: 'Running',
      podIP: ip,
      podIPs: [{ ip }],
      hostIP: '10.250.0.10',
      startTime: now,
      conditions: [
        { type: 'Ready', status: 'True', lastTransitionTime: now },
        { type: 'ContainersReady', status: 'True', lastTransitionTime: now },
      ],
    },
  };
  await kubectlOk(cluster, ['-n', NS, 'patch', 'pod', name, '--subresource=status', '--type=merge', '-p', JSON.stringify(status)]);
  return (await kubectlJson<{ metadata: ObjectMeta }>(cluster, ['-n', NS, 'get', 'pod', name])).metadata;
}

async function tokenReview(token: string): Promise<{
  authenticated?: boolean;
  error?: string;
  user?: { username?: string; extra?: Record<string, string[]> };
  audiences?: string[];
}> {
  const review = { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [AUDIENCE] } };
  const created = JSON.parse(await kubectlOk(cluster, ['create', '-f', '-', '-o', 'json'], JSON.stringify(review))) as { status: object };
  return created.status;
}

test('kubectl and the apiserver are the same release', async () => {
  const version = await kubectlJson<{ clientVersion: { gitVersion: string }; serverVersion: { gitVersion: string } }>(cluster, ['version']);
  assert.equal(version.clientVersion.gitVersion, RELEASE);
  assert.equal(version.serverVersion.gitVersion, RELEASE);
  assert.match(cluster.server, /^https:\/\/127\.0\.0\.1:\d+$/);
});

test('a new namespace gets its default ServiceAccount, and deleting it finishes (namespace controller)', async () => {
  const ns = 'ferry-k8s-ns-lifecycle';
  await kubectlOk(cluster, ['create', 'namespace', ns]);
  await waitFor(`ServiceAccount ${ns}/default`, async () =>
    (await cluster.kubectl(['-n', ns, 'get', 'serviceaccount', 'default'])).code === 0 ? true : undefined,
  );
  // Content the namespace controller has to delete before the namespace can go.
  await kubectlOk(cluster, ['-n', ns, 'create', 'configmap', 'content', '--from-literal=k=v']);
  await kubectlOk(cluster, ['delete', 'namespace', ns, '--wait=false']);
  await waitFor(`namespace ${ns} gone`, async () => {
    const got = await cluster.kubectl(['get', 'namespace', ns]);
    return got.code !== 0 && /NotFound/.test(got.stderr) ? true : undefined;
  });
});

test('a Node can be registered and reports Ready', async () => {
  const node = await kubectlJson<{ status: { conditions: Array<{ type: string; status: string }> } }>(cluster, ['get', 'node', NODE]);
  assert.deepEqual(
    node.status.conditions.filter((c) => c.type === 'Ready').map((c) => c.status),
    ['True'],
  );
});

test("a Service's ready Pod shows up in its EndpointSlice (endpointslice controller)", async () => {
  await kubectlOk(
    cluster,
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: NS },
      spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
    }),
  );
  const pod = await runningPod('web-0', '10.244.0.11', { app: 'web' });
  const endpoint = await waitFor('an EndpointSlice of Service web with 10.244.0.11', async () => {
    const slices = await kubectlJson<{
      items: Array<{
        endpoints?: Array<{
          addresses: string[];
          conditions?: { ready?: boolean };
          targetRef?: { name: string; uid: string };
          nodeName?: string;
        }>;
        ports?: Array<{ port: number }>;
      }>;
    }>(cluster, ['-n', NS, 'get', 'endpointslices', '-l', 'kubernetes.io/service-name=web']);
    return slices.items
      .flatMap((s) => (s.endpoints ?? []).map((e) => ({ ...e, ports: s.ports })))
      .find((e) => e.addresses.includes('10.244.0.11'));
  });
  assert.equal(endpoint.conditions?.ready, true);
  assert.equal(endpoint.targetRef?.uid, pod.uid);
  assert.equal(endpoint.nodeName, NODE);
  assert.deepEqual(
    endpoint.ports?.map((p) => p.port),
    [8080],
  );
});

test('a Deployment makes a ReplicaSet and Pods, and the scheduler binds them to the Ready Node', async () => {
  const deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'api', namespace: NS },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'api' } },
      template: {
        metadata: { labels: { app: 'api' } },
        spec: { containers: [{ name: 'api', image: 'ferry.dev/test-api:1', resources: { requests: { cpu: '100m', memory: '64Mi' } } }] },
      },
    },
  };
  await kubectlOk(cluster, ['apply', '-f', '-'], JSON.stringify(deployment));
  const replicaSet = await waitFor('a ReplicaSet owned by Deployment api', async () => {
    const list = await kubectlJson<{ items: Array<{ metadata: ObjectMeta }> }>(cluster, ['-n', NS, 'get', 'replicasets', '-l', 'app=api']);
    return list.items.find((rs) => rs.metadata.ownerReferences?.some((o) => o.kind === 'Deployment' && o.name === 'api'));
  });
  const pods = await waitFor('two Pods of the ReplicaSet, both bound to a Node', async () => {
    const list = await kubectlJson<{ items: Array<{ metadata: ObjectMeta; spec: { nodeName?: string } }> }>(cluster, [
      '-n',
      NS,
      'get',
      'pods',
      '-l',
      'app=api',
    ]);
    const owned = list.items.filter((p) =>
      p.metadata.ownerReferences?.some((o) => o.kind === 'ReplicaSet' && o.name === replicaSet.metadata.name),
    );
    return owned.length === 2 && owned.every((p) => p.spec.nodeName !== undefined) ? owned : undefined;
  });
  assert.deepEqual(
    pods.map((p) => p.spec.nodeName),
    [NODE, NODE],
  );
});

test('the garbage collector deletes a dependent once its owner is gone', async () => {
  await kubectlOk(cluster, ['-n', NS, 'create', 'configmap', 'gc-owner', '--from-literal=k=v']);
  const owner = (await kubectlJson<{ metadata: ObjectMeta }>(cluster, ['-n', NS, 'get', 'configmap', 'gc-owner'])).metadata;
  const dependent = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'gc-dependent',
      namespace: NS,
      ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: owner.name, uid: owner.uid }],
    },
    data: { k: 'v' },
  };
  await kubectlOk(cluster, ['apply', '-f', '-'], JSON.stringify(dependent));
  await kubectlOk(cluster, ['-n', NS, 'delete', 'configmap', 'gc-owner', '--cascade=background']);
  await waitFor('ConfigMap gc-dependent collected', async () => {
    const got = await cluster.kubectl(['-n', NS, 'get', 'configmap', 'gc-dependent']);
    return got.code !== 0 && /NotFound/.test(got.stderr) ? true : undefined;
  });
});

test("a pod-bound token's TokenReview names the pod and its node; made-up tokens are not authenticated", async () => {
  await kubectlOk(cluster, ['-n', NS, 'create', 'serviceaccount', 'agent']);
  const pod = await runningPod('agent-0', '10.244.0.12', { app: 'agent' }, 'agent');
  const nodeUid = (await kubectlJson<{ metadata: ObjectMeta }>(cluster, ['get', 'node', NODE])).metadata.uid;
  // `kubectl create token` is the TokenRequest API (serviceaccounts/token).
  const token = (
    await kubectlOk(cluster, [
      '-n',
      NS,
      'create',
      'token',
      'agent',
      '--bound-object-kind=Pod',
      '--bound-object-name=agent-0',
      `--bound-object-uid=${pod.uid}`,
      `--audience=${AUDIENCE}`,
      '--duration=10m',
    ])
  ).trim();
  const review = await tokenReview(token);
  assert.equal(review.authenticated, true, `TokenReview: ${JSON.stringify(review)}`);
  assert.equal(review.user?.username, `system:serviceaccount:${NS}:agent`);
  assert.deepEqual(review.audiences, [AUDIENCE]);
  const extra = review.user?.extra ?? {};
  assert.deepEqual(extra['authentication.kubernetes.io/pod-name'], ['agent-0']);
  assert.deepEqual(extra['authentication.kubernetes.io/pod-uid'], [pod.uid]);
  assert.deepEqual(extra['authentication.kubernetes.io/node-name'], [NODE]);
  assert.deepEqual(extra['authentication.kubernetes.io/node-uid'], [nodeUid]);

  // A token of the right shape signed by nobody, one with its signature cut, and plain garbage.
  const [header, payload] = token.split('.');
  const forged = `${header}.${payload}.${Buffer.from('not the signature').toString('base64url')}`;
  for (const bad of [forged, `${header}.${payload}.`, 'made-up-token', 'x'.repeat(8192)]) {
    const answer = await tokenReview(bad);
    assert.notEqual(answer.authenticated, true, `token ${bad.slice(0, 40)}… was authenticated`);
  }
  // And on a request: 401, not 403, for a token nobody signed.
  const refused = await requestWithToken(cluster, 'GET', `/api/v1/namespaces/${NS}/pods`, forged);
  assert.equal(refused.status, 401, refused.body);
});

test('RBAC: a ServiceAccount with no role is forbidden to list secrets', async () => {
  await kubectlOk(cluster, ['-n', NS, 'create', 'serviceaccount', 'nobody']);
  const token = (await kubectlOk(cluster, ['-n', NS, 'create', 'token', 'nobody', '--duration=10m'])).trim();
  const answer = await requestWithToken(cluster, 'GET', `/api/v1/namespaces/${NS}/secrets`, token);
  assert.equal(answer.status, 403, answer.body);
  const status = JSON.parse(answer.body) as { reason: string; message: string };
  assert.equal(status.reason, 'Forbidden');
  assert.match(status.message, new RegExp(`system:serviceaccount:${NS}:nobody`));
  // The same token is authenticated: what it may see (discovery) it gets.
  assert.equal((await requestWithToken(cluster, 'GET', '/api', token)).status, 200);
});

test('Gateway API CRDs install and are Established; HTTPRoutes are validated by their schema', async () => {
  const installed = await installGatewayApiCrds(cluster);
  assert.equal(installed.version, 'v1.6.3');
  for (const crd of [
    'httproutes.gateway.networking.k8s.io',
    'grpcroutes.gateway.networking.k8s.io',
    'gateways.gateway.networking.k8s.io',
  ]) {
    assert.ok(installed.crds.includes(crd), `${crd} not among ${installed.crds.join(', ')}`);
    const got = await kubectlJson<{ status: { conditions: Array<{ type: string; status: string }> } }>(cluster, ['get', 'crd', crd]);
    assert.ok(
      got.status.conditions.some((c) => c.type === 'Established' && c.status === 'True'),
      `${crd}: ${JSON.stringify(got.status.conditions)}`,
    );
  }

  const route = (pathType: string) => ({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: pathType === 'PathPrefix' ? 'web-route' : 'bad-route', namespace: NS },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
      rules: [{ matches: [{ path: { type: pathType, value: '/api' } }], backendRefs: [{ name: 'web', port: 80 }] }],
    },
  });
  await kubectlOk(cluster, ['apply', '-f', '-'], JSON.stringify(route('PathPrefix')));
  const stored = await kubectlJson<{ spec: { parentRefs: Array<{ kind: string; name: string }> } }>(cluster, [
    '-n',
    NS,
    'get',
    'httproute',
    'web-route',
  ]);
  assert.deepEqual(
    stored.spec.parentRefs.map((p) => `${p.kind}/${p.name}`),
    ['Service/web'],
  );

  const refused = await cluster.kubectl(['apply', '-f', '-'], JSON.stringify(route('Bogus')));
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /HTTPRoute.*bad-route.*is invalid/);
  assert.match(refused.stderr, /spec\.rules\[0\]\.matches\[0\]\.path\.type/);
  assert.match(refused.stderr, /Bogus/);
  assert.notEqual((await cluster.kubectl(['-n', NS, 'get', 'httproute', 'bad-route'])).code, 0);
});

test('the cluster listens on loopback only', () => {
  const listeners = listenersOf(cluster.pid);
  const port = Number(new URL(cluster.server).port);
  assert.ok(
    listeners.some((l) => l.protocol === 'tcp' && l.address === '127.0.0.1' && l.port === port),
    `apiserver port ${port} not among ${JSON.stringify(listeners)}`,
  );
  // apiserver, etcd client and etcd peer at least.
  assert.ok(listeners.length >= 3, JSON.stringify(listeners));
  assert.deepEqual(
    listeners.filter((l) => !isLoopback(l.address)),
    [],
  );
});

/** GET url over TLS with no certificate checks on our side; 'error: …' or the status and body. */
function tlsGet(url: string, clientAuth: { cert?: Buffer; key?: Buffer }): Promise<string> {
  return new Promise((resolve) => {
    const request = https.get(url, { rejectUnauthorized: false, timeout: 5_000, ...clientAuth }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => {
        body += chunk.toString('utf8');
      });
      response.on('end', () => resolve(`${response.statusCode} ${body}`));
      response.on('error', (err: NodeJS.ErrnoException) => resolve(`error: ${err.code ?? err.message}`));
    });
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', (err: NodeJS.ErrnoException) => resolve(`error: ${err.code ?? err.message}`));
  });
}

test('etcd serves no one without a client certificate of its own CA, not even the cluster admin', async () => {
  const info = JSON.parse(fs.readFileSync(path.join(cluster.dataDir, 'cluster.json'), 'utf8')) as {
    etcdClientUrl: string;
    etcdClientCert: string;
    etcdClientKey: string;
    adminCert: string;
    adminKey: string;
  };
  // The control: the apiserver's etcd client certificate is served, so a refusal below is the certificate's doing.
  const apiserver = await tlsGet(`${info.etcdClientUrl}/version`, {
    cert: fs.readFileSync(info.etcdClientCert),
    key: fs.readFileSync(info.etcdClientKey),
  });
  assert.match(apiserver, /^200 .*etcdserver/);
  assert.match(info.etcdClientUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
  const anonymous = await tlsGet(`${info.etcdClientUrl}/version`, {});
  assert.match(anonymous, /^error: /, `etcd answered a client without a certificate: ${anonymous}`);
  const admin = await tlsGet(`${info.etcdClientUrl}/version`, {
    cert: fs.readFileSync(info.adminCert),
    key: fs.readFileSync(info.adminKey),
  });
  assert.match(admin, /^error: /, `etcd answered the cluster admin's certificate: ${admin}`);
  // Plain HTTP to the TLS port gets no etcd answer either.
  const plain = await new Promise<string>((resolve) => {
    const socket = net.connect(Number(new URL(info.etcdClientUrl).port), '127.0.0.1', () => socket.end('GET /version HTTP/1.0\r\n\r\n'));
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('utf8');
    });
    socket.on('close', () => resolve(answer));
    socket.on('error', () => resolve(answer));
  });
  assert.doesNotMatch(plain, /etcdserver/);
});

// Last: the other tests need the cluster. after() calls stop() again, which must be harmless.
test('stop() ends the process, removes the data directory and closes the port; a second stop() is a no-op', async () => {
  const { pid, dataDir } = cluster;
  const port = Number(new URL(cluster.server).port);
  await Promise.all([cluster.stop(), cluster.stop()]);
  assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
  assert.equal(fs.existsSync(dataDir), false);
  const refused = await new Promise<string>((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
  assert.equal(refused, 'ECONNREFUSED');
  await cluster.stop();
});
