// How `ferry sandbox query` and `ferry sandbox status` print the sandbox's Prometheus: a query result as a
// table of series (the labels that tell them apart, then the value) and a one-row status table.
import type { PrometheusQueryData, PrometheusSample, PrometheusStatus } from '../sandbox';
import { printTable } from './table';

export interface QueryTable {
  header: string[];
  rows: string[][];
}

const sample = ([, value]: PrometheusSample): string => value;

/**
 * One row per series. Columns are the labels whose values differ between series (a label a series
 * lacks counts as empty), in first-seen order with `__name__` first; a single series shows all its
 * labels. The last column is the value (a range vector's samples, oldest first, space-separated).
 */
export function queryTable(data: PrometheusQueryData): QueryTable {
  let series: Array<{ metric: Record<string, string>; value: string }>;
  switch (data.resultType) {
    case 'vector':
      series = data.result.map((r) => ({ metric: r.metric, value: sample(r.value) }));
      break;
    case 'matrix':
      series = data.result.map((r) => ({ metric: r.metric, value: r.values.map(sample).join(' ') }));
      break;
    default:
      return { header: ['value'], rows: [[sample(data.result)]] };
  }
  const names: string[] = [];
  for (const { metric } of series) for (const name of Object.keys(metric)) if (!names.includes(name)) names.push(name);
  names.sort((a, b) => Number(b === '__name__') - Number(a === '__name__'));
  const shown = series.length === 1 ? names : names.filter((name) => new Set(series.map(({ metric }) => metric[name] ?? '')).size > 1);
  return {
    header: [...shown, 'value'],
    rows: series.map(({ metric, value }) => [...shown.map((name) => metric[name] ?? ''), value]),
  };
}

export function printQueryResult(say: (line: string) => void, data: PrometheusQueryData): void {
  const table = queryTable(data);
  if (table.rows.length === 0) {
    say('(no series)');
    return;
  }
  printTable(say, table.header, table.rows);
}

export function printPrometheusStatus(say: (line: string) => void, status: PrometheusStatus): void {
  const targets = status.targets ? `${status.targets.up}/${status.targets.total} up` : '-';
  printTable(
    say,
    ['PROMETHEUS', 'NETNS', 'PROCESS', 'READY', 'TARGETS'],
    [[status.address, status.netns, status.running ? `pid ${status.pid}` : 'not running', status.ready ? 'yes' : 'no', targets]],
  );
  say(`query it: ferry sandbox query 'PROMQL' · config: ${status.configFile} · log: ${status.logFile}`);
}
