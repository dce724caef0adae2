// validateAuthorizationPolicy / validatePeerAuthentication on objects as the API server returns them: JSON text
// with the metadata it sets (uid, resourceVersion, generation, creationTimestamp, managedFields) and a status.
// The objects are written here in the API's JSON form; no API server runs in this test.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  formatPolicyPath,
  validateAuthorizationPolicy,
  validatePeerAuthentication,
  type AuthorizationPolicyDocument,
  type PeerAuthenticationDocument,
  type PolicyProblem,
} from '../../src/policy';

const lines = (problems: PolicyProblem[]): string[] => problems.map((p) => `${formatPolicyPath(p.path)}: ${p.message}`);

/** Metadata the way `kubectl get -o json` shows it after a client-side `kubectl apply`. */
function servedMetadata(name: string, lastApplied: unknown): Record<string, unknown> {
  return {
    annotations: { 'kubectl.kubernetes.io/last-applied-configuration': `${JSON.stringify(lastApplied)}\n` },
    creationTimestamp: '2025-03-04T05:06:07Z',
    generation: 3,
    managedFields: [
      {
        apiVersion: 'security.istio.io/v1',
        fieldsType: 'FieldsV1',
        fieldsV1: {
          'f:metadata': { 'f:annotations': { '.': {}, 'f:kubectl.kubernetes.io/last-applied-configuration': {} } },
          'f:spec': {},
        },
        manager: 'kubectl-client-side-apply',
        operation: 'Update',
        time: '2025-03-04T05:06:07Z',
      },
    ],
    name,
    namespace: 'shop',
    resourceVersion: '48213',
    uid: '0b7e0c55-3b0e-4f3e-9d55-8f1f4c6c2a11',
  };
}

const status = {
  conditions: [{ type: 'Reconciled', status: 'True', lastTransitionTime: '2025-03-04T05:06:08Z', reason: 'Accepted', message: '' }],
  observedGeneration: '3',
};

const authorizationSpec = {
  selector: { matchLabels: { app: 'web' } },
  action: 'ALLOW',
  rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/client'] } }], to: [{ operation: { ports: ['8080', 9090] } }] }],
};

/** What the API server sends: serialised JSON, parsed by the client. */
function served(apiVersion: string, kind: string, name: string, spec: unknown, extra: Record<string, unknown> = {}): unknown {
  const applied = { apiVersion, kind, metadata: { name, namespace: 'shop' }, spec };
  return JSON.parse(JSON.stringify({ apiVersion, kind, metadata: { ...servedMetadata(name, applied), ...extra }, spec, status }));
}

describe('objects read from the API server', () => {
  for (const apiVersion of ['security.istio.io/v1', 'security.istio.io/v1beta1']) {
    test(`an AuthorizationPolicy (${apiVersion}) with server-set metadata and a status`, () => {
      for (const origin of ['manifest', 'api-server'] as const) {
        const result = validateAuthorizationPolicy(served(apiVersion, 'AuthorizationPolicy', 'web-allow', authorizationSpec), { origin });
        assert.deepEqual(lines(result.problems), [], origin);
        assert.deepEqual(result.value, {
          namespace: 'shop',
          name: 'web-allow',
          action: 'ALLOW',
          dryRun: false,
          selector: { app: 'web' },
          rules: [{ from: [{ principals: ['cluster.local/ns/shop/sa/client'] }], to: [{ ports: [8080, 9090] }] }],
        });
      }
    });

    test(`a PeerAuthentication (${apiVersion}) with server-set metadata, a status and port keys as JSON strings`, () => {
      const spec = {
        selector: { matchLabels: { app: 'db' } },
        mtls: { mode: 'STRICT' },
        portLevelMtls: { '5432': { mode: 'PERMISSIVE' } },
      };
      for (const origin of ['manifest', 'api-server'] as const) {
        const result = validatePeerAuthentication(served(apiVersion, 'PeerAuthentication', 'db-strict', spec), { origin });
        assert.deepEqual(lines(result.problems), [], origin);
        assert.deepEqual(result.value, {
          namespace: 'shop',
          name: 'db-strict',
          selector: { app: 'db' },
          mode: 'STRICT',
          portLevelMtls: [{ port: 5432, mode: 'PERMISSIVE' }],
        });
      }
    });
  }

  test('every ObjectMeta field the API server sets is accepted, deletion and ownership included', () => {
    const doc = served(
      'security.istio.io/v1',
      'AuthorizationPolicy',
      'going',
      {},
      {
        deletionTimestamp: '2025-03-04T06:00:00Z',
        deletionGracePeriodSeconds: 0,
        finalizers: ['example.com/cleanup'],
        ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: '1', controller: true }],
        generateName: 'going-',
        selfLink: '/apis/security.istio.io/v1/namespaces/shop/authorizationpolicies/going',
        labels: { team: 'a' },
      },
    );
    assert.deepEqual(lines(validateAuthorizationPolicy(doc).problems), []);
  });

  test('a metadata field no Kubernetes version has: a typo in a file, ignored in an object from the API server', () => {
    const doc = served('security.istio.io/v1', 'PeerAuthentication', 'p', { mtls: { mode: 'STRICT' } }, { futureField: { x: 1 } });
    assert.deepEqual(lines(validatePeerAuthentication(doc).problems), [
      'metadata.futureField: unknown field (Ferry does not support it); expected one of: name, namespace, labels, annotations, generateName, uid, resourceVersion, generation, creationTimestamp, deletionTimestamp, deletionGracePeriodSeconds, ownerReferences, finalizers, managedFields, selfLink',
    ]);
    const fromServer = validatePeerAuthentication(doc, { origin: 'api-server' });
    assert.deepEqual(lines(fromServer.problems), []);
    assert.equal(fromServer.value?.mode, 'STRICT');
  });

  test('from the API server, everything but unknown metadata is checked as strictly as in a file', () => {
    const doc = served(
      'security.istio.io/v1',
      'AuthorizationPolicy',
      'p',
      { action: 'CUSTOM', rules: [{ from: [{ source: { principal: ['x'] } }] }] },
      { futureField: 1, name: 'Not_A_Name', labels: { app: 7 } },
    );
    (doc as { status: unknown }).status = 'ready';
    assert.deepEqual(lines(validateAuthorizationPolicy(doc, { origin: 'api-server' }).problems), [
      `metadata.name: "Not_A_Name" is not valid; expected a policy name: a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)`,
      "metadata.labels.app: is an integer (7); expected a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
      'spec.rules[0].from[0].source.principal: unknown field (Ferry does not support it); expected one of: principals, notPrincipals, requestPrincipals, notRequestPrincipals, namespaces, notNamespaces, serviceAccounts, notServiceAccounts, ipBlocks, notIpBlocks, remoteIpBlocks, notRemoteIpBlocks',
      'status: is a string ("ready"); expected a status mapping (written by the control plane)',
      'spec.action: CUSTOM is not supported (Ferry has no external authorization providers); expected ALLOW, DENY or AUDIT',
      'spec.rules[0].from[0].source: is empty; expected at least one of: principals, notPrincipals, requestPrincipals, notRequestPrincipals, namespaces, notNamespaces, serviceAccounts, notServiceAccounts, ipBlocks, notIpBlocks, remoteIpBlocks, notRemoteIpBlocks',
    ]);
  });

  test('the dry-run annotation reads the same from the API server', () => {
    const doc = served('security.istio.io/v1', 'AuthorizationPolicy', 'p', { action: 'DENY', rules: [{}] });
    (doc as { metadata: { annotations: Record<string, string> } }).metadata.annotations['istio.io/dry-run'] = 'true';
    const result = validateAuthorizationPolicy(doc, { origin: 'api-server' });
    assert.deepEqual(lines(result.problems), []);
    assert.equal(result.value?.dryRun, true);
  });
});

test("the documents' TypeScript types are the schemas' (a wrong literal does not compile)", () => {
  const policy: AuthorizationPolicyDocument = {
    apiVersion: 'security.istio.io/v1beta1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'deny-ssh', namespace: 'shop' },
    spec: { action: 'DENY', rules: [{ to: [{ operation: { ports: ['22', 2222] } }] }] },
  };
  const peer: PeerAuthenticationDocument = {
    apiVersion: 'security.istio.io/v1',
    kind: 'PeerAuthentication',
    metadata: { name: 'strict' },
    spec: { mtls: { mode: 'STRICT' } },
  };
  // @ts-expect-error: kind is the literal AuthorizationPolicy
  const wrongKind: AuthorizationPolicyDocument = { ...policy, kind: 'PeerAuthentication' };
  // @ts-expect-error: mode is one of Istio's four
  const wrongMode: PeerAuthenticationDocument = { ...peer, spec: { mtls: { mode: 'strict' } } };
  assert.deepEqual(validateAuthorizationPolicy(policy).problems, []);
  assert.deepEqual(validatePeerAuthentication(peer).problems, []);
  assert.equal(validateAuthorizationPolicy(wrongKind).problems.length, 1);
  assert.equal(validatePeerAuthentication(wrongMode).problems.length, 1);
});
