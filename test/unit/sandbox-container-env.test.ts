// Tests for src/sandbox/container-env.ts: the environment the sandbox's kubelet gives a container — values with
// $(VAR) expansion, the downward API's fields, and a clear refusal of sources it has no store for.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { containerEnvironment } from '../../src/sandbox/container-env';
import { SandboxStateError } from '../../src/sandbox/runtime-errors';

const POD: V1Pod = {
  metadata: {
    name: 'web-7d9f-abcde',
    namespace: 'shop',
    uid: '0f0e-11',
    labels: { app: 'web', 'pod-template-hash': '7d9f' },
    annotations: { 'ferry.dev/mesh': 'enabled' },
  },
  spec: { nodeName: 'node-b', serviceAccountName: 'web', containers: [] },
};
const FACTS = { podIps: ['10.244.1.12', 'fd10:244:1::12'], hostIp: '10.250.0.11' };

function container(env: V1Container['env']): V1Container {
  return { name: 'app', env };
}

describe('a container environment', () => {
  test('values in order, $(VAR) expanded from the variables before, unknown references kept', () => {
    const env = containerEnvironment(
      POD,
      container([{ name: 'A', value: 'one' }, { name: 'B', value: '$(A)-two-$(C)' }, { name: 'C', value: 'three' }, { name: 'EMPTY' }]),
      FACTS,
    );
    assert.deepEqual(env, { A: 'one', B: 'one-two-$(C)', C: 'three', EMPTY: '' });
  });

  test('the downward API: names, node, service account, addresses, labels and annotations', () => {
    const fields = [
      'metadata.name',
      'metadata.namespace',
      'metadata.uid',
      'spec.nodeName',
      'spec.serviceAccountName',
      'status.podIP',
      'status.podIPs',
      'status.hostIP',
      "metadata.labels['app']",
      "metadata.annotations['ferry.dev/mesh']",
      "metadata.labels['missing']",
    ];
    const env = containerEnvironment(
      POD,
      container(fields.map((fieldPath, i) => ({ name: `F${i}`, valueFrom: { fieldRef: { fieldPath } } }))),
      FACTS,
    );
    assert.deepEqual(Object.values(env), [
      'web-7d9f-abcde',
      'shop',
      '0f0e-11',
      'node-b',
      'web',
      '10.244.1.12',
      '10.244.1.12,fd10:244:1::12',
      '10.250.0.11',
      'web',
      'enabled',
      '',
    ]);
    // A Pod without a service account runs as "default", as the API server's admission sets it.
    const bare = containerEnvironment(
      { metadata: { name: 'p' }, spec: { containers: [] } },
      container([{ name: 'SA', valueFrom: { fieldRef: { fieldPath: 'spec.serviceAccountName' } } }]),
      FACTS,
    );
    assert.deepEqual(bare, { SA: 'default' });
  });

  test('a Secret, a ConfigMap or an unknown field path is refused with the pod, container and variable', () => {
    const refused = (env: V1Container['env'], message: RegExp): void =>
      assert.throws(
        () => containerEnvironment(POD, container(env), FACTS),
        (err: unknown) => err instanceof SandboxStateError && message.test(err.message),
      );
    refused(
      [
        { name: 'OK', value: 'x' },
        { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } },
      ],
      /^pod shop\/web-7d9f-abcde container app env\[1\] \(TOKEN\): valueFrom\.secretKeyRef is not available in the sandbox/,
    );
    refused([{ name: 'CFG', valueFrom: { configMapKeyRef: { name: 'c', key: 'k' } } }], /env\[0\] \(CFG\): valueFrom\.configMapKeyRef/);
    refused([{ name: 'X', valueFrom: {} }], /valueFrom\.\(empty\) is not available/);
    refused(
      [{ name: 'NODE_UID', valueFrom: { fieldRef: { fieldPath: 'spec.nodeUID' } } }],
      /env\[0\] \(NODE_UID\): valueFrom\.fieldRef\.fieldPath "spec\.nodeUID" is not a field the downward API gives/,
    );
  });
});
