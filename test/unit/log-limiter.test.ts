// LogLimiter: at most one line per key per interval, every line a real record, and what was left
// out counted — the access log's defence against a pod that refuses itself thousands of times a second.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { LogLimiter, type LimitedLine } from '../../src/telemetry';
import { sleep } from './helpers';

test('a burst writes the first record at once and the latest, with the count, when the window closes', async () => {
  const lines: Array<{ key: string; line: LimitedLine<number> }> = [];
  const limiter = new LogLimiter<number>(50, (key, line) => lines.push({ key, line }));
  for (let i = 1; i <= 1000; i++) limiter.record('pod-a', i);
  assert.deepEqual(lines, [{ key: 'pod-a', line: { record: 1, suppressed: 0 } }]);
  await sleep(80);
  assert.deepEqual(
    lines.map((l) => l.line),
    [
      { record: 1, suppressed: 0 },
      { record: 1000, suppressed: 998 },
    ],
  );
  assert.equal(limiter.suppressed, 998);
  // The flushed line opened a new window; it closes empty, after which a record is written at once again.
  await sleep(80);
  limiter.record('pod-a', 1001);
  assert.deepEqual(lines.at(-1)?.line, { record: 1001, suppressed: 0 });
  limiter.close();
});

test('keys are independent: one noisy pod does not silence another', () => {
  const lines: string[] = [];
  const limiter = new LogLimiter<string>(10_000, (key, { record }) => lines.push(`${key}:${record}`));
  for (let i = 0; i < 100; i++) limiter.record('noisy', `n${i}`);
  limiter.record('quiet', 'q0');
  assert.deepEqual(lines, ['noisy:n0', 'quiet:q0']);
  limiter.close();
  assert.deepEqual(lines, ['noisy:n0', 'quiet:q0', 'noisy:n99'], 'close() writes what is pending, with its count');
  assert.equal(limiter.suppressed, 98);
});

test('over a sustained flood a key writes no more than one line per interval', async () => {
  const times: number[] = [];
  const limiter = new LogLimiter<number>(40, () => times.push(Date.now()));
  const end = Date.now() + 300;
  let i = 0;
  while (Date.now() < end) {
    limiter.record('k', i++);
    await sleep(1);
  }
  limiter.close();
  // One line to open, then at most one per closed window; the close() flush may add the last.
  assert.ok(times.length <= Math.ceil(300 / 40) + 2, `${times.length} lines for ${i} records`);
  assert.ok(times.length >= 3, `the flood was reported as it went on (${times.length} lines)`);
});
