// Tests for src/identity spiffe.ts: SPIFFE ID and principal formatting and strict parsing (pure functions).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  DEFAULT_TRUST_DOMAIN,
  IdentityError,
  parsePrincipal,
  parseSpiffeUri,
  principalOf,
  spiffeUri,
  type SpiffeId,
} from '../../src/identity';

const id: SpiffeId = { trustDomain: DEFAULT_TRUST_DOMAIN, namespace: 'shop', serviceAccount: 'cart-v2' };

test('spiffeUri and principalOf format the Kubernetes workload forms', () => {
  assert.equal(spiffeUri(id), 'spiffe://cluster.local/ns/shop/sa/cart-v2');
  assert.equal(principalOf(id), 'cluster.local/ns/shop/sa/cart-v2');
  assert.deepEqual(parseSpiffeUri(spiffeUri(id)), id);
  assert.deepEqual(parsePrincipal(principalOf(id)), id);
});

test('parseSpiffeUri accepts the SPIFFE character sets', () => {
  for (const [uri, expected] of [
    ['spiffe://td/ns/a/sa/b', { trustDomain: 'td', namespace: 'a', serviceAccount: 'b' }],
    [
      'spiffe://my_td-1.example.org/ns/Kube.NS_1/sa/svc-Acc.2',
      { trustDomain: 'my_td-1.example.org', namespace: 'Kube.NS_1', serviceAccount: 'svc-Acc.2' },
    ],
  ] as const) {
    assert.deepEqual(parseSpiffeUri(uri), expected, uri);
  }
});

test('parseSpiffeUri refuses malformed IDs with a message naming the problem', () => {
  const table: Array<[string, RegExp]> = [
    ['http://cluster.local/ns/a/sa/b', /scheme is not "spiffe:\/\/"/],
    ['SPIFFE://cluster.local/ns/a/sa/b', /scheme is not "spiffe:\/\/"/],
    ['spiffe:/cluster.local/ns/a/sa/b', /scheme/],
    ['spiffe:///ns/a/sa/b', /trust domain is empty/],
    ['spiffe://Cluster.local/ns/a/sa/b', /may only contain lowercase letters/],
    ['spiffe://cluster.local:8443/ns/a/sa/b', /must not contain a port/],
    ['spiffe://user@cluster.local/ns/a/sa/b', /must not contain userinfo/],
    ['spiffe://cluster.local', /path is empty/],
    ['spiffe://cluster.local/', /path is empty/],
    ['spiffe://cluster.local/ns/a/sa/b/', /empty segment/],
    ['spiffe://cluster.local/ns//sa/b', /empty segment/],
    ['spiffe://cluster.local//ns/a/sa/b', /empty segment/],
    ['spiffe://cluster.local/ns/a/sa/b?x=1', /query/],
    ['spiffe://cluster.local/ns/a/sa/b#frag', /fragment/],
    ['spiffe://cluster.local/ns/a%2Fb/sa/b', /percent-encoding/],
    ['spiffe://cluster.local/ns/a/sa/b/extra', /is not \/ns\/<namespace>\/sa\/<service-account>/],
    ['spiffe://cluster.local/sa/b/ns/a', /is not \/ns\/<namespace>\/sa\/<service-account>/],
    ['spiffe://cluster.local/workload', /is not \/ns/],
    ['spiffe://cluster.local/ns/../sa/b', /namespace must not be "\.\."/],
    ['spiffe://cluster.local/ns/a/sa/.', /serviceAccount must not be "\."/],
    ['spiffe://cluster.local/ns/a b/sa/c', /namespace "a b" may only contain/],
    [`spiffe://${'a'.repeat(256)}/ns/a/sa/b`, /longer than 255/],
    [`spiffe://td/ns/a/sa/${'b'.repeat(2100)}`, /longer than 2048/],
  ];
  for (const [uri, message] of table) {
    assert.throws(
      () => parseSpiffeUri(uri),
      (err: unknown) => {
        assert.ok(err instanceof IdentityError, `${uri}: ${String(err)}`);
        assert.equal(err.code, 'FERRY_ERR_IDENTITY_SPIFFE_ID');
        assert.match(err.message, message, uri);
        return true;
      },
    );
  }
});

test('spiffeUri refuses fields that would not make a valid ID', () => {
  assert.throws(() => spiffeUri({ ...id, namespace: '' }), /namespace is empty/);
  assert.throws(() => spiffeUri({ ...id, serviceAccount: 'a/b' }), /serviceAccount "a\/b" may only contain/);
  assert.throws(() => spiffeUri({ ...id, trustDomain: 'Example.com' }), /lowercase/);
});

test('parsePrincipal is as strict as parseSpiffeUri and refuses a scheme', () => {
  assert.throws(() => parsePrincipal('spiffe://cluster.local/ns/a/sa/b'), /a principal has no scheme/);
  assert.throws(() => parsePrincipal('cluster.local/ns/a'), /is not \/ns\/<namespace>\/sa/);
  assert.throws(() => parsePrincipal('cluster.local'), /path is empty/);
  assert.throws(() => parsePrincipal('*/ns/a/sa/b'), /may only contain lowercase/);
});
