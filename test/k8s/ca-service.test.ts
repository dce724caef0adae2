// The controller's CA against a real kube-apiserver (the dev cluster, ferry-devcluster serve): agents
// authenticated by TokenReview of pod-bound tokens, signing authorized from a Pod informer, the CA Secret
// created once by racing controllers, and a full root rotation through the API with TLS pairs at each phase.
// Fails (never skips) without the dev cluster binary: FERRY_DEVCLUSTER, or build/devcluster/bin/ferry-devcluster.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { TokenReviewAuthenticator, kubeTokenReviewer } from '../../src/controller/agent-authenticator';
import {
  CA_BUNDLE_CONFIGMAP_NAME,
  CA_NAMESPACE,
  CA_SECRET_NAME,
  KubeCaStore,
  ensureCaSecret,
  readTrustBundle,
  rotateCa,
} from '../../src/controller/ca-store';
import { KubePodDirectory } from '../../src/controller/pod-directory';
import { IdentityError, type CaChange, type GrpcCaClient, type SpiffeId } from '../../src/identity';
import { createRootLogger } from '../../src/telemetry';
import { forgeCsr } from '../fixtures/certs';
import { issue, mutualTls, silentLog, startCaService, type RunningCaService } from '../unit/ca-harness';

const REPO = path.resolve(__dirname, '..', '..', '..');
const TD = 'cluster.local';
const AUDIENCE = 'ferry-controller';
const web: SpiffeId = { trustDomain: TD, namespace: 'shop', serviceAccount: 'web' };
const db: SpiffeId = { trustDomain: TD, namespace: 'shop', serviceAccount: 'db' };

type After = { after: (fn: () => void | Promise<void>) => void };

/**
 * The dev cluster for this file: `ferry-devcluster serve` in a fresh data directory, usable once
 * admin.kubeconfig exists and the API answers. `stop` sends SIGTERM (SIGKILL after 20 s) to that pid and
 * removes the data directory. --exit-with-parent ends it should this process die without cleaning up.
 */
async function startCluster(): Promise<{ kube: KubeConfig; dataDir: string; stop: () => Promise<void> }> {
  const binary = process.env.FERRY_DEVCLUSTER ?? path.join(REPO, 'build', 'devcluster', 'bin', 'ferry-devcluster');
  assert.ok(
    fs.existsSync(binary),
    `the dev cluster binary ${binary} does not exist: build it (scripts/build-devcluster.sh) or point FERRY_DEVCLUSTER at it`,
  );
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-ca-k8s-'));
  const logFile = path.join(dataDir, 'devcluster.log');
  const child: ChildProcess = spawn(binary, ['serve', '--data-dir', dataDir, '--exit-with-parent', '--log-file', logFile], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const kubeconfig = path.join(dataDir, 'admin.kubeconfig');
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (child.exitCode !== null)
        throw new Error(`ferry-devcluster serve exited with ${child.exitCode}: ${stderr}; log tail: ${tail(logFile)}`);
      if (fs.existsSync(kubeconfig)) {
        const kube = new KubeConfig();
        kube.loadFromFile(kubeconfig);
        try {
          await kube.makeApiClient(CoreV1Api).listNamespace();
          return { kube, dataDir, stop };
        } catch {
          // written, not answering yet
        }
      }
      if (Date.now() > deadline) throw new Error(`the dev cluster was not ready within 120 s; log tail: ${tail(logFile)}`);
      await sleep(200);
    }
  } catch (err) {
    await stop();
    throw err;
  }
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').slice(-1500);
  } catch {
    return '(no log)';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(what: string, ms: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`not within ${ms} ms: ${what}`);
    await sleep(50);
  }
}

let cluster: Awaited<ReturnType<typeof startCluster>>;
let core: CoreV1Api;
const agentPods = new Map<string, V1Pod>();

function podBody(name: string, serviceAccount: string, node: string): V1Pod {
  return {
    metadata: { name },
    spec: { nodeName: node, serviceAccountName: serviceAccount, containers: [{ name: 'app', image: 'registry.invalid/app:1' }] },
  };
}

/** A projected token as the kubelet would request it for a pod: audience, lifetime, bound to that pod. */
async function podToken(namespace: string, serviceAccount: string, boundTo?: V1Pod, audiences = [AUDIENCE]): Promise<string> {
  const request = await core.createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace,
    body: {
      spec: {
        audiences,
        expirationSeconds: 3600,
        boundObjectRef:
          boundTo === undefined ? undefined : { apiVersion: 'v1', kind: 'Pod', name: boundTo.metadata!.name, uid: boundTo.metadata!.uid },
      },
    },
  });
  return request.status!.token;
}

/** The controller's CA pieces in this process, over the dev cluster. */
async function controller(
  t: After,
  options: { namespace?: string; limits?: Record<string, number> } = {},
): Promise<{ running: RunningCaService; store: KubeCaStore; pods: KubePodDirectory; auth: TokenReviewAuthenticator }> {
  const store = await KubeCaStore.open({ kube: cluster.kube, trustDomain: TD, namespace: options.namespace, log: silentLog });
  t.after(() => store.close());
  const pods = new KubePodDirectory(cluster.kube, { log: silentLog });
  await pods.start();
  t.after(() => pods.stop());
  const auth = new TokenReviewAuthenticator({ review: kubeTokenReviewer(cluster.kube) });
  const running = await startCaService(t, { authenticator: auth, pods, ca: store, limits: options.limits });
  return { running, store, pods, auth };
}

describe('CA service on the dev cluster', () => {
  before(async () => {
    cluster = await startCluster();
    core = cluster.kube.makeApiClient(CoreV1Api);
    for (const name of [CA_NAMESPACE, 'shop']) await core.createNamespace({ body: { metadata: { name } } });
    for (const name of ['node-a', 'node-b'])
      await core.createNode({ body: { metadata: { name, labels: { 'kubernetes.io/hostname': name } } } });
    for (const name of ['ferry-agent', 'intruder'])
      await core.createNamespacedServiceAccount({ namespace: CA_NAMESPACE, body: { metadata: { name } } });
    for (const name of ['web', 'db', 'late'])
      await core.createNamespacedServiceAccount({ namespace: 'shop', body: { metadata: { name } } });
    for (const node of ['node-a', 'node-b']) {
      agentPods.set(
        node,
        await core.createNamespacedPod({ namespace: CA_NAMESPACE, body: podBody(`ferry-agent-${node}`, 'ferry-agent', node) }),
      );
    }
    agentPods.set('intruder', await core.createNamespacedPod({ namespace: CA_NAMESPACE, body: podBody('intruder', 'intruder', 'node-a') }));
    await core.createNamespacedPod({ namespace: 'shop', body: podBody('web-1', 'web', 'node-a') });
    await core.createNamespacedPod({ namespace: 'shop', body: podBody('db-1', 'db', 'node-b') });
  });

  after(async () => {
    // What `before` made, by name, then the cluster and its data directory.
    if (core !== undefined) {
      for (const name of ['node-a', 'node-b']) await core.deleteNode({ name }).catch(() => undefined);
      for (const name of [CA_NAMESPACE, 'shop']) await core.deleteNamespace({ name }).catch(() => undefined);
    }
    await cluster?.stop();
  });

  test("a bound token of node-a's agent gets certificates for node-a's service accounts only; other tokens are refused", async (t) => {
    await core.createNamespace({ body: { metadata: { name: 'ca-sign' } } });
    t.after(() => core.deleteNamespace({ name: 'ca-sign' }).then(() => undefined));
    const { running, auth } = await controller(t, { namespace: 'ca-sign', limits: { signBurst: 1000 } });
    const agentA = running.client(await podToken(CA_NAMESPACE, 'ferry-agent', agentPods.get('node-a'))).client;
    const agentB = running.client(await podToken(CA_NAMESPACE, 'ferry-agent', agentPods.get('node-b'))).client;
    const cert = await issue(agentA, web);
    assert.equal(new crypto.X509Certificate(cert.chainPem[0]).subjectAltName, 'URI:spiffe://cluster.local/ns/shop/sa/web');
    await issue(agentB, db);

    const refused = async (client: GrpcCaClient, id: SpiffeId, pattern: RegExp): Promise<void> => {
      await assert.rejects(issue(client, id), (err: unknown) => {
        assert.ok(err instanceof IdentityError, String(err));
        assert.match(err.message, pattern);
        return true;
      });
    };
    await refused(
      agentA,
      db,
      /PERMISSION_DENIED: sign spiffe:\/\/cluster.local\/ns\/shop\/sa\/db: no running pod of service account shop\/db is scheduled on node node-a/,
    );
    await refused(agentB, web, /PERMISSION_DENIED: .*shop\/web is scheduled on node node-b/);
    const madeUp = `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from(JSON.stringify({ aud: [AUDIENCE], sub: 'system:serviceaccount:ferry-system:ferry-agent' })).toString('base64url')}.AAAA`;
    await refused(running.client(madeUp).client, web, /UNAUTHENTICATED: agent at .*: the TokenReview did not authenticate the token/);
    await refused(
      running.client(await podToken(CA_NAMESPACE, 'intruder', agentPods.get('intruder'))).client,
      web,
      /PERMISSION_DENIED: .*not the agent's service account: the token is for "system:serviceaccount:ferry-system:intruder"/,
    );
    await refused(
      running.client(await podToken(CA_NAMESPACE, 'ferry-agent', agentPods.get('node-a'), ['https://kubernetes.default.svc.cluster.local']))
        .client,
      web,
      /UNAUTHENTICATED: .*wrong audience: the token is for \[https:\/\/kubernetes.default.svc.cluster.local\], not "ferry-controller"/,
    );
    await refused(
      running.client(await podToken(CA_NAMESPACE, 'ferry-agent')).client,
      web,
      /PERMISSION_DENIED: .*no node binding: .* not bound to a pod/,
    );
    await refused(running.client('').client, web, /token file .* is empty/);

    // Measured, not asserted on time: sign latency without and with the review cached, and the cache's hit rate.
    const before = auth.stats();
    const timings: number[] = [];
    const fresh = running.client(await podToken(CA_NAMESPACE, 'ferry-agent', agentPods.get('node-a'))).client;
    // One CSR for every call: what is timed is the service (TLS gRPC, authentication, the node check, signing).
    const csrPem = await forgeCsr({ uris: ['spiffe://cluster.local/ns/shop/sa/web'] });
    for (let i = 0; i < 101; i += 1) {
      const started = process.hrtime.bigint();
      await fresh.sign({ csrPem, identity: web, ttlSeconds: 600 });
      timings.push(Number(process.hrtime.bigint() - started) / 1e6);
    }
    const stats = auth.stats();
    assert.equal(stats.reviews - before.reviews, 1, 'one TokenReview for 101 calls with the same token');
    const sorted = timings.slice(1).sort((x, y) => x - y);
    t.diagnostic(
      `Sign round trip: first call ${timings[0].toFixed(1)} ms (TokenReview), cached p50 ${sorted[49].toFixed(1)} ms, p99 ${sorted[98].toFixed(1)} ms; cache hits ${stats.cacheHits - before.cacheHits}/100`,
    );
    // 30 agents' tokens (one node's agent restarted 30 times), 5 calls each at once: 30 reviews.
    const tokens = await Promise.all(Array.from({ length: 30 }, () => podToken(CA_NAMESPACE, 'ferry-agent', agentPods.get('node-a'))));
    const reviewsBefore = auth.stats().reviews;
    const clients = tokens.map((token) => running.client(token).client);
    await Promise.all(clients.flatMap((client) => Array.from({ length: 5 }, () => issue(client, web))));
    assert.equal(auth.stats().reviews - reviewsBefore, 30);
  });

  test('the pod informer follows the API: a new pod allows its account, a terminated or deleted one no longer does', async (t) => {
    await core.createNamespace({ body: { metadata: { name: 'ca-informer' } } });
    t.after(() => core.deleteNamespace({ name: 'ca-informer' }).then(() => undefined));
    const { running } = await controller(t, { namespace: 'ca-informer' });
    const agentA = running.client(await podToken(CA_NAMESPACE, 'ferry-agent', agentPods.get('node-a'))).client;
    const late: SpiffeId = { trustDomain: TD, namespace: 'shop', serviceAccount: 'late' };
    const allowed = (): Promise<boolean> =>
      issue(agentA, late).then(
        () => true,
        () => false,
      );
    assert.equal(await allowed(), false);
    const created = await core.createNamespacedPod({ namespace: 'shop', body: podBody('late-1', 'late', 'node-a') });
    t.after(() =>
      core.deleteNamespacedPod({ name: 'late-1', namespace: 'shop', gracePeriodSeconds: 0 }).then(
        () => undefined,
        () => undefined,
      ),
    );
    await eventually('the new pod to allow shop/late on node-a', 10_000, allowed);
    const current = await core.readNamespacedPod({ name: 'late-1', namespace: 'shop' });
    current.status = { ...current.status, phase: 'Succeeded' };
    await core.replaceNamespacedPodStatus({ name: 'late-1', namespace: 'shop', body: current });
    await eventually('the Succeeded pod to stop allowing shop/late', 10_000, async () => !(await allowed()));
    await core.deleteNamespacedPod({ name: 'late-1', namespace: 'shop', gracePeriodSeconds: 0 });
    const again = await core.createNamespacedPod({ namespace: 'shop', body: podBody('late-2', 'late', 'node-b') });
    t.after(() =>
      core.deleteNamespacedPod({ name: 'late-2', namespace: 'shop', gracePeriodSeconds: 0 }).then(
        () => undefined,
        () => undefined,
      ),
    );
    assert.notEqual(again.metadata!.uid, created.metadata!.uid);
    await sleep(500);
    assert.equal(await allowed(), false, 'a pod of the account on node-b does not let node-a ask');
  });

  test('controllers starting together create the CA Secret once and agree on it; a broken Secret leaves the CA in force', async (t) => {
    const namespace = 'ca-race';
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    t.after(() => core.deleteNamespace({ name: namespace }).then(() => undefined));
    const results = await Promise.all(Array.from({ length: 4 }, () => ensureCaSecret(cluster.kube, { trustDomain: TD, namespace })));
    assert.equal(results.filter((r) => r.created).length, 1, 'exactly one create succeeded');
    const roots = new Set(results.map((r) => r.files['root-1.cert.pem']));
    assert.equal(roots.size, 1, 'every controller holds the same root');
    const secret = await core.readNamespacedSecret({ name: CA_SECRET_NAME, namespace });
    assert.equal(secret.type, 'Opaque');
    assert.deepEqual(Object.keys(secret.data ?? {}).sort(), [
      'ca.json',
      'intermediate-1.cert.pem',
      'intermediate-1.chain.pem',
      'intermediate-1.key.pem',
      'root-1.cert.pem',
      'root-1.key.pem',
    ]);
    const stores = await Promise.all(
      [0, 1].map(() => KubeCaStore.open({ kube: cluster.kube, trustDomain: TD, namespace, log: silentLog })),
    );
    t.after(() => Promise.all(stores.map((s) => s.close())).then(() => undefined));
    assert.deepEqual(
      stores.map((s) => [s.created, s.current()!.roots[0] === [...roots][0]]),
      [
        [false, true],
        [false, true],
      ],
    );
    const published = await readTrustBundle(cluster.kube, { namespace });
    assert.deepEqual([published.metadata.generation, published.roots[0] === [...roots][0]], [1, true]);
    const configMap = await core.readNamespacedConfigMap({ name: CA_BUNDLE_CONFIGMAP_NAME, namespace });
    assert.ok(!Object.values(configMap.data ?? {}).some((v) => v.includes('PRIVATE KEY')), 'no key in the ConfigMap');
    // Another trust domain's controller refuses this CA.
    await assert.rejects(
      KubeCaStore.open({ kube: cluster.kube, trustDomain: 'other.td', namespace, log: silentLog }),
      /holds a CA for trust domain "cluster.local", but this controller serves "other.td"/,
    );
    // A hand-edited Secret whose ca.json names a key it lacks: the stores keep the CA they hold.
    const lines: string[] = [];
    const watched = await KubeCaStore.open({
      kube: cluster.kube,
      trustDomain: TD,
      namespace,
      log: createRootLogger('error', {
        write: (line: string) => {
          lines.push(line);
        },
      }),
    });
    t.after(() => watched.close());
    const broken = { ...secret.data! };
    broken['ca.json'] = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(secret.data!['ca.json'], 'base64').toString()), generation: 9, issuer: 'root-9' }),
    ).toString('base64');
    await core.replaceNamespacedSecret({ name: CA_SECRET_NAME, namespace, body: { ...secret, data: broken } });
    await eventually('the broken Secret to be reported', 10_000, () =>
      lines.some((l) => l.includes('data key \\"root-9.cert.pem\\" is missing')),
    );
    assert.equal(watched.current()!.metadata.generation, 1);
  });

  test('a full rotation through the API: TLS pairs re-issued at each phase always verify against the bundles agents hold', async (t) => {
    // The defaults: Secret ferry-system/ferry-ca, ConfigMap ferry-system/ferry-ca-root-cert.
    t.after(async () => {
      await core.deleteNamespacedSecret({ name: CA_SECRET_NAME, namespace: CA_NAMESPACE }).catch(() => undefined);
      await core.deleteNamespacedConfigMap({ name: CA_BUNDLE_CONFIGMAP_NAME, namespace: CA_NAMESPACE }).catch(() => undefined);
    });
    const { running, store } = await controller(t);
    assert.equal(store.created, true);
    const agents = await Promise.all(
      ['node-a', 'node-b'].map(async (node) => {
        const client = running.client(await podToken(CA_NAMESPACE, 'ferry-agent', agentPods.get(node))).client;
        const changes: CaChange[] = [];
        t.after(client.watchTrustBundle((c) => changes.push(c)));
        return { client, changes, bundle: () => changes.at(-1)?.roots ?? [] };
      }),
    );
    const [a, b] = agents;
    const caughtUp = (generation: number): Promise<void> =>
      eventually(`both agents to hold generation ${generation}`, 10_000, () =>
        agents.every((x) => (x.changes.at(-1)?.generation ?? 0) >= generation),
      );
    const published = async (generation: number): Promise<void> => {
      const bundle = await readTrustBundle(cluster.kube);
      assert.equal(bundle.metadata.generation, generation);
      assert.deepEqual(bundle.roots, a.bundle(), 'the ConfigMap holds the bundle the agents were sent');
    };
    type Cert = { chainPem: string[]; keyPem: string };
    const verify = async (label: string, webCert: Cert, dbCert: Cert): Promise<void> => {
      for (const [client, clientAgent, server, serverAgent, way] of [
        [webCert, a, dbCert, b, 'web → db'],
        [dbCert, b, webCert, a, 'db → web'],
      ] as const) {
        const r = await mutualTls({ ...server, bundle: serverAgent.bundle() }, { ...client, bundle: clientAgent.bundle() });
        assert.deepEqual([r.clientVerified, r.serverVerified], [true, true], `${label}: ${way} ${r.clientError ?? ''}`);
      }
    };
    const issuerOf = (cert: Cert): string => new crypto.X509Certificate(cert.chainPem[0]).issuer;

    await caughtUp(1);
    await published(1);
    const webBefore = await issue(a.client, web);
    const dbBefore = await issue(b.client, db);
    await verify('before', webBefore, dbBefore);

    await assert.rejects(
      rotateCa(cluster.kube, 'switch'),
      /switchIssuer needs phase "rotating" but the CA is "steady" \(next step: beginRotation\)/,
    );
    // Two operators preparing at once: one wins, the other is told the phase moved.
    const prepared = await Promise.allSettled([rotateCa(cluster.kube, 'prepare'), rotateCa(cluster.kube, 'prepare')]);
    assert.deepEqual(prepared.map((p) => p.status).sort(), ['fulfilled', 'rejected']);
    assert.match(
      String((prepared.find((p) => p.status === 'rejected') as PromiseRejectedResult).reason),
      /beginRotation needs phase "steady" but the CA is "rotating"/,
    );
    await caughtUp(2);
    await published(2);
    assert.equal(a.bundle().length, 2);
    const webDuring = await issue(a.client, web);
    assert.match(issuerOf(webDuring), /intermediate-1/);
    await verify('prepare: issued before', webBefore, dbBefore);
    await verify('prepare: issued during', webDuring, dbBefore);

    await rotateCa(cluster.kube, 'switch');
    await caughtUp(3);
    await published(3);
    assert.equal(a.changes.at(-1)!.issuerChanged, true);
    const webAfter = await issue(a.client, web);
    assert.match(issuerOf(webAfter), /intermediate-2/);
    await verify('switch: new web, old db', webAfter, dbBefore);
    const dbAfter = await issue(b.client, db);
    await verify('switch: both new', webAfter, dbAfter);

    await rotateCa(cluster.kube, 'finish');
    await caughtUp(4);
    await published(4);
    assert.equal(a.bundle().length, 1);
    await verify('finish', webAfter, dbAfter);
    await verify('finish: issued after', await issue(a.client, web), await issue(b.client, db));
    const stale = await mutualTls({ ...dbAfter, bundle: b.bundle() }, { ...webBefore, bundle: a.bundle() });
    assert.equal(stale.serverVerified, false, 'a certificate of the retired root no longer verifies');
    const secret = await core.readNamespacedSecret({ name: CA_SECRET_NAME, namespace: CA_NAMESPACE });
    assert.deepEqual(Object.keys(secret.data ?? {}).sort(), [
      'ca.json',
      'intermediate-2.cert.pem',
      'intermediate-2.chain.pem',
      'intermediate-2.key.pem',
      'root-2.cert.pem',
      'root-2.key.pem',
    ]);
    assert.deepEqual(
      a.changes.map((c) => [c.generation, c.phase]),
      [
        [1, 'steady'],
        [2, 'rotating'],
        [3, 'switched'],
        [4, 'steady'],
      ],
    );
  });
});
