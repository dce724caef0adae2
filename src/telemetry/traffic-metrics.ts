// Istio's four TCP counters, kept as plain per-series totals and handed to prom-client at scrape
// time: a connection costs one label set and a few map updates, never a prom-client label hash per
// chunk. Bytes of open connections are counted up to the scrape, as ztunnel does, so a long
// connection shows in rate() while it runs, not all at once when it ends.
import { Counter, type Registry } from 'prom-client';
import {
  ISTIO_TCP_LABELS,
  ISTIO_TCP_METRICS,
  istioTcpLabels,
  type IstioTcpLabels,
  type ResponseFlag,
  type TrafficDescription,
} from './istio-labels';

/** Live byte counts of one connection; the relay adds to them as bytes pass. */
export interface ByteCounts {
  /** Bytes the source sent to the destination. */
  sent: number;
  /** Bytes the destination sent back. */
  received: number;
}

interface Series {
  labels: IstioTcpLabels;
  value: number;
}

class SeriesTable {
  private readonly series = new Map<string, Series>();

  add(labels: IstioTcpLabels, key: string, n: number): void {
    const entry = this.series.get(key);
    if (entry) entry.value += n;
    else this.series.set(key, { labels, value: n });
  }

  /** Replace the counter's values with the table's (called in the counter's collect()). */
  publish(counter: Counter<string>): void {
    counter.reset();
    for (const { labels, value } of this.series.values()) counter.inc(labels, value);
  }

  values(): Series[] {
    return [...this.series.values()];
  }
}

function keyOf(labels: IstioTcpLabels): string {
  let key = '';
  for (const name of ISTIO_TCP_LABELS) key += `${labels[name]}\u0000`;
  return key;
}

/** One reporter's view of one connection: opened when made, closed exactly once. */
export interface TrafficMeter {
  close(flag: ResponseFlag): void;
}

class Meter implements TrafficMeter {
  flushedSent = 0;
  flushedReceived = 0;
  closed = false;

  constructor(
    readonly owner: TrafficMetrics,
    readonly labels: IstioTcpLabels,
    readonly key: string,
    readonly description: TrafficDescription,
    readonly counts: ByteCounts,
  ) {}

  close(flag: ResponseFlag): void {
    if (this.closed) return;
    this.closed = true;
    this.owner.closeMeter(this, flag);
  }
}

export class TrafficMetrics {
  private readonly opened = new SeriesTable();
  private readonly closed = new SeriesTable();
  private readonly sent = new SeriesTable();
  private readonly received = new SeriesTable();
  private readonly open = new Set<Meter>();

  constructor(registry: Registry) {
    const labelNames = [...ISTIO_TCP_LABELS];
    const counter = (name: string, help: string, table: SeriesTable, flush: boolean): void => {
      const self = this;
      new Counter({
        name,
        help,
        labelNames,
        registers: [registry],
        collect(this: Counter<string>) {
          if (flush) self.flushOpen();
          table.publish(this);
        },
      });
    };
    counter(ISTIO_TCP_METRICS.opened, 'The total number of TCP connections opened', this.opened, false);
    counter(ISTIO_TCP_METRICS.closed, 'The total number of TCP connections closed', this.closed, false);
    counter(ISTIO_TCP_METRICS.sent, 'The size of total bytes sent during response in case of a TCP connection', this.sent, true);
    counter(ISTIO_TCP_METRICS.received, 'The size of total bytes received during request in case of a TCP connection', this.received, true);
  }

  /** Count a connection as opened; its bytes are read from `counts` until it is closed. */
  start(description: TrafficDescription, counts: ByteCounts): TrafficMeter {
    const labels = istioTcpLabels(description);
    const key = keyOf(labels);
    this.opened.add(labels, key, 1);
    const meter = new Meter(this, labels, key, description, counts);
    this.open.add(meter);
    return meter;
  }

  /** Open connections now; for tests and inspection. */
  get openCount(): number {
    return this.open.size;
  }

  /** @internal: Meter.close */
  closeMeter(meter: Meter, flag: ResponseFlag): void {
    this.flush(meter);
    this.open.delete(meter);
    const labels = flag === meter.labels.response_flags ? meter.labels : istioTcpLabels(meter.description, flag);
    this.closed.add(labels, labels === meter.labels ? meter.key : keyOf(labels), 1);
  }

  private flushOpen(): void {
    for (const meter of this.open) this.flush(meter);
  }

  private flush(meter: Meter): void {
    const sent = meter.counts.sent - meter.flushedSent;
    const received = meter.counts.received - meter.flushedReceived;
    // Istio's names are the destination's view: "received" is the request (what the source sent),
    // "sent" the response.
    if (sent > 0) this.received.add(meter.labels, meter.key, sent);
    if (received > 0) this.sent.add(meter.labels, meter.key, received);
    meter.flushedSent = meter.counts.sent;
    meter.flushedReceived = meter.counts.received;
  }
}
