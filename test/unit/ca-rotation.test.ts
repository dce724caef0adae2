// A full root rotation through the CA service over gRPC and TLS on loopback, with the CA held in memory by the
// same state machine and holder the Secret store uses. FAKE: agents are authenticated by a token table; the
// same rotation against the real API server (Secret, TokenReview) is in test/k8s/ca-service.test.ts.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import { PodIndex } from '../../src/controller/pod-directory';
import type { CaChange, GrpcCaClient, SpiffeId } from '../../src/identity';
import { TableAuthenticator, issue, memoryCa, mutualTls, pod, startCaService } from './ca-harness';
import { within } from './helpers';

const web: SpiffeId = { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'web' };
const db: SpiffeId = { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'db' };

/** An agent as far as trust goes: its CA client and the bundle its watcher holds. */
interface Agent {
  client: GrpcCaClient;
  changes: CaChange[];
  bundle: () => string[];
  caughtUp: (generation: number) => Promise<void>;
}

function agent(client: GrpcCaClient, t: { after: (fn: () => void) => void }): Agent {
  const changes: CaChange[] = [];
  const errors: Error[] = [];
  t.after(
    client.watchTrustBundle(
      (c) => changes.push(c),
      (e) => errors.push(e),
    ),
  );
  return {
    client,
    changes,
    bundle: () => changes.at(-1)?.roots ?? [],
    caughtUp: (generation) =>
      within(
        (async () => {
          while ((changes.at(-1)?.generation ?? 0) < generation) await new Promise((resolve) => setTimeout(resolve, 10));
          assert.deepEqual(errors, []);
        })(),
        5000,
        `the agent to hold CA generation ${generation}`,
      ),
  };
}

const issuerCn = (chainPem: string[]): string => new crypto.X509Certificate(chainPem[0]).issuer;

test('certificates issued before, during and after a rotation verify against the bundles agents hold at each phase', async (t) => {
  const ca = await memoryCa({ intermediate: true });
  const pods = new PodIndex();
  pods.upsert(pod({ namespace: 'shop', serviceAccount: 'web', node: 'node-a' }));
  pods.upsert(pod({ namespace: 'shop', serviceAccount: 'db', node: 'node-b' }));
  const auth = new TableAuthenticator();
  auth.add('token-a', 'node-a');
  auth.add('token-b', 'node-b');
  const running = await startCaService(t, { authenticator: auth, pods, ca: ca.holder });
  const a = agent(running.client('token-a').client, t);
  const b = agent(running.client('token-b').client, t);
  await Promise.all([a.caughtUp(1), b.caughtUp(1)]);
  const pair = async (
    client: { chainPem: string[]; keyPem: string },
    clientAgent: Agent,
    server: { chainPem: string[]; keyPem: string },
    serverAgent: Agent,
  ) => mutualTls({ ...server, bundle: serverAgent.bundle() }, { ...client, bundle: clientAgent.bundle() });
  const bothVerify = async (
    label: string,
    webCert: { chainPem: string[]; keyPem: string },
    dbCert: { chainPem: string[]; keyPem: string },
  ) => {
    const forth = await pair(webCert, a, dbCert, b);
    assert.deepEqual([forth.clientVerified, forth.serverVerified], [true, true], `${label}: web → db (${forth.clientError ?? ''})`);
    const back = await pair(dbCert, b, webCert, a);
    assert.deepEqual([back.clientVerified, back.serverVerified], [true, true], `${label}: db → web (${back.clientError ?? ''})`);
  };

  // Steady, generation 1.
  const webBefore = await issue(a.client, web);
  const dbBefore = await issue(b.client, db);
  assert.match(issuerCn(webBefore.chainPem), /intermediate-1/);
  await bothVerify('before', webBefore, dbBefore);

  // prepare: both roots trusted, the old authority still signs.
  await ca.rotate('beginRotation');
  await Promise.all([a.caughtUp(2), b.caughtUp(2)]);
  assert.equal(a.bundle().length, 2);
  assert.deepEqual([a.changes.at(-1)!.rootsChanged, a.changes.at(-1)!.issuerChanged, a.changes.at(-1)!.phase], [true, false, 'rotating']);
  const webDuring = await issue(a.client, web);
  assert.match(issuerCn(webDuring.chainPem), /intermediate-1/);
  await bothVerify('prepare: issued before', webBefore, dbBefore);
  await bothVerify('prepare: issued during', webDuring, dbBefore);

  // switch: the new authority signs; agents re-issue.
  await ca.rotate('switchIssuer');
  await Promise.all([a.caughtUp(3), b.caughtUp(3)]);
  assert.deepEqual([a.changes.at(-1)!.issuerChanged, a.changes.at(-1)!.issuer], [true, 'intermediate-2']);
  const webAfter = await issue(a.client, web);
  assert.match(issuerCn(webAfter.chainPem), /intermediate-2/);
  await bothVerify('switch: new web, old db', webAfter, dbBefore);
  const dbAfter = await issue(b.client, db);
  await bothVerify('switch: both re-issued', webAfter, dbAfter);

  // finish: only the new root is trusted.
  await ca.rotate('finishRotation');
  await Promise.all([a.caughtUp(4), b.caughtUp(4)]);
  assert.equal(a.bundle().length, 1);
  assert.match(new crypto.X509Certificate(a.bundle()[0]).subject, /root-2/);
  await bothVerify('finish', webAfter, dbAfter);
  await bothVerify('finish: issued after finishing', await issue(a.client, web), await issue(b.client, db));
  // The check can fail: a certificate from the retired root no longer verifies.
  const stale = await pair(webBefore, a, dbAfter, b);
  assert.equal(stale.serverVerified, false, 'db no longer trusts a certificate of the retired root');
  assert.deepEqual(
    a.changes.map((c) => [c.generation, c.phase, c.first]),
    [
      [1, 'steady', true],
      [2, 'rotating', false],
      [3, 'switched', false],
      [4, 'steady', false],
    ],
  );
});
