// The HBONE wire helpers: CONNECT targets (RFC 9113 §8.5), RFC 7239 `forwarded`, W3C trace context
// and baggage, address matching and option validation. No fakes: pure functions.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  forwardedFor,
  hasIp,
  newTraceparent,
  numericOptions,
  parseAuthority,
  sourceBaggage,
  validTraceparent,
} from '../../src/proxy/hbone-protocol';
import { ProxyOptionsError } from '../../src/proxy';

test('parseAuthority takes ip:port and [v6]:port only', () => {
  assert.deepEqual(parseAuthority('10.0.0.1:8080'), { family: 4, ip: '10.0.0.1', port: 8080 });
  assert.deepEqual(parseAuthority('[2001:db8::1]:443'), { family: 6, ip: '2001:db8::1', port: 443 });
  assert.deepEqual(parseAuthority('[::ffff:10.1.2.3]:8'), { family: 4, ip: '10.1.2.3', port: 8 });
  for (const bad of [
    undefined,
    '',
    'backend:80',
    '10.0.0.1',
    '10.0.0.1:0',
    '10.0.0.1:65536',
    '999.1.1.1:80',
    '2001:db8::1:80',
    '[nope]:80',
  ]) {
    assert.equal(parseAuthority(bad), undefined, `accepted ${String(bad)}`);
  }
});

test('forwarded, traceparent and baggage have their specified forms', () => {
  assert.equal(forwardedFor('10.244.0.5'), 'for=10.244.0.5');
  assert.equal(forwardedFor('2001:db8::1'), 'for="[2001:db8::1]"');
  const traceparent = newTraceparent();
  assert.match(traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  assert.notEqual(newTraceparent(), traceparent);
  assert.equal(validTraceparent(traceparent), traceparent);
  assert.equal(validTraceparent(`00-${'0'.repeat(32)}-${'1'.repeat(16)}-01`), undefined);
  assert.equal(validTraceparent(`ff-${'1'.repeat(32)}-${'1'.repeat(16)}-01`), undefined);
  assert.equal(validTraceparent(['a', 'b']), undefined);
  assert.equal(sourceBaggage({ namespace: 'shop', name: 'cart-1' }), 'k8s.namespace.name=shop,k8s.pod.name=cart-1');
});

test('hasIp compares IPv6 as addresses', () => {
  assert.ok(hasIp(['10.0.0.1'], '10.0.0.1'));
  assert.ok(hasIp(['2001:db8::1'], '2001:DB8:0::1'));
  assert.ok(!hasIp(['2001:db8::1'], '2001:db8::2'));
  assert.ok(!hasIp(['10.0.0.1'], '10.0.0.2'));
});

test('numericOptions names the field and the range it expected', () => {
  const defaults = { a: 1, b: 2 };
  const ranges = { a: [1, 10] as [number, number], b: [0, 5] as [number, number] };
  assert.deepEqual(numericOptions('x', defaults, { b: 5 }, ranges), { a: 1, b: 5 });
  assert.throws(
    () => numericOptions('hbone.pool', defaults, { a: 0 }, ranges),
    (err: unknown) =>
      err instanceof ProxyOptionsError &&
      err.code === 'FERRY_ERR_PROXY_OPTIONS' &&
      err.message === 'hbone.pool.a: expected an integer in [1, 10], got 0',
  );
  assert.throws(() => numericOptions('x', defaults, { b: 1.5 }, ranges), ProxyOptionsError);
});
