// Error registry of src/telemetry: reading metrics other agents expose (the service graph's input).
import { FerryError } from '../errors';

export const TELEMETRY_ERROR_CODES = {
  FERRY_ERR_METRICS_PARSE: 'a Prometheus text exposition is malformed; the message names its source, line and column and what was expected',
  FERRY_ERR_METRICS_CONTENT:
    'a well-formed exposition has a metric the service graph cannot use: a required label missing or out of its ' +
    'contract (reporter, response_flags), or a count that is negative, NaN or infinite',
} as const;

/** One malformed line of an exposition. */
export class MetricsParseError extends FerryError<'FERRY_ERR_METRICS_PARSE'> {
  constructor(
    readonly source: string,
    readonly line: number,
    readonly column: number,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super('FERRY_ERR_METRICS_PARSE', `${source}: line ${line}, column ${column}: ${detail}`, options);
  }
}

/** A sample the service graph reads that breaks the metrics' contract (src/telemetry/istio-labels.ts). */
export class MetricsContentError extends FerryError<'FERRY_ERR_METRICS_CONTENT'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_ERR_METRICS_CONTENT', message, options);
  }
}
