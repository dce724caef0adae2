// Root integration: workload certificates with a 60-second lifetime renewed under steady traffic for
// three minutes, with a root rotation of the sandbox CA in the middle — and not one failed request.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { caIssuerFromFiles, readCaFiles } from '../fixtures/memory-ca';
import { TestSandbox, echoCommand, ferry, withSandbox } from './harness';

const PREFIX = 'ferryt-rot';
const MANIFEST = `
apiVersion: v1
kind: Namespace
metadata: { name: app, annotations: { ferry.dev/mesh: enabled } }
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: ferry-system }
spec: { mtls: { mode: STRICT } }
---
apiVersion: v1
kind: Pod
metadata: { name: server-a, namespace: app, labels: { app: echo-a } }
spec:
  nodeName: node-a
  serviceAccountName: server
  containers: [{ name: echo, command: ${echoCommand(7000)}, ports: [{ containerPort: 7000 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: server-b, namespace: app, labels: { app: echo-b } }
spec:
  nodeName: node-b
  serviceAccountName: server
  containers: [{ name: echo, command: ${echoCommand(7000)}, ports: [{ containerPort: 7000 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: client-a, namespace: app }
spec: { nodeName: node-a, serviceAccountName: client, containers: [{ name: c, command: ["sleep", "infinity"] }] }
---
apiVersion: v1
kind: Service
metadata: { name: echo-a, namespace: app }
spec: { selector: { app: echo-a }, ports: [{ port: 80, targetPort: 7000 }] }
---
apiVersion: v1
kind: Service
metadata: { name: echo-b, namespace: app }
spec: { selector: { app: echo-b }, ports: [{ port: 80, targetPort: 7000 }] }
`;

const TRAFFIC_SECONDS = 180;
const RATE = 10;
const ROTATE_AFTER_MS = 50_000;

describe('certificate renewal and root rotation under traffic', { timeout: 600_000 }, () => {
  const sandbox = new TestSandbox(PREFIX, MANIFEST, ['--agent-arg=--cert-ttl-seconds=60']);

  withSandbox(sandbox);

  test(`60 s certificates, ${TRAFFIC_SECONDS} s of traffic, a root rotation: zero failed requests`, async () => {
    // The roots the controller's CA Secret trusts, before and after.
    const roots = async (): Promise<string[]> => caIssuerFromFiles(readCaFiles(await sandbox.caFilesDir()), 'the CA Secret').roots;
    const rootsBefore = await roots();
    const steady = (service: string): Promise<Record<string, unknown>> =>
      sandbox.client('app/client-a', ['steady', service, '80', String(TRAFFIC_SECONDS), String(RATE)], (TRAFFIC_SECONDS + 90) * 1000);
    const cross = steady('echo-b.app');
    const local = steady('echo-a.app');
    await new Promise((r) => setTimeout(r, ROTATE_AFTER_MS));
    const rotation = await ferry(['sandbox', 'ca', 'rotate', '--prefix', PREFIX], 120_000);
    assert.equal(rotation.code, 0, `rotation failed:\n${rotation.stdout}\n${rotation.stderr}`);
    const [crossResult, localResult] = await Promise.all([cross, local]);
    for (const [name, result] of [
      ['cross-node', crossResult],
      ['same-node', localResult],
    ] as const) {
      assert.deepEqual({ failed: result.failed, errors: result.errors }, { failed: 0, errors: [] }, `${name}: ${JSON.stringify(result)}`);
      assert.ok((result.ok as number) >= TRAFFIC_SECONDS * RATE * 0.9, `${name}: only ${result.ok} requests made`);
    }
    const rootsAfter = await roots();
    assert.equal(rootsAfter.length, 1);
    assert.notDeepEqual(rootsAfter, rootsBefore, 'the root was replaced');
    // Half-life renewal of 60 s certificates: several renewals per identity on each node in 3 minutes.
    for (const node of ['node-a', 'node-b']) {
      const renewals = sandbox
        .agentLog(node)
        .split('\n')
        .filter((l) => l.includes('"certificate renewed"')).length;
      assert.ok(renewals >= 4, `${node}: ${renewals} renewals`);
    }
  });
});
