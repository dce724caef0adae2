// Tests for the per-agent token buckets of the CA service (src/controller ca-rate-limit.ts), on a clock the test moves.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { TokenBuckets } from '../../src/controller/ca-rate-limit';

test('a bucket spends its burst, then refills at its rate and never past the burst', () => {
  let now = 0;
  const buckets = new TokenBuckets({ burst: 3, perSecond: 2, now: () => now });
  assert.deepEqual([buckets.take('a'), buckets.take('a'), buckets.take('a')], [0, 0, 0]);
  assert.equal(buckets.take('a'), 500, 'the next token comes in 1/2 s');
  assert.equal(buckets.take('b'), 0, 'buckets are per key');
  now += 499;
  assert.ok(buckets.take('a') > 0);
  now += 1;
  assert.equal(buckets.take('a'), 0);
  now += 60_000;
  assert.deepEqual([buckets.take('a'), buckets.take('a'), buckets.take('a')], [0, 0, 0]);
  assert.ok(buckets.take('a') > 0, 'a long rest fills the bucket to the burst, no further');
});

test('the number of buckets is bounded, the least recently used going first', () => {
  let now = 0;
  const buckets = new TokenBuckets({ burst: 1, perSecond: 0.001, maxKeys: 2, now: () => now });
  buckets.take('a');
  buckets.take('b');
  now += 1;
  assert.ok(buckets.take('a') > 0, 'a is empty and now the most recent');
  buckets.take('c'); // evicts b
  assert.equal(buckets.size, 2);
  assert.ok(buckets.take('a') > 0, 'a was kept: still empty');
  assert.throws(() => new TokenBuckets({ burst: 0, perSecond: 1 }), /burst must be at least 1/);
});
