// Tests for src/telemetry's Prometheus text parser and the service graph built from several agents'
// expositions: escaping, malformed input (errors with line numbers), the merge rules including the
// one that counts each connection once, and the DOT rendering. Pure computation.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Registry, Counter, Gauge } from 'prom-client';
import {
  ISTIO_TCP_LABELS,
  MetricsContentError,
  MetricsParseError,
  buildServiceGraph,
  humanBytes,
  parsePrometheusText,
  serviceGraphDot,
  serviceGraphRows,
  type Exposition,
  type IstioTcpLabels,
} from '../../src/telemetry';

function parseError(text: string): MetricsParseError {
  try {
    parsePrometheusText(text, 'agent-a');
  } catch (err) {
    assert.ok(err instanceof MetricsParseError, `expected MetricsParseError, got ${String(err)}`);
    return err;
  }
  assert.fail(`no error for ${JSON.stringify(text)}`);
}

describe('parsePrometheusText', () => {
  test('reads HELP, TYPE, comments, samples with labels and timestamps', () => {
    const text = [
      '# HELP requests_total Requests\\nserved, with a \\\\ backslash',
      '# TYPE requests_total counter',
      '# just a comment',
      '',
      'requests_total{method="get",code="200"} 1027 1395066363000',
      'requests_total{method="post",code="400",} 3',
      '  \tup 1',
      '# TYPE latency histogram',
      'latency_bucket{le="0.5"} 2',
      'latency_bucket{le="+Inf"} 3',
      'latency_sum 1.5e-1',
      'latency_count 3',
      '',
    ].join('\n');
    const exposition = parsePrometheusText(text, 'agent-a');
    assert.equal(exposition.source, 'agent-a');
    assert.deepEqual(exposition.families.get('requests_total'), {
      name: 'requests_total',
      type: 'counter',
      help: 'Requests\nserved, with a \\ backslash',
    });
    assert.equal(exposition.families.get('latency')?.type, 'histogram');
    assert.deepEqual(
      exposition.samples.map((s) => [s.name, s.labels, s.value, s.timestampMs, s.line]),
      [
        ['requests_total', { method: 'get', code: '200' }, 1027, 1395066363000, 5],
        ['requests_total', { method: 'post', code: '400' }, 3, undefined, 6],
        ['up', {}, 1, undefined, 7],
        ['latency_bucket', { le: '0.5' }, 2, undefined, 9],
        ['latency_bucket', { le: '+Inf' }, 3, undefined, 10],
        ['latency_sum', {}, 0.15, undefined, 11],
        ['latency_count', {}, 3, undefined, 12],
      ],
    );
  });

  test('unescapes \\\\, \\" and \\n in label values, and keeps other characters as they are', () => {
    const text = 'm{path="C:\\\\dir\\\\",quote="say \\"hi\\"",lines="a\\nb",odd="{},= #ünï"} 1\n';
    assert.deepEqual(parsePrometheusText(text, 'x').samples[0].labels, {
      path: 'C:\\dir\\',
      quote: 'say "hi"',
      lines: 'a\nb',
      odd: '{},= #ünï',
    });
  });

  test('reads NaN, +Inf, -Inf, signs and exponents', () => {
    const text = ['a NaN', 'b +Inf', 'c -Inf', 'd -1.5', 'e 1e3', 'f .5', 'g +3'].join('\n');
    const values = parsePrometheusText(text, 'x').samples.map((s) => s.value);
    assert.ok(Number.isNaN(values[0]));
    assert.deepEqual(values.slice(1), [Infinity, -Infinity, -1.5, 1000, 0.5, 3]);
  });

  test('reads what prom-client writes, escaped label values included', async () => {
    const registry = new Registry();
    const counter = new Counter({ name: 'c_total', help: 'a "counter"\nwith \\ in help', labelNames: ['v'], registers: [registry] });
    const gauge = new Gauge({ name: 'g', help: 'a gauge', registers: [registry] });
    const awkward = 'quote " backslash \\ newline \n end';
    counter.inc({ v: awkward }, 2);
    gauge.set(-0.25);
    const exposition = parsePrometheusText(await registry.metrics(), 'prom-client');
    assert.equal(exposition.families.get('c_total')?.help, 'a "counter"\nwith \\ in help');
    assert.deepEqual(
      exposition.samples.map((s) => [s.name, s.labels, s.value]),
      [
        ['c_total', { v: awkward }, 2],
        ['g', {}, -0.25],
      ],
    );
  });

  test('malformed lines fail with the source, line and column and what was expected', () => {
    const cases: Array<[string, number, RegExp]> = [
      ['ok 1\nm{a="1" 2', 2, /expected "," or "}" after the value of label a/],
      ['m{a="1} 2', 1, /value of label a has no closing quote/],
      ['m{a="\\t"} 2', 1, /unknown escape \\t in the value of label a/],
      ['m{a=1} 2', 1, /a quoted value for label a/],
      ['m{1a="x"} 2', 1, /expected a label name or "}"/],
      ['m{a="1",a="2"} 2', 1, /label a is given twice in m/],
      ['m', 1, /expected a space before a value after m/],
      ['m one', 1, /value of m must be a number, NaN, \+Inf or -Inf, got "one"/],
      ['m 1 12.5', 1, /timestamp of m must be an integer/],
      ['m 1 2 3', 1, /unexpected "3" after the timestamp of m/],
      ['9m 1', 1, /expected a metric name in a sample/],
      ['m 1\r', 1, /value of m must be a number/],
      ['# TYPE m countr\nm 1', 1, /TYPE for m must be one of counter, gauge, histogram, summary, untyped, got "countr"/],
      ['# TYPE m counter\n# TYPE m gauge', 2, /second TYPE line for m/],
      ['# HELP m a\n# HELP m b', 2, /second HELP line for m/],
      ['# HELP m a\\q', 1, /unknown escape \\q in HELP text/],
      ['m 1\n# TYPE m counter', 2, /TYPE line for m after samples of m/],
      ['h_bucket{le="1"} 1\n# TYPE h histogram', 2, /TYPE line for h after samples of h_bucket/],
      ['# TYPE h histogram\nh_bucket{le="1"} 1\n# TYPE h histogram', 3, /second TYPE line for h/],
      ['m{a="x"} 1\n\nm{a="x"} 2', 3, /series m\{a="x"\} was already given on line 1/],
      ['# TYPE\nm 1', 1, /expected a space before a metric name after # TYPE/],
    ];
    for (const [text, line, message] of cases) {
      const err = parseError(text);
      assert.equal(err.code, 'FERRY_ERR_METRICS_PARSE');
      assert.equal(err.line, line, `line of the error for ${JSON.stringify(text)}: ${err.message}`);
      assert.match(err.message, new RegExp(`^agent-a: line ${line}, column \\d+: `), err.message);
      assert.match(err.message, message, `for ${JSON.stringify(text)}`);
    }
  });

  test('a column points at the offending character', () => {
    assert.equal(parseError('m{a="1" 2').column, 9);
  });

  test('an empty exposition has no samples; comments other than HELP and TYPE are ignored', () => {
    assert.deepEqual(parsePrometheusText('', 'x').samples, []);
    assert.deepEqual(parsePrometheusText('# EOF\n#HELPER not metadata\n', 'x').samples, []);
  });
});

// ---------------------------------------------------------------------------------------------------------------

const DOMAIN = 'svc.cluster.local';

interface Party {
  workload?: string;
  namespace?: string;
}

function labels(reporter: 'source' | 'destination', src: Party, dst: Party & { service?: string }, flag = '-'): IstioTcpLabels {
  const u = (v: string | undefined): string => v ?? 'unknown';
  const base = Object.fromEntries(ISTIO_TCP_LABELS.map((l) => [l, 'unknown'])) as IstioTcpLabels;
  return {
    ...base,
    reporter,
    source_workload: u(src.workload),
    source_workload_namespace: u(src.namespace),
    destination_service: dst.service ? `${dst.service}.${DOMAIN}` : 'unknown',
    destination_workload: u(dst.workload),
    destination_workload_namespace: u(dst.namespace),
    request_protocol: 'tcp',
    response_flags: flag,
  };
}

function series(name: string, l: Record<string, string>, value: number): string {
  const quote = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  return `${name}{${Object.entries(l)
    .map(([k, v]) => `${k}="${quote(v)}"`)
    .join(',')}} ${value}`;
}

/** One connection's four counters as one reporter saw it. */
function connection(l: IstioTcpLabels, { opened = 1, request = 0, response = 0 } = {}): string[] {
  const lines = [
    series('istio_tcp_connections_opened_total', l, opened),
    series('istio_tcp_received_bytes_total', l, request),
    series('istio_tcp_sent_bytes_total', l, response),
  ];
  return lines;
}

function closed(l: IstioTcpLabels, count: number): string {
  return series('istio_tcp_connections_closed_total', l, count);
}

function enrolled(workload: string, namespace: string, pods = 1): string {
  return `ferry_workload_enrolled{namespace="${namespace}",workload="${workload}"} ${pods}`;
}

function agent(name: string, lines: string[]): Exposition {
  return parsePrometheusText(`${lines.join('\n')}\n`, name);
}

const client: Party = { workload: 'client', namespace: 'shop' };
const web: Party = { workload: 'web', namespace: 'shop' };
const db: Party = { workload: 'db', namespace: 'data' };
const outsider: Party = { workload: 'batch', namespace: 'jobs' };

describe('buildServiceGraph', () => {
  test("counts each connection once: the source's report for enrolled sources, the destination's otherwise", () => {
    // client (enrolled on node-a) → web Service (pod on node-b); both agents report the same 3 connections.
    // batch (not enrolled) → web: only node-b sees it, as destination.
    // web (enrolled) → db (not enrolled, no Service): only node-b sees it, as source.
    const nodeA = agent('node-a', [
      enrolled('client', 'shop'),
      ...connection(labels('source', client, { ...web, service: 'web.shop' }), { opened: 3, request: 300, response: 3000 }),
      closed(labels('source', client, { ...web, service: 'web.shop' }), 3),
    ]);
    const nodeB = agent('node-b', [
      enrolled('web', 'shop', 2),
      ...connection(labels('destination', client, { ...web, service: 'web.shop' }), { opened: 3, request: 300, response: 3000 }),
      ...connection(labels('destination', outsider, { ...web, service: 'web.shop' }), { opened: 2, request: 10, response: 20 }),
      ...connection(labels('destination', {}, { ...web, service: 'web.shop' }), { opened: 1 }),
      ...connection(labels('source', web, db), { opened: 5, request: 1024, response: 2048 }),
    ]);
    const graph = buildServiceGraph([nodeA, nodeB]);
    assert.deepEqual(graph.enrolledWorkloads, ['client.shop', 'web.shop']);
    assert.deepEqual(graph.sources, ['node-a', 'node-b']);
    assert.deepEqual(graph.nodes, [
      { id: 'service:web.shop', kind: 'service', name: 'web.shop' },
      { id: 'unknown', kind: 'unknown', name: 'unknown' },
      { id: 'workload:batch.jobs', kind: 'workload', name: 'batch.jobs' },
      { id: 'workload:client.shop', kind: 'workload', name: 'client.shop' },
      { id: 'workload:db.data', kind: 'workload', name: 'db.data' },
      { id: 'workload:web.shop', kind: 'workload', name: 'web.shop' },
    ]);
    const edges = graph.edges.map((e) => [e.source, e.destination, e.connections, e.requestBytes, e.responseBytes, e.bytes]);
    assert.deepEqual(edges, [
      ['unknown', 'service:web.shop', 1, 0, 0, 0],
      ['workload:batch.jobs', 'service:web.shop', 2, 10, 20, 30],
      ['workload:client.shop', 'service:web.shop', 3, 300, 3000, 3300],
      ['workload:web.shop', 'workload:db.data', 5, 1024, 2048, 3072],
    ]);
  });

  test('the same agent reporting both sides (same-node path) is counted once too', () => {
    const l = (reporter: 'source' | 'destination'): IstioTcpLabels => labels(reporter, client, { ...web, service: 'web.shop' });
    const graph = buildServiceGraph([
      agent('node-a', [
        enrolled('client', 'shop'),
        enrolled('web', 'shop'),
        ...connection(l('source'), { opened: 4, request: 1, response: 2 }),
        ...connection(l('destination'), { opened: 4, request: 1, response: 2 }),
      ]),
    ]);
    assert.deepEqual(
      graph.edges.map((e) => [e.source, e.destination, e.connections, e.bytes]),
      [['workload:client.shop', 'service:web.shop', 4, 3]],
    );
  });

  test('a workload whose gauge is 0 counts as not enrolled; series from several agents add up', () => {
    const l = labels('destination', client, { ...web, service: 'web.shop' });
    const graph = buildServiceGraph([
      agent('node-a', [enrolled('client', 'shop', 0)]),
      agent('node-b', [...connection(l, { opened: 2 })]),
      agent('node-c', [...connection(l, { opened: 5 })]),
    ]);
    assert.deepEqual(graph.enrolledWorkloads, []);
    assert.deepEqual(
      graph.edges.map((e) => e.connections),
      [7],
    );
  });

  test('failures are closed connections with a response flag other than -, by flag', () => {
    const ok = labels('source', client, { ...web, service: 'web.shop' });
    const deny = labels('source', client, { ...web, service: 'web.shop' }, 'DENY');
    const connect = labels('source', client, { ...web, service: 'web.shop' }, 'CONNECT');
    const graph = buildServiceGraph([
      agent('node-a', [enrolled('client', 'shop'), ...connection(ok, { opened: 10 }), closed(ok, 6), closed(deny, 3), closed(connect, 1)]),
    ]);
    const [edge] = graph.edges;
    assert.equal(edge.failures, 4);
    assert.deepEqual(edge.failuresByFlag, { CONNECT: 1, DENY: 3 });
  });

  test('destinations: a Service host shortened to name.namespace, other hosts kept, else the workload, else unknown', () => {
    const graph = buildServiceGraph([
      agent('node-a', [
        ...connection({ ...labels('source', client, {}), destination_service: 'cart.shop.svc.example.org' }),
        ...connection({ ...labels('source', client, {}), destination_service: 'api.example.com' }),
        ...connection(labels('source', client, db)),
        ...connection(labels('source', client, {})),
        // Empty label values mean absent, which is Istio's unknown.
        ...connection({ ...labels('source', client, {}), destination_workload: '' }),
      ]),
    ]);
    assert.deepEqual(
      graph.edges.map((e) => [e.destination, e.connections]),
      [
        ['service:api.example.com', 1],
        ['service:cart.shop', 1],
        ['unknown', 2],
        ['workload:db.data', 1],
      ],
    );
  });

  test('a workload and a Service of the same name are different nodes', () => {
    const graph = buildServiceGraph([
      agent('node-a', [...connection(labels('source', client, { ...web, service: 'web.shop' })), ...connection(labels('source', web, db))]),
    ]);
    assert.deepEqual(
      graph.nodes.map((n) => n.id).filter((id) => id.endsWith('web.shop')),
      ['service:web.shop', 'workload:web.shop'],
    );
  });

  test('other metrics are ignored; broken Istio series are errors naming the source and line', () => {
    const empty = buildServiceGraph([agent('node-a', ['process_cpu_seconds_total 3', 'up 1'])]);
    assert.deepEqual([empty.nodes, empty.edges], [[], []]);
    const bad: Array<[string[], RegExp]> = [
      [
        ['istio_tcp_connections_opened_total{source_workload="x"} 1'],
        /^node-a: line 1: istio_tcp_connections_opened_total reporter must be "source" or "destination", got "\(none\)"/,
      ],
      [
        ['up 1', series('istio_tcp_connections_opened_total', { ...labels('source', client, {}), reporter: 'proxy' }, 1)],
        /line 2: .*got "proxy"/,
      ],
      [[series('istio_tcp_connections_closed_total', { reporter: 'source' }, 1)], /closed_total has no response_flags label/],
      [[series('istio_tcp_sent_bytes_total', labels('source', client, {}), -1)], /sent_bytes_total is a counter and cannot be -1/],
      [['istio_tcp_sent_bytes_total{reporter="source"} NaN'], /cannot be NaN/],
      [['ferry_workload_enrolled{namespace="shop"} 1'], /ferry_workload_enrolled needs both a workload and a namespace label/],
    ];
    for (const [lines, message] of bad) {
      assert.throws(
        () => buildServiceGraph([agent('node-a', lines)]),
        (err: unknown) => {
          assert.ok(err instanceof MetricsContentError, String(err));
          assert.equal(err.code, 'FERRY_ERR_METRICS_CONTENT');
          assert.match(err.message, message);
          return true;
        },
      );
    }
  });
});

describe('rendering', () => {
  const graph = buildServiceGraph([
    agent('node-a', [
      enrolled('client', 'shop'),
      ...connection(labels('source', client, { ...web, service: 'web.shop' }), { opened: 12, request: 1024, response: 2560 }),
      closed(labels('source', client, { ...web, service: 'web.shop' }, 'DENY'), 2),
      ...connection(labels('source', client, { workload: 'we"ird\\name', namespace: 'shop' }), { opened: 1, request: 5 }),
      ...connection(labels('destination', {}, db), { opened: 1 }),
    ]),
  ]);

  test('humanBytes uses binary units with one decimal', () => {
    assert.deepEqual([0, 512, 1023, 1024, 3482, 1048576, 5 * 1024 ** 4].map(humanBytes), [
      '0 B',
      '512 B',
      '1023 B',
      '1.0 KiB',
      '3.4 KiB',
      '1.0 MiB',
      '5.0 TiB',
    ]);
  });

  test('rows: one per edge, bytes humanised, failures by flag, workload destinations marked', () => {
    assert.deepEqual(serviceGraphRows(graph), [
      ['unknown', 'db.data (workload)', '1', '0 B', '0 B', '0 B', '0'],
      ['client.shop', 'web.shop', '12', '3.5 KiB', '1.0 KiB', '2.5 KiB', '2 (DENY 2)'],
      ['client.shop', 'we"ird\\name.shop (workload)', '1', '5 B', '5 B', '0 B', '0'],
    ]);
  });

  test('DOT: a digraph with every node and edge, escaped labels, failing edges red', () => {
    const dot = serviceGraphDot(graph);
    assert.match(dot, /^digraph ferry \{\n/);
    assert.match(dot, /\n\}\n$/);
    assert.ok(dot.includes('"service:web.shop" [label="web.shop", shape=ellipse];'), dot);
    assert.ok(dot.includes('"workload:client.shop" [label="client.shop", shape=box];'), dot);
    assert.ok(dot.includes('"unknown" [label="unknown", shape=box, style=dashed];'), dot);
    assert.ok(dot.includes('"workload:we\\"ird\\\\name.shop" [label="we\\"ird\\\\name.shop", shape=box];'), dot);
    assert.ok(
      dot.includes(
        '"workload:client.shop" -> "service:web.shop" [label="12 connections\\n3.5 KiB (1.0 KiB out, 2.5 KiB back)\\n2 failed: DENY 2", color="red", fontcolor="red"];',
      ),
      dot,
    );
    assert.ok(dot.includes('"unknown" -> "workload:db.data" [label="1 connection\\n0 B (0 B out, 0 B back)"];'), dot);
    assert.equal(dot.split('\n').filter((l) => l.includes(' -> ')).length, graph.edges.length);
  });
});
