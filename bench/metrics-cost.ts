// What Istio's TCP metrics cost the agent per connection, measured in process where the sandbox
// benchmark's noise cannot hide it: the CPU time of opening, counting bytes into and closing a
// connection's meters (two reporters, as on the same-node path), against the same loop without
// metrics, and the CPU time of one scrape at a given number of series. Bounded: a fixed number of
// connections, no network.
//   node dist/bench/metrics-cost.js [--connections N] [--json FILE]
import * as fs from 'node:fs';
import { Registry } from 'prom-client';
import { TrafficMetrics, type TrafficDescription } from '../src/telemetry';

const WORKLOADS = 50;
const ROUNDS = 5;

function description(i: number, reporter: 'source' | 'destination'): TrafficDescription {
  const source = i % WORKLOADS;
  const destination = (i * 7 + 3) % WORKLOADS;
  return {
    reporter,
    security: 'mutual_tls',
    source: {
      workload: { namespace: 'shop', name: `client-${source}`, labels: { app: `client-${source}` } },
      principal: `spiffe://cluster.local/ns/shop/sa/client-${source}`,
    },
    destination: {
      workload: { namespace: 'shop', name: `server-${destination}`, labels: { app: `server-${destination}`, version: 'v1' } },
      principal: `spiffe://cluster.local/ns/shop/sa/server-${destination}`,
      service: { namespace: 'shop', name: `server-${destination}`, hostname: `server-${destination}.shop.svc.cluster.local` },
    },
  };
}

/** CPU microseconds (user + system) of `work`. */
function cpuMicros(work: () => void): number {
  const before = process.cpuUsage();
  work();
  const used = process.cpuUsage(before);
  return used.user + used.system;
}

function connections(n: number, metrics: TrafficMetrics | undefined): void {
  for (let i = 0; i < n; i++) {
    // What the proxy does either way: describe both ends, keep live counts.
    const src = description(i, 'source');
    const dst = description(i, 'destination');
    const counts = { sent: 0, received: 0 };
    const meters = metrics ? [metrics.start(src, counts), metrics.start(dst, counts)] : [];
    counts.sent += 512;
    counts.received += 2048;
    for (const meter of meters) meter.close('-');
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const n = Number(args[args.indexOf('--connections') + 1] ?? 0) || 200_000;
  const jsonFile = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
  const registry = new Registry();
  const metrics = new TrafficMetrics(registry);
  connections(10_000, metrics); // warm up both paths
  connections(10_000, undefined);
  const withRuns: number[] = [];
  const withoutRuns: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    withoutRuns.push(cpuMicros(() => connections(n, undefined)));
    withRuns.push(cpuMicros(() => connections(n, metrics)));
  }
  const best = (runs: number[]): number => Math.min(...runs);
  const perK = (micros: number): number => micros / n; // µs per connection = ms per 1000 connections
  const scrapeStart = process.cpuUsage();
  const text = await registry.metrics();
  const scrape = process.cpuUsage(scrapeStart);
  const series = text.split('\n').filter((l) => l.startsWith('istio_tcp_')).length;
  const result = {
    connections: n,
    rounds: ROUNDS,
    workloads: WORKLOADS,
    msPer1kConnectionsWithMetrics: perK(best(withRuns)),
    msPer1kConnectionsWithoutMetrics: perK(best(withoutRuns)),
    metricsMsPer1kConnections: perK(best(withRuns)) - perK(best(withoutRuns)),
    scrape: { series, bytes: text.length, cpuMs: (scrape.user + scrape.system) / 1000 },
  };
  process.stdout.write(`${n} connections (two reporters each, over ${WORKLOADS} source→destination workload pairs), best of ${ROUNDS}:\n`);
  process.stdout.write(
    `  agent CPU per 1000 connections, meters only: with metrics ${result.msPer1kConnectionsWithMetrics.toFixed(2)} ms, ` +
      `without ${result.msPer1kConnectionsWithoutMetrics.toFixed(2)} ms: the metrics cost ${result.metricsMsPer1kConnections.toFixed(2)} ms\n`,
  );
  process.stdout.write(
    `  one scrape: ${series} istio_tcp_* series, ${(text.length / 1024).toFixed(0)} KiB, ${result.scrape.cpuMs.toFixed(1)} ms CPU\n`,
  );
  if (jsonFile) fs.writeFileSync(jsonFile, `${JSON.stringify(result, null, 2)}\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
