// Tests for the controller's CertificateService (src/controller ca-service.ts) over real gRPC and TLS on
// loopback. FAKE: agents are authenticated by a token table (TableAuthenticator), not a TokenReview; the
// pods come from a PodIndex fed Pod objects. Both real paths are in test/k8s/ca-service.test.ts.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { CaService } from '../../src/controller/ca-service';
import { PodIndex } from '../../src/controller/pod-directory';
import {
  certificateServiceDefinition,
  spiffeUri,
  type SignRequestMessage,
  type SignResponseMessage,
  type SpiffeId,
  type TrustBundleMessage,
} from '../../src/identity';
import { forgeCsr } from '../fixtures/certs';
import { TableAuthenticator, issue, memoryCa, pod, startCaService, type RunningCaService } from './ca-harness';
import { within } from './helpers';

const TD = 'cluster.local';
const web: SpiffeId = { trustDomain: TD, namespace: 'shop', serviceAccount: 'web' };
const db: SpiffeId = { trustDomain: TD, namespace: 'shop', serviceAccount: 'db' };
const definition = certificateServiceDefinition();

async function fixture(t: { after: (fn: () => void | Promise<void>) => void }, limits = {}) {
  const ca = await memoryCa();
  const pods = new PodIndex();
  pods.upsert(pod({ namespace: 'shop', serviceAccount: 'web', node: 'node-a', name: 'web-1', uid: 'uid-web-1' }));
  pods.upsert(pod({ namespace: 'shop', serviceAccount: 'db', node: 'node-b', name: 'db-1', uid: 'uid-db-1' }));
  const auth = new TableAuthenticator();
  auth.add('token-a', 'node-a');
  auth.add('token-b', 'node-b');
  const running = await startCaService(t, { authenticator: auth, pods, ca: ca.holder, limits });
  return { ca, pods, auth, running };
}

/** A Sign call with every field under the caller's control; resolves to the reply or the gRPC error. */
function rawSign(
  running: RunningCaService,
  token: string | undefined,
  request: Partial<SignRequestMessage>,
): Promise<SignResponseMessage | grpc.ServiceError> {
  const client = running.raw();
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
  const method = definition.Sign;
  const full: SignRequestMessage = { csrPem: '', namespace: '', serviceAccount: '', ttlSeconds: 0, podUid: '', podName: '', ...request };
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize as (b: Buffer) => SignResponseMessage,
      full,
      metadata,
      { deadline: Date.now() + 10_000 },
      (err, reply) => resolve(err ?? (reply as SignResponseMessage)),
    );
  });
}

function assertStatus(result: unknown, code: grpc.status, pattern: RegExp): void {
  const err = result as grpc.ServiceError;
  assert.ok(err instanceof Error, `expected ${grpc.status[code]}, got a reply`);
  assert.equal(grpc.status[err.code], grpc.status[code], err.details);
  assert.match(err.details, pattern);
}

test('an agent gets a certificate for a service account with a pod on its node, verifying against the bundle it returns', async (t) => {
  const { running } = await fixture(t);
  const { client } = running.client('token-a');
  const { chainPem } = await issue(client, web, 600);
  const leaf = new crypto.X509Certificate(chainPem[0]);
  assert.equal(leaf.subjectAltName, `URI:${spiffeUri(web)}`);
  const reply = (await rawSign(running, 'token-a', {
    csrPem: await forgeCsr({ uris: [spiffeUri(web)] }),
    namespace: 'shop',
    serviceAccount: 'web',
    ttlSeconds: 600,
    podUid: 'uid-web-1',
    podName: 'web-1',
  })) as SignResponseMessage;
  assert.equal(reply.chainPem.length, 2, 'leaf and intermediate');
  assert.equal(reply.trustBundlePem.length, 1);
  const root = new crypto.X509Certificate(reply.trustBundlePem[0]);
  const intermediate = new crypto.X509Certificate(reply.chainPem[1]);
  assert.ok(new crypto.X509Certificate(reply.chainPem[0]).verify(intermediate.publicKey) && intermediate.verify(root.publicKey));
  assert.equal(running.service.stats().signed, 2);
});

test('PERMISSION_DENIED, naming the identity and the node, for a service account whose pods are elsewhere or gone', async (t) => {
  const { running, pods } = await fixture(t);
  const csr = await forgeCsr({ uris: [spiffeUri(db)] });
  assertStatus(
    await rawSign(running, 'token-a', { csrPem: csr, namespace: 'shop', serviceAccount: 'db' }),
    grpc.status.PERMISSION_DENIED,
    /sign spiffe:\/\/cluster.local\/ns\/shop\/sa\/db: no running pod of service account shop\/db is scheduled on node node-a/,
  );
  // The right pod, but the agent names another pod of that account: refused too.
  const webCsr = await forgeCsr({ uris: [spiffeUri(web)] });
  assertStatus(
    await rawSign(running, 'token-a', { csrPem: webCsr, namespace: 'shop', serviceAccount: 'web', podUid: 'uid-db-1' }),
    grpc.status.PERMISSION_DENIED,
    /\(pod \? uid uid-db-1\) is scheduled on node node-a/,
  );
  // The node-b agent may sign db; once db-1 has Succeeded, nobody may.
  assert.ok(!((await rawSign(running, 'token-b', { csrPem: csr, namespace: 'shop', serviceAccount: 'db' })) instanceof Error));
  pods.upsert(pod({ namespace: 'shop', serviceAccount: 'db', node: 'node-b', name: 'db-1', uid: 'uid-db-1', phase: 'Succeeded' }));
  assertStatus(
    await rawSign(running, 'token-b', { csrPem: csr, namespace: 'shop', serviceAccount: 'db' }),
    grpc.status.PERMISSION_DENIED,
    /node node-b/,
  );
  assert.equal(running.service.stats().denied, 3);
});

test('unauthenticated calls are refused before anything else', async (t) => {
  const { running, auth } = await fixture(t);
  const csr = await forgeCsr({ uris: [spiffeUri(web)] });
  assertStatus(
    await rawSign(running, undefined, { csrPem: csr, namespace: 'shop', serviceAccount: 'web' }),
    grpc.status.UNAUTHENTICATED,
    /unknown token/,
  );
  assertStatus(
    await rawSign(running, 'made-up', { csrPem: csr, namespace: 'shop', serviceAccount: 'web' }),
    grpc.status.UNAUTHENTICATED,
    /unknown token/,
  );
  assert.equal(auth.calls, 2);
  assert.equal(running.service.stats().unauthenticated, 2);
});

test('bad requests are INVALID_ARGUMENT naming the problem: oversized, unreadable or mismatched CSRs, bad names', async (t) => {
  const { running } = await fixture(t, { maxCsrBytes: 2048 });
  const csr = await forgeCsr({ uris: [spiffeUri(web)] });
  const cases: Array<[Partial<SignRequestMessage>, RegExp]> = [
    [{ csrPem: `${csr}${' '.repeat(2048)}` }, /csr_pem is \d+ bytes; at most 2048/],
    [{ csrPem: 'garbage' }, /not a PEM PKCS#10 request/],
    [
      { csrPem: await forgeCsr({ uris: [spiffeUri(db)] }) },
      /must request exactly the URI SAN spiffe:\/\/cluster.local\/ns\/shop\/sa\/web, found URI:spiffe:\/\/cluster.local\/ns\/shop\/sa\/db/,
    ],
    [{ csrPem: await forgeCsr({ uris: [spiffeUri(web)], tamper: true }) }, /signature does not verify/],
    [{ namespace: '..' }, /namespace must not be ".."/],
    [{ serviceAccount: 'web/../../db' }, /serviceAccount "web\/..\/..\/db" may only contain/],
    [{ namespace: '' }, /namespace is empty/],
  ];
  for (const [override, pattern] of cases) {
    assertStatus(
      await rawSign(running, 'token-a', { csrPem: csr, namespace: 'shop', serviceAccount: 'web', ...override }),
      grpc.status.INVALID_ARGUMENT,
      pattern,
    );
  }
  // Past the server's message cap, gRPC refuses before the service sees anything.
  assertStatus(
    await rawSign(running, 'token-a', { csrPem: 'x'.repeat(64 * 1024), namespace: 'shop', serviceAccount: 'web' }),
    grpc.status.RESOURCE_EXHAUSTED,
    /larger than max/,
  );
  // Bytes that are no protobuf message at all.
  const garbage = await new Promise<grpc.ServiceError | null>((resolve) => {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', 'Bearer token-a');
    running.raw().makeUnaryRequest(
      definition.Sign.path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a]),
      metadata,
      {},
      (err) => resolve(err),
    );
  });
  assert.ok(garbage !== null);
  assert.equal(grpc.status[garbage.code], 'INTERNAL');
  // And the service still serves.
  assert.ok(!((await rawSign(running, 'token-a', { csrPem: csr, namespace: 'shop', serviceAccount: 'web' })) instanceof Error));
});

test('lifetimes are clamped into the service range, 0 meaning the default', async (t) => {
  const { running } = await fixture(t, { minTtlSeconds: 300, defaultTtlSeconds: 3600, maxTtlSeconds: 7200 });
  const csr = await forgeCsr({ uris: [spiffeUri(web)] });
  const lifetime = async (ttlSeconds: number): Promise<number> => {
    const reply = (await rawSign(running, 'token-a', {
      csrPem: csr,
      namespace: 'shop',
      serviceAccount: 'web',
      ttlSeconds,
    })) as SignResponseMessage;
    const leaf = new crypto.X509Certificate(reply.chainPem[0]);
    return Math.round((Date.parse(leaf.validTo) - Date.now()) / 1000);
  };
  const near = (actual: number, expected: number): void =>
    assert.ok(Math.abs(actual - expected) <= 5, `${actual} s, expected ${expected} s`);
  near(await lifetime(1), 300);
  near(await lifetime(0), 3600);
  near(await lifetime(4000), 4000);
  near(await lifetime(10 * 24 * 3600), 7200);
});

test("each agent's signs are rate limited (RESOURCE_EXHAUSTED saying when to retry), other agents unaffected", async (t) => {
  const { running } = await fixture(t, { signBurst: 3, signsPerSecond: 0.01 });
  const csr = await forgeCsr({ uris: [spiffeUri(web)] });
  for (let i = 0; i < 3; i += 1)
    assert.ok(!((await rawSign(running, 'token-a', { csrPem: csr, namespace: 'shop', serviceAccount: 'web' })) instanceof Error));
  assertStatus(
    await rawSign(running, 'token-a', { csrPem: csr, namespace: 'shop', serviceAccount: 'web' }),
    grpc.status.RESOURCE_EXHAUSTED,
    /agent of node node-a: more than 3 signs at once or 0.01\/s; retry in \d+ ms/,
  );
  const dbCsr = await forgeCsr({ uris: [spiffeUri(db)] });
  assert.ok(!((await rawSign(running, 'token-b', { csrPem: dbCsr, namespace: 'shop', serviceAccount: 'db' })) instanceof Error));
  assert.equal(running.service.stats().rateLimited, 1);
});

test('UNAVAILABLE until the pods are listed', async (t) => {
  const ca = await memoryCa();
  const auth = new TableAuthenticator();
  auth.add('token-a', 'node-a');
  const index = new PodIndex();
  index.upsert(pod({ namespace: 'shop', serviceAccount: 'web', node: 'node-a' }));
  const pods = { synced: false, podsOnNode: (node: string) => index.podsOnNode(node) };
  const running = await startCaService(t, { authenticator: auth, pods, ca: ca.holder });
  const request = { csrPem: await forgeCsr({ uris: [spiffeUri(web)] }), namespace: 'shop', serviceAccount: 'web' };
  assertStatus(await rawSign(running, 'token-a', request), grpc.status.UNAVAILABLE, /has not listed the cluster's pods yet/);
  pods.synced = true;
  assert.ok(!((await rawSign(running, 'token-a', request)) instanceof Error));
});

test('WatchTrustBundle sends the bundle at once and every generation after; watches per node are capped', async (t) => {
  const { running, ca } = await fixture(t, { maxWatchesPerNode: 2 });
  const open = (
    token: string,
  ): {
    messages: TrustBundleMessage[];
    errors: grpc.ServiceError[];
    call: grpc.ClientReadableStream<TrustBundleMessage>;
    next: () => Promise<void>;
  } => {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    const method = definition.WatchTrustBundle;
    const call = running
      .raw()
      .makeServerStreamRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize as (b: Buffer) => TrustBundleMessage,
        {},
        metadata,
        {},
      );
    const state = { messages: [] as TrustBundleMessage[], errors: [] as grpc.ServiceError[], call, next: async () => {} };
    let wake: () => void = () => {};
    call.on('data', (m: TrustBundleMessage) => {
      state.messages.push(m);
      wake();
    });
    call.on('error', (e: grpc.ServiceError) => {
      state.errors.push(e);
      wake();
    });
    state.next = () => within(new Promise<void>((resolve) => (wake = resolve)), 5000, 'a trust bundle message');
    return state;
  };
  const first = open('token-a');
  await first.next();
  assert.deepEqual(
    first.messages.map((m) => [m.generation, m.phase, m.issuer, m.rootsPem.length, m.trustDomain]),
    [[1, 'ROTATION_PHASE_STEADY', 'intermediate-1', 1, TD]],
  );
  const second = open('token-a');
  await second.next();
  const third = open('token-a');
  await third.next();
  assert.equal(third.errors.length, 1);
  assert.equal(grpc.status[third.errors[0].code], 'UNAVAILABLE');
  assert.match(third.errors[0].details, /agent of node node-a: 2 trust bundle watches are open already/);
  const stranger = open('nobody');
  await stranger.next();
  assert.equal(grpc.status[stranger.errors[0].code], 'UNAUTHENTICATED');

  let seen = first.next();
  await ca.rotate('beginRotation');
  await seen;
  assert.deepEqual(first.messages.map((m) => [m.generation, m.phase, m.rootsPem.length]).at(-1), [2, 'ROTATION_PHASE_ROTATING', 2]);
  // A closed watch frees its place.
  second.call.cancel();
  await within(
    (async () => {
      while (running.service.stats().watches > 1) await new Promise((resolve) => setTimeout(resolve, 10));
    })(),
    5000,
    'the cancelled watch to go',
  );
  const fourth = open('token-a');
  await fourth.next();
  assert.deepEqual([fourth.errors.length, fourth.messages[0].generation], [0, 2]);
  seen = first.next();
  await ca.rotate('switchIssuer');
  await seen;
  assert.equal(first.messages.at(-1)!.issuer, 'intermediate-2');
  running.service.close();
  first.call.cancel();
  fourth.call.cancel();
});

test('a CA whose issuer has expired answers UNAVAILABLE naming it, not INTERNAL', async (t) => {
  const ca = await memoryCa({ rootLifetimeSeconds: 1 });
  const auth = new TableAuthenticator();
  auth.add('token-a', 'node-a');
  const pods = new PodIndex();
  pods.upsert(pod({ namespace: 'shop', serviceAccount: 'web', node: 'node-a' }));
  const running = await startCaService(t, { authenticator: auth, pods, ca: ca.holder });
  const csr = await forgeCsr({ uris: [spiffeUri(web)] });
  const notAfter = Date.parse(new crypto.X509Certificate(ca.holder.current()!.roots[0]).validTo);
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, notAfter - Date.now()) + 50));
  assertStatus(
    await rawSign(running, 'token-a', { csrPem: csr, namespace: 'shop', serviceAccount: 'web' }),
    grpc.status.UNAVAILABLE,
    /sign spiffe:.*: CA issuer .* expired at/,
  );
});

test('a CaService refuses inconsistent lifetime limits', () => {
  assert.throws(
    () =>
      new CaService({
        authenticator: new TableAuthenticator(),
        pods: new PodIndex(),
        ca: { current: () => undefined, onChange: () => () => {} },
        log: undefined as never,
        limits: { minTtlSeconds: 7200, defaultTtlSeconds: 3600 },
      }),
    /need 1 <= minTtlSeconds <= defaultTtlSeconds <= maxTtlSeconds/,
  );
});
