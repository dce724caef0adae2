// Istio's TCP counters (labels, live bytes, flags), Ferry's health gauges and run-time log levels.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import {
  HealthMetrics,
  ISTIO_TCP_LABELS,
  ISTIO_TCP_METRICS,
  TrafficMetrics,
  createLogging,
  istioTcpLabels,
  type HealthSource,
  type TrafficDescription,
} from '../../src/telemetry';
import { changeLogging, loggingDump } from '../../src/app/admin';

const CLIENT = { namespace: 'shop', name: 'client-7d9f', labels: { app: 'client', version: 'v2' }, workloadName: 'client' };
const CART = { namespace: 'shop', name: 'cart-0', labels: { 'app.kubernetes.io/name': 'cart' } };
const HBONE: TrafficDescription = {
  reporter: 'source',
  security: 'mutual_tls',
  source: { workload: CLIENT, principal: 'spiffe://cluster.local/ns/shop/sa/client' },
  destination: {
    workload: CART,
    principal: 'spiffe://cluster.local/ns/shop/sa/cart',
    service: { namespace: 'shop', name: 'cart', hostname: 'cart.shop.svc.cluster.local' },
  },
};

async function values(registry: Registry, name: string): Promise<Array<{ labels: Record<string, unknown>; value: number }>> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  assert.ok(metric, `${name} is not registered`);
  return metric.values.map((v) => ({ labels: v.labels, value: v.value }));
}

test('labels: Istio names and canonical values, unknown where nothing is known, every label always present', () => {
  const labels = istioTcpLabels(HBONE);
  assert.deepEqual(Object.keys(labels).sort(), [...ISTIO_TCP_LABELS].sort());
  assert.equal(labels.source_workload, 'client');
  assert.equal(labels.source_app, 'client');
  assert.equal(labels.source_version, 'v2');
  assert.equal(labels.destination_workload, 'cart-0');
  assert.equal(labels.destination_app, 'cart');
  assert.equal(labels.destination_version, 'latest');
  assert.equal(labels.destination_service, 'cart.shop.svc.cluster.local');
  assert.equal(labels.destination_service_name, 'cart');
  assert.equal(labels.request_protocol, 'tcp');
  assert.equal(labels.response_flags, '-');

  const bare = istioTcpLabels({ reporter: 'destination', security: 'unknown', source: {}, destination: {} }, 'DENY');
  for (const name of ISTIO_TCP_LABELS) {
    if (!['reporter', 'request_protocol', 'response_flags', 'connection_security_policy'].includes(name))
      assert.equal(bare[name], 'unknown', name);
  }
  assert.equal(bare.response_flags, 'DENY');
  assert.equal(istioTcpLabels({ ...HBONE, source: { namespace: 'other', principal: 'spiffe://x' } }).source_workload_namespace, 'other');
});

test('traffic: opened at start, bytes counted up to each scrape, closed with the final flag', async () => {
  const registry = new Registry();
  const metrics = new TrafficMetrics(registry);
  const counts = { sent: 0, received: 0 };
  const meter = metrics.start(HBONE, counts);
  assert.deepEqual(
    (await values(registry, ISTIO_TCP_METRICS.opened)).map((v) => v.value),
    [1],
  );
  assert.deepEqual(await values(registry, ISTIO_TCP_METRICS.closed), []);

  counts.sent = 100;
  counts.received = 7;
  // "received" is the request (what the source sent), "sent" the response.
  assert.deepEqual(
    (await values(registry, ISTIO_TCP_METRICS.received)).map((v) => v.value),
    [100],
  );
  assert.deepEqual(
    (await values(registry, ISTIO_TCP_METRICS.sent)).map((v) => v.value),
    [7],
  );
  counts.sent = 250;
  meter.close('-');
  meter.close('CONNECT'); // once only
  assert.deepEqual(
    (await values(registry, ISTIO_TCP_METRICS.received)).map((v) => v.value),
    [250],
  );
  assert.deepEqual(
    (await values(registry, ISTIO_TCP_METRICS.closed)).map((v) => [v.labels.response_flags, v.value]),
    [['-', 1]],
  );
  assert.equal(metrics.openCount, 0);

  // A second connection with the same parties adds to the same series; a denied one closes as DENY.
  metrics.start(HBONE, { sent: 5, received: 0 }).close('-');
  metrics.start(HBONE, { sent: 0, received: 0 }).close('DENY');
  assert.deepEqual(
    (await values(registry, ISTIO_TCP_METRICS.opened)).map((v) => v.value),
    [3],
  );
  assert.deepEqual(
    (await values(registry, ISTIO_TCP_METRICS.received)).map((v) => v.value),
    [255],
  );
  assert.deepEqual((await values(registry, ISTIO_TCP_METRICS.closed)).map((v) => [v.labels.response_flags, v.value]).sort(), [
    ['-', 2],
    ['DENY', 1],
  ]);
  const text = await registry.metrics();
  assert.match(text, /^# TYPE istio_tcp_connections_opened_total counter$/m);
  assert.match(text, /istio_tcp_connections_opened_total\{reporter="source",source_workload="client",.*\} 3$/m);
});

test('health: gauges read their source at scrape time; counters count; process defaults present', async () => {
  const registry = new Registry();
  let ready = false;
  const source: HealthSource = {
    enrolledWorkloads: () => [
      { namespace: 'shop', workload: 'client', pods: 2 },
      { namespace: 'shop', workload: 'cart', pods: 1 },
    ],
    bpfMapEntries: () => [{ name: 'ferry_pods', entries: 3 }],
    bpfMapCapacities: () => [{ name: 'ferry_pods', maxEntries: 4096 }],
    bpfLinks: () => [
      { program: 'connect4', attached: true },
      { program: 'sk_lookup', attached: true },
      { program: 'sk_lookup', attached: false },
    ],
    certificates: () => [{ principal: 'cluster.local/ns/shop/sa/client', notAfter: new Date('2030-01-01T00:00:00Z') }],
    tunnels: () => ({ outboundConnections: 2, outboundStreams: 5, inboundConnections: 1, inboundStreams: 3, pendingHandshakes: 0 }),
    openConnections: () => ({ outbound: 4, inbound: 2 }),
    ready: () => ready,
    stateRevision: () => 12,
    bpfVerdicts: () => [{ labels: { program: 'connect', verdict: 'captured' }, count: 41 }],
    refusedConnections: () => [{ labels: { direction: 'inbound', reason: 'self_call' }, count: 7 }],
    limitsExceeded: () => [{ labels: { limit: 'connections_per_pod' }, count: 2 }],
    refusedPods: () => 1,
    suppressedLogLines: () => [{ labels: { component: 'access' }, count: 9 }],
    hboneSessionsClosed: () => [{ labels: { side: 'inbound', reason: 'ping_flood' }, count: 3 }],
    hboneDialsFailed: () => [{ labels: { reason: 'peer_backoff' }, count: 4 }],
  };
  const health = new HealthMetrics(registry);
  health.observe(source);
  health.enrolmentFailed('listeners');
  health.policyDecision('deny', 'enforced');
  health.policyDecision('allow', 'enforced');
  health.policyDecision('allow', 'enforced');
  const text = await registry.metrics();
  for (const line of [
    'ferry_enrolled_pods 3',
    'ferry_workload_enrolled{namespace="shop",workload="client"} 2',
    'ferry_bpf_map_entries{map="ferry_pods"} 3',
    'ferry_bpf_map_max_entries{map="ferry_pods"} 4096',
    'ferry_bpf_links_attached{program="sk_lookup"} 1',
    'ferry_certificate_expiry_timestamp_seconds{principal="cluster.local/ns/shop/sa/client"} 1893456000',
    'ferry_hbone_connections{direction="outbound"} 2',
    'ferry_hbone_streams{direction="inbound"} 3',
    'ferry_open_connections{direction="outbound"} 4',
    'ferry_ready 0',
    'ferry_state_revision 12',
    'ferry_enrolment_failures_total{reason="listeners"} 1',
    'ferry_enrolment_failures_total{reason="certificate"} 0',
    'ferry_enrolment_failures_total{reason="lock"} 0',
    'ferry_policy_decisions_total{decision="allow",mode="enforced"} 2',
    'ferry_policy_decisions_total{decision="deny",mode="enforced"} 1',
    'ferry_bpf_verdicts_total{program="connect",verdict="captured"} 41',
    'ferry_connections_refused_total{direction="inbound",reason="self_call"} 7',
    'ferry_limits_exceeded_total{limit="connections_per_pod"} 2',
    'ferry_pods_refused 1',
    'ferry_log_lines_suppressed_total{component="access"} 9',
    'ferry_hbone_sessions_closed_total{side="inbound",reason="ping_flood"} 3',
    'ferry_hbone_dials_failed_total{reason="peer_backoff"} 4',
  ])
    assert.ok(text.split('\n').includes(line), `missing: ${line}`);
  assert.match(text, /^ferry_event_loop_lag_seconds\{quantile="0.99"\} [0-9.e-]+$/m);
  assert.match(text, /^process_cpu_seconds_total /m);
  assert.match(text, /^nodejs_heap_size_used_bytes /m);
  ready = true;
  assert.ok((await registry.metrics()).split('\n').includes('ferry_ready 1'));
});

test('log levels change at run time, for every logger or one component, including loggers made before', () => {
  const lines: Array<Record<string, unknown>> = [];
  const { log, levels } = createLogging('info', {
    write: (line: string) => {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  const access = log.child({ component: 'access' });
  const conn = access.child({ conn: 'o1' });
  const proxy = log.child({ component: 'proxy' });
  proxy.debug('hidden');
  assert.equal(lines.length, 0);

  assert.equal(changeLogging(levels, new URLSearchParams('level=debug')), undefined);
  proxy.debug('shown');
  conn.debug('shown too');
  assert.deepEqual(
    lines.map((l) => l.msg),
    ['shown', 'shown too'],
  );

  assert.equal(changeLogging(levels, new URLSearchParams('level=warn&component=access')), undefined);
  conn.info('access hidden');
  access.child({ conn: 'o2' }).info('new child hidden too');
  proxy.debug('proxy still debug');
  assert.deepEqual(lines.map((l) => l.msg).slice(2), ['proxy still debug']);
  assert.deepEqual(loggingDump(levels), { level: 'debug', components: { access: 'warn' } });

  assert.equal(changeLogging(levels, new URLSearchParams('level=reset&component=access')), undefined);
  conn.info('access back');
  assert.equal(lines.at(-1)?.msg, 'access back');

  assert.match(
    changeLogging(levels, new URLSearchParams('level=loud')) ?? '',
    /level "loud" is not one of fatal, error, warn, info, debug, trace, silent/,
  );
  assert.match(changeLogging(levels, new URLSearchParams('')) ?? '', /missing level/);
  assert.match(changeLogging(levels, new URLSearchParams('level=reset')) ?? '', /needs a component/);
  assert.match(changeLogging(levels, new URLSearchParams('level=info&component=Bad Name')) ?? '', /not a component name/);
  assert.equal(levels.level, 'debug', 'a refused change changed the level');
});
