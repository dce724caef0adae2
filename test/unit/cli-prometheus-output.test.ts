// Tests for src/cli/prometheus-output.ts: how `ferry sandbox query` turns Prometheus' query results into a
// table (one row per series, the labels that tell series apart, the value). Plain data, no Prometheus.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { printQueryResult, queryTable } from '../../src/cli/prometheus-output';

test('a vector shows only the labels that vary, __name__ first, then the value', () => {
  const table = queryTable({
    resultType: 'vector',
    result: [
      { metric: { job: 'ferry-agents', node: 'node-a', pod: 'ferry-agent-node-a', __name__: 'up' }, value: [1700000000, '1'] },
      { metric: { job: 'ferry-agents', node: 'node-b', pod: 'ferry-agent-node-b', __name__: 'up' }, value: [1700000000, '0'] },
    ],
  });
  assert.deepEqual(table, {
    header: ['node', 'pod', 'value'],
    rows: [
      ['node-a', 'ferry-agent-node-a', '1'],
      ['node-b', 'ferry-agent-node-b', '0'],
    ],
  });
});

test('a label missing from some series varies; a single series shows every label', () => {
  assert.deepEqual(
    queryTable({
      resultType: 'vector',
      result: [
        { metric: { __name__: 'a', x: '1' }, value: [0, '5'] },
        { metric: { __name__: 'b' }, value: [0, '6'] },
      ],
    }),
    {
      header: ['__name__', 'x', 'value'],
      rows: [
        ['a', '1', '5'],
        ['b', '', '6'],
      ],
    },
  );
  assert.deepEqual(queryTable({ resultType: 'vector', result: [{ metric: { reporter: 'source', __name__: 'm' }, value: [0, '3'] }] }), {
    header: ['__name__', 'reporter', 'value'],
    rows: [['m', 'source', '3']],
  });
});

test('scalars, strings and range vectors', () => {
  assert.deepEqual(queryTable({ resultType: 'scalar', result: [0, '42'] }), { header: ['value'], rows: [['42']] });
  assert.deepEqual(queryTable({ resultType: 'string', result: [0, 'hello'] }), { header: ['value'], rows: [['hello']] });
  assert.deepEqual(
    queryTable({
      resultType: 'matrix',
      result: [
        {
          metric: { node: 'node-a' },
          values: [
            [1, '1'],
            [3, '2'],
          ],
        },
        { metric: { node: 'node-b' }, values: [[1, '0']] },
      ],
    }),
    {
      header: ['node', 'value'],
      rows: [
        ['node-a', '1 2'],
        ['node-b', '0'],
      ],
    },
  );
});

test('an empty result says so', () => {
  const lines: string[] = [];
  printQueryResult((line) => lines.push(line), { resultType: 'vector', result: [] });
  assert.deepEqual(lines, ['(no series)']);
});
