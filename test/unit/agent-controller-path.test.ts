// The agent's controller path without a kernel: the config stream (GrpcConfigSource) and the CA service
// (GrpcCaClient) over a real gRPC server on a unix socket in a temporary directory, with TLS and the
// controller's name checked through the server-name override (as the sandbox's agents reach the controller
// from other network namespaces); the trust reaction both CA paths share (app/trust.ts followTrust) through
// a rotation; and the admin API's GET /trust. FAKE: agents are authenticated by a token table
// (TableAuthenticator), not TokenReview (test/k8s covers that).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import type * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startAdminServer, trustDump, type AdminSources } from '../../src/app/admin';
import type { TrustDump } from '../../src/app/admin-types';
import { followTrust, type TrustState } from '../../src/app/trust';
import { GrpcConfigSource } from '../../src/config-client';
import { ConfigServer, ResourceStore } from '../../src/controller';
import { CaService, caServerOptions } from '../../src/controller/ca-service';
import { PodIndex } from '../../src/controller/pod-directory';
import { GrpcCaClient, IdentityError, WorkloadCertificates, type SpiffeId } from '../../src/identity';
import { RecordingSink, SERVER_NAME, controllerPki, quietLog, waitFor, workload } from './config-harness';
import { TableAuthenticator, memoryCa, pod } from './ca-harness';
import type { After } from './helpers';

const web: SpiffeId = { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'web' };

/** The controller's two services on one TLS gRPC server bound to `unix:<tmp>/controller.sock`, as `ferry controller --listen unix:…`. */
async function unixController(t: After) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-unix-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const keys = await controllerPki();
  const auth = new TableAuthenticator();
  auth.add('token-a', 'node-a');
  const store = new ResourceStore();
  const config = new ConfigServer({
    store,
    authenticator: auth,
    log: quietLog,
    limits: { batchDelayMs: 5, maxBatchDelayMs: 50, closeGraceMs: 300 },
  });
  const ca = await memoryCa();
  const pods = new PodIndex();
  pods.upsert(pod({ namespace: 'shop', serviceAccount: 'web', node: 'node-a' }));
  const caService = new CaService({ authenticator: auth, pods, ca: ca.holder, log: quietLog });
  const server = new grpc.Server({ ...caServerOptions(), ...config.serverOptions() });
  config.register(server);
  caService.addTo(server);
  const socket = path.join(dir, 'controller.sock');
  const address = `unix:${socket}`;
  const credentials = grpc.ServerCredentials.createSsl(
    null,
    [{ private_key: Buffer.from(keys.keyPem), cert_chain: Buffer.from(keys.certPem) }],
    false,
  );
  await new Promise<void>((resolve, reject) => server.bindAsync(address, credentials, (err) => (err ? reject(err) : resolve())));
  t.after(async () => {
    caService.close();
    await config.close();
    server.forceShutdown();
  });
  const caFile = path.join(dir, 'controller-ca.pem');
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(caFile, keys.caPem);
  fs.writeFileSync(tokenFile, 'token-a\n');
  return { address, socket, caFile, tokenFile, store, ca };
}

test('config stream and CA service over a unix socket, TLS checked against the overriding server name', async (t) => {
  const controller = await unixController(t);
  assert.ok(fs.statSync(controller.socket).isSocket());
  controller.store.upsert('workload', 'shop/cart-1', workload('cart-1', '10.244.0.11'));
  const sink = new RecordingSink();
  const source = new GrpcConfigSource({
    address: controller.address,
    caFile: controller.caFile,
    tokenFile: controller.tokenFile,
    node: 'node-a',
    serverName: SERVER_NAME,
    log: quietLog,
    backoff: { initialMs: 50, maxMs: 200 },
  });
  t.after(() => source.stop());
  source.start(sink);
  await waitFor(() => source.synced, 'the config stream to sync over the unix socket');
  assert.deepEqual(
    sink.state.workloads.map((w) => w.uid),
    ['shop/cart-1'],
  );

  const client = new GrpcCaClient({
    address: controller.address,
    caFile: controller.caFile,
    tokenFile: controller.tokenFile,
    serverName: SERVER_NAME,
  });
  t.after(() => client.close());
  const certificates = new WorkloadCertificates({ ca: client, trustDomain: 'cluster.local', ttlSeconds: 600, log: quietLog });
  t.after(() => certificates.close());
  const issued = await certificates.fetch(web);
  assert.equal(issued.principal, 'cluster.local/ns/shop/sa/web');
  assert.match(issued.issuer, /intermediate-1/);

  // Without the override the name checked is the unix target's default authority ("localhost"), which the
  // controller's certificate does not carry: the handshake must fail, never fall back to trusting it.
  const unnamed = new GrpcCaClient({
    address: controller.address,
    caFile: controller.caFile,
    tokenFile: controller.tokenFile,
    timeoutMs: 3000,
  });
  t.after(() => unnamed.close());
  await assert.rejects(unnamed.trustBundle(), (err: unknown) => {
    assert.ok(err instanceof IdentityError, String(err));
    assert.match(err.message, /UNAVAILABLE|DEADLINE_EXCEEDED/);
    return true;
  });
  const misnamed = new GrpcCaClient({
    address: controller.address,
    caFile: controller.caFile,
    tokenFile: controller.tokenFile,
    serverName: 'other.ferry.test',
    timeoutMs: 3000,
  });
  t.after(() => misnamed.close());
  await assert.rejects(misnamed.trustBundle(), /UNAVAILABLE|DEADLINE_EXCEEDED/);
});

test('followTrust over the CA service: roots at once, re-issue on the issuer switch, then the generation; GET /trust reports it', async (t) => {
  const controller = await unixController(t);
  const client = new GrpcCaClient({
    address: controller.address,
    caFile: controller.caFile,
    tokenFile: controller.tokenFile,
    serverName: SERVER_NAME,
  });
  t.after(() => client.close());
  const certificates = new WorkloadCertificates({ ca: client, trustDomain: 'cluster.local', ttlSeconds: 600, log: quietLog });
  t.after(() => certificates.close());
  const reached: TrustState[] = [];
  const trust = followTrust(certificates, quietLog, (state) => reached.push(state));
  assert.deepEqual(trust.state(), { generation: 0 });
  t.after(client.watchTrustBundle(trust.onChange));
  await waitFor(() => trust.state().generation > 0, 'the first trust bundle');
  const first = trust.state();
  assert.equal(first.phase, 'steady');
  assert.match(first.issuer ?? '', /intermediate-1/);
  await certificates.fetch(web);

  const admin = await startAdminServer(
    {
      node: 'node-a',
      certificates,
      trust: { source: `controller ${controller.address}`, state: () => trust.state() },
    } as unknown as AdminSources,
    0,
  );
  t.after(() => closeServer(admin));
  const url = `http://127.0.0.1:${(admin.address() as AddressInfo).port}/trust`;
  const get = async (): Promise<TrustDump> => {
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    return (await res.json()) as TrustDump;
  };
  const before = await get();
  assert.equal(before.node, 'node-a');
  assert.equal(before.source, `controller ${controller.address}`);
  assert.equal(before.generation, first.generation);
  assert.equal(before.phase, 'steady');
  assert.equal(before.roots.length, 1);
  assert.deepEqual(
    before.certificates.map((c) => c.principal),
    ['cluster.local/ns/shop/sa/web'],
  );
  assert.match(before.certificates[0]!.issuer, /intermediate-1/);
  assert.equal((await fetch(url, { method: 'POST' })).status, 405);

  await controller.ca.rotate('beginRotation');
  await waitFor(() => trust.state().phase === 'rotating', 'the rotating phase');
  assert.equal(certificates.trustBundle().length, 2, 'both roots trusted during the rotation');
  await controller.ca.rotate('switchIssuer');
  await waitFor(() => trust.state().phase === 'switched', 'the switched phase', 10_000);
  // The generation counts only once every certificate is re-issued by the new issuer.
  assert.match(certificates.get(web)?.issuer ?? '', /intermediate-2/);
  const after = await get();
  assert.equal(after.phase, 'switched');
  assert.match(after.issuer ?? '', /intermediate-2/);
  assert.ok(after.generation > before.generation);
  assert.equal(after.roots.length, 2);
  assert.match(after.certificates[0]!.issuer, /intermediate-2/);
  assert.deepEqual(
    reached.map((s) => s.phase),
    ['steady', 'rotating', 'switched'],
  );
  assert.deepEqual(after, trustDump({ node: 'node-a', certificates, trust: { source: after.source, state: () => trust.state() } }));
});

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
