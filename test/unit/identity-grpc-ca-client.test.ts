// Tests for the agent's CA service client (src/identity grpc-ca-client.ts) over real gRPC and TLS on loopback:
// WorkloadCertificates unchanged on top of it, the token file read per call, the controller's name checked,
// the watcher's reconnects, and a hostile server's bundles refused. FAKE: agents are authenticated by a
// token table (TableAuthenticator); the TokenReview path is in test/k8s/ca-service.test.ts.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { PodIndex } from '../../src/controller/pod-directory';
import {
  GrpcCaClient,
  IdentityError,
  WorkloadCertificates,
  certificateServiceDefinition,
  type CaChange,
  type SpiffeId,
  type TrustBundleMessage,
} from '../../src/identity';
import { SERVER_NAME, TableAuthenticator, issue, memoryCa, pod, servingPki, silentLog, startCaService, tempDir } from './ca-harness';
import { within } from './helpers';

const web: SpiffeId = { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'web' };

async function fixture(t: { after: (fn: () => void | Promise<void>) => void }) {
  const ca = await memoryCa();
  const pods = new PodIndex();
  pods.upsert(pod({ namespace: 'shop', serviceAccount: 'web', node: 'node-a' }));
  const auth = new TableAuthenticator();
  auth.add('token-a', 'node-a');
  const running = await startCaService(t, { authenticator: auth, pods, ca: ca.holder });
  return { ca, pods, auth, running };
}

function caServiceError(pattern: RegExp): (err: unknown) => true {
  return (err: unknown) => {
    assert.ok(err instanceof IdentityError, String(err));
    assert.equal(err.code, 'FERRY_ERR_IDENTITY_CA_SERVICE');
    assert.match(err.message, pattern);
    return true;
  };
}

test('WorkloadCertificates issues, trusts and re-issues through the CA service unchanged', async (t) => {
  const { running, ca } = await fixture(t);
  const { client } = running.client('token-a');
  const certificates = new WorkloadCertificates({ ca: client, trustDomain: 'cluster.local', ttlSeconds: 600, log: silentLog });
  t.after(() => certificates.close());
  const first = await certificates.fetch(web);
  assert.equal(first.principal, 'cluster.local/ns/shop/sa/web');
  assert.match(first.issuer, /intermediate-1/);
  assert.equal(certificates.trustBundle().length, 1, 'the bundle came from the service first');
  // The agent's reaction to a watcher report, as with the CA directory: trust the roots, re-issue on an issuer change.
  const changes: CaChange[] = [];
  t.after(
    client.watchTrustBundle((change) => {
      changes.push(change);
      certificates.setTrustBundle(change.roots);
      if (change.issuerChanged) void certificates.renewAll(`CA issuer is now ${change.issuer}`);
    }),
  );
  await ca.rotate('beginRotation');
  await ca.rotate('switchIssuer');
  await within(
    (async () => {
      while (!/intermediate-2/.test(certificates.get(web)?.issuer ?? '')) await new Promise((resolve) => setTimeout(resolve, 10));
    })(),
    5000,
    'the certificate to be re-issued by intermediate-2',
  );
  assert.equal(certificates.trustBundle().length, 2);
  assert.ok(changes.some((c) => c.issuerChanged));
  assert.deepEqual(await client.trustBundle(), [...certificates.trustBundle()], "trustBundle() answers from the live watcher's bundle");
});

test('the token is read from its file for every call (projected tokens rotate)', async (t) => {
  const { running, auth } = await fixture(t);
  const { client, tokenFile } = running.client('token-a');
  await issue(client, web);
  // The kubelet replaced the token: the old one is no longer accepted, the new one is.
  auth.agents.delete('token-a');
  auth.add('token-a-rotated', 'node-a');
  fs.writeFileSync(tokenFile, 'token-a-rotated');
  await issue(client, web);
  fs.writeFileSync(tokenFile, 'token-a');
  await assert.rejects(
    issue(client, web),
    caServiceError(/Sign spiffe:\/\/cluster.local\/ns\/shop\/sa\/web: UNAUTHENTICATED: agent at .*: unknown token/),
  );
  fs.writeFileSync(tokenFile, '  \n');
  await assert.rejects(issue(client, web), caServiceError(/token file .* is empty/));
  fs.rmSync(tokenFile);
  await assert.rejects(issue(client, web), caServiceError(/cannot read token file .*ENOENT/));
  await assert.rejects(client.trustBundle(), caServiceError(/WatchTrustBundle: cannot read token file/));
});

test("the controller's certificate must carry the expected name and chain to the CA file", async (t) => {
  const { running } = await fixture(t);
  const { client } = running.client('token-a', { serverName: 'impostor.example' });
  await assert.rejects(issue(client, web), caServiceError(/UNAVAILABLE/));
  // A controller certificate from a CA the agent was not given: refused too.
  const dir = tempDir(t);
  const other = await servingPki(dir);
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(tokenFile, 'token-a');
  const stranger = new GrpcCaClient({ address: running.address, caFile: other.caFile, tokenFile, serverName: SERVER_NAME });
  t.after(() => stranger.close());
  await assert.rejects(issue(stranger, web), caServiceError(/UNAVAILABLE/));
  assert.equal(running.service.stats().signed, 0, 'neither call reached the service');
  assert.throws(
    () => new GrpcCaClient({ address: running.address, caFile: '/nonexistent/ca.pem', tokenFile: '/x', serverName: SERVER_NAME }),
    caServiceError(/cannot read caFile \/nonexistent\/ca.pem/),
  );
});

test('a controller back with a certificate of another root is verified once the CA file holds that root', async (t) => {
  const { running, auth, pods, ca } = await fixture(t);
  const { client } = running.client('token-a');
  await issue(client, web);
  const port = Number(running.address.split(':')[1]);
  await running.stop();
  // As after a root rotation: the controller now serves a certificate the agent's CA file does not know yet.
  const rotated = await servingPki(tempDir(t));
  const again = await startCaService(t, { authenticator: auth, pods, ca: ca.holder, port, pki: rotated });
  await assert.rejects(issue(client, web), caServiceError(/UNAVAILABLE/));
  assert.equal(again.service.stats().signed, 0);
  // The file gets the new root beside the old one (a mounted ConfigMap, the sandbox's controller-ca.pem).
  fs.writeFileSync(running.caFile, `${fs.readFileSync(running.caFile, 'utf8')}${fs.readFileSync(rotated.caFile, 'utf8')}`);
  await issue(client, web);
  assert.equal(again.service.stats().signed, 1);
});

test('the watcher reconnects after the controller restarts and reports a CA that started over', async (t) => {
  const { running, auth, pods } = await fixture(t);
  const { client } = running.client('token-a');
  const changes: CaChange[] = [];
  const errors: Error[] = [];
  t.after(
    client.watchTrustBundle(
      (c) => changes.push(c),
      (e) => errors.push(e),
      { retryStartMs: 20, retryCapMs: 100 },
    ),
  );
  const until = (what: string, done: () => boolean): Promise<void> =>
    within(
      (async () => {
        while (!done()) await new Promise((resolve) => setTimeout(resolve, 10));
      })(),
      5000,
      what,
    );
  await until('the first bundle', () => changes.length === 1);
  const port = Number(running.address.split(':')[1]);
  await running.stop();
  await until('the broken stream to be reported', () => errors.length > 0);
  // A new controller on the same address with a CA of its own (the same generation number, other roots).
  const replacement = await memoryCa();
  await startCaService(t, { authenticator: auth, pods, ca: replacement.holder, port, pki: running.pki });
  await until('the new CA', () => changes.length === 2);
  assert.deepEqual([changes[1].generation, changes[1].first, changes[1].rootsChanged], [1, false, true]);
  assert.notEqual(changes[1].roots[0], changes[0].roots[0]);
  // Errors are reported once per distinct message, not once per retry.
  assert.equal(new Set(errors.map((e) => e.message)).size, errors.length);
});

test("a hostile server's malformed bundles are refused; the agent keeps its last good one", async (t) => {
  const dir = tempDir(t);
  const pki = await servingPki(dir);
  const good = (await memoryCa()).holder.current()!;
  const messages: TrustBundleMessage[] = [
    { rootsPem: [], phase: 'ROTATION_PHASE_STEADY', generation: 1, issuer: 'root-1', trustDomain: 'td' },
    { rootsPem: good.roots, phase: 'ROTATION_PHASE_UNSPECIFIED', generation: 1, issuer: 'root-1', trustDomain: 'td' },
    { rootsPem: ['not a certificate'], phase: 'ROTATION_PHASE_STEADY', generation: 1, issuer: 'root-1', trustDomain: 'td' },
    { rootsPem: good.roots, phase: 'ROTATION_PHASE_STEADY', generation: 0, issuer: 'root-1', trustDomain: 'td' },
    { rootsPem: good.roots, phase: 'ROTATION_PHASE_STEADY', generation: 7, issuer: 'root-1', trustDomain: 'td' },
  ];
  const server = new grpc.Server();
  server.addService(certificateServiceDefinition(), {
    Sign: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback({ code: grpc.status.UNIMPLEMENTED }),
    WatchTrustBundle: (call: grpc.ServerWritableStream<unknown, TrustBundleMessage>) => {
      for (const m of messages) call.write(m);
    },
  });
  const credentials = grpc.ServerCredentials.createSsl(
    null,
    [{ private_key: Buffer.from(pki.keyPem), cert_chain: Buffer.from(pki.certPem) }],
    false,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (e, p) => (e ? reject(e) : resolve(p))),
  );
  t.after(() => server.forceShutdown());
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(tokenFile, 'anything');
  const client = new GrpcCaClient({ address: `127.0.0.1:${port}`, caFile: pki.caFile, tokenFile, serverName: SERVER_NAME });
  t.after(() => client.close());
  const changes: CaChange[] = [];
  const errors: string[] = [];
  t.after(
    client.watchTrustBundle(
      (c) => changes.push(c),
      (e) => errors.push(e.message),
    ),
  );
  await within(
    (async () => {
      while (changes.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    })(),
    5000,
    'the one good bundle',
  );
  assert.deepEqual(
    errors.map((e) => e.replace(/^CA service [^:]+:\d+: trust bundle: /, '')),
    [
      'the bundle has no roots',
      'phase ROTATION_PHASE_UNSPECIFIED is not a rotation phase',
      'a root is not a PEM certificate',
      'generation 0 is not a positive integer',
    ],
  );
  assert.deepEqual([changes.length, changes[0].generation], [1, 7]);
  assert.equal(new crypto.X509Certificate(changes[0].roots[0]).fingerprint256, new crypto.X509Certificate(good.roots[0]).fingerprint256);
  // trustBundle() without a watcher takes the first message of a fresh stream, and refuses it when malformed.
  const oneOff = new GrpcCaClient({ address: `127.0.0.1:${port}`, caFile: pki.caFile, tokenFile, serverName: SERVER_NAME });
  t.after(() => oneOff.close());
  await assert.rejects(oneOff.trustBundle(), caServiceError(/trust bundle: the bundle has no roots/));
});
