// pickDeliveryPort: a delivery's source port never repeats the 4-tuple of a plaintext connection
// the same client holds to the same app through the agent (their SYNs would meet in one namespace).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { DELIVERY_PORT_RANGE, pickDeliveryPort } from '../../src/proxy/delivery-port';

/** A random source that returns these fractions in turn. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length];
}

test('a port the client holds is skipped; the next draw is taken', () => {
  const size = DELIVERY_PORT_RANGE.last - DELIVERY_PORT_RANGE.first + 1;
  const held = DELIVERY_PORT_RANGE.first + 100;
  const random = sequence(100 / size, 200 / size);
  assert.equal(
    pickDeliveryPort((port) => port === held, random),
    DELIVERY_PORT_RANGE.first + 200,
  );
});

test('every draw stays in the ephemeral range, ends included', () => {
  for (const r of [0, 0.5, 0.999_999_999]) {
    const port = pickDeliveryPort(
      () => false,
      () => r,
    );
    assert.ok(port >= DELIVERY_PORT_RANGE.first && port <= DELIVERY_PORT_RANGE.last, String(port));
  }
  assert.equal(
    pickDeliveryPort(
      () => false,
      () => 0,
    ),
    DELIVERY_PORT_RANGE.first,
  );
  assert.equal(
    pickDeliveryPort(
      () => false,
      () => 0.999_999_999,
    ),
    DELIVERY_PORT_RANGE.last,
  );
});

test('when every draw is taken the kernel chooses (0)', () => {
  assert.equal(
    pickDeliveryPort(() => true, Math.random, 5),
    0,
  );
});
