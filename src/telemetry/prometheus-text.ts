// A strict reader of Prometheus' text exposition format 0.0.4 (what prom-client serves on /metrics):
// samples with their labels and values, and each family's TYPE and HELP. Pure; no I/O.
//
// Grammar (https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format): lines end
// with \n; blank lines are ignored; `# HELP name text` and `# TYPE name type` are metadata, any other
// line starting with `#` is a comment; a sample is `name[{label="value",...}] value [timestamp]`,
// tokens separated by spaces or tabs. Label values escape `\\`, `\"` and `\n`; HELP text escapes
// `\\` and `\n`. Values are Go floats, including `NaN`, `+Inf` and `-Inf`. Anything else is an
// error naming the source and the line, never a sample silently dropped.
import { MetricsParseError } from './errors';

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

const METRIC_TYPES: readonly MetricType[] = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];

export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
  /** Milliseconds since the Unix epoch, when the line carries one. */
  timestampMs?: number;
  /** 1-based line in the exposition, for messages about this sample. */
  line: number;
}

export interface MetricFamily {
  name: string;
  type: MetricType;
  help?: string;
}

export interface Exposition {
  /** Where the text came from (a URL, a node's name), as messages name it. */
  source: string;
  /** By family name; only families that have a TYPE or HELP line. */
  families: Map<string, MetricFamily>;
  /** In the order of the text. */
  samples: MetricSample[];
}

const METRIC_NAME_START = /[a-zA-Z_:]/;
const METRIC_NAME_CHAR = /[a-zA-Z0-9_:]/;
const LABEL_NAME_START = /[a-zA-Z_]/;
const LABEL_NAME_CHAR = /[a-zA-Z0-9_]/;
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const INFINITY = /^[+-]?inf(?:inity)?$/i;
const NOT_A_NUMBER = /^nan$/i;
const TIMESTAMP = /^-?\d+$/;
/** Histogram and summary families expose their samples under these suffixes. */
const FAMILY_SUFFIXES = ['_bucket', '_sum', '_count'] as const;

/** Parses one exposition; throws MetricsParseError at the first malformed line. */
export function parsePrometheusText(text: string, source: string): Exposition {
  const families = new Map<string, MetricFamily>();
  const samples: MetricSample[] = [];
  /** Families that already had samples: a TYPE after them is an error, as in Prometheus' own parser. */
  const sampled = new Set<string>();
  /** name + labels → first line, to refuse a series given twice. */
  const seen = new Map<string, number>();
  const declared = { help: new Set<string>(), type: new Set<string>() };

  const lines = text.split('\n');
  // The text ends with a newline, which leaves one empty string after the split.
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  lines.forEach((content, index) => {
    const line = new LineReader(content, index + 1, source);
    line.skipBlanks();
    if (line.atEnd()) return;
    if (line.peek() === '#') {
      readComment(line);
      return;
    }
    const sample = readSample(line);
    const family = familyOf(sample.name, families);
    sampled.add(family);
    const key = seriesKey(sample);
    const first = seen.get(key);
    if (first !== undefined) line.fail(`series ${describeSeries(sample)} was already given on line ${first}`);
    seen.set(key, sample.line);
    samples.push(sample);
  });
  return { source, families, samples };

  function readComment(line: LineReader): void {
    line.expect('#');
    line.skipBlanks();
    const keyword = line.readWhile(/[A-Z]/);
    if ((keyword !== 'HELP' && keyword !== 'TYPE') || !(line.atEnd() || line.atBlank())) return; // a plain comment
    line.requireBlank(`a metric name after # ${keyword}`);
    const name = line.readMetricName(`# ${keyword}`);
    const family = families.get(name) ?? { name, type: 'untyped' };
    if (keyword === 'HELP') {
      if (declared.help.has(name)) line.fail(`second HELP line for ${name}`);
      declared.help.add(name);
      if (line.atEnd()) {
        family.help = '';
      } else {
        line.requireBlank('the help text');
        family.help = line.readHelpText();
      }
    } else {
      if (declared.type.has(name)) line.fail(`second TYPE line for ${name}`);
      declared.type.add(name);
      line.requireBlank(`a type after # TYPE ${name}`);
      const type = line.readWhile(/[a-z]/);
      line.skipBlanks();
      if (!METRIC_TYPES.includes(type as MetricType) || !line.atEnd()) {
        line.fail(`TYPE for ${name} must be one of ${METRIC_TYPES.join(', ')}, got ${JSON.stringify(line.rest(type))}`);
      }
      const names = type === 'histogram' || type === 'summary' ? [name, ...FAMILY_SUFFIXES.map((s) => name + s)] : [name];
      const early = names.find((n) => sampled.has(n));
      if (early !== undefined) line.fail(`TYPE line for ${name} after samples of ${early} (it must come first)`);
      family.type = type as MetricType;
    }
    families.set(name, family);
  }
}

function readSample(line: LineReader): MetricSample {
  const name = line.readMetricName('a sample');
  let spaced = line.skipBlanks();
  const labels: Record<string, string> = {};
  if (line.peek() === '{') {
    line.expect('{');
    line.skipBlanks();
    while (line.peek() !== '}') {
      const label = line.readLabelName();
      if (Object.hasOwn(labels, label)) line.fail(`label ${label} is given twice in ${name}`);
      line.skipBlanks();
      line.expect('=', `"=" after label name ${label}`);
      line.skipBlanks();
      labels[label] = line.readLabelValue(label);
      line.skipBlanks();
      if (line.peek() === ',') {
        line.expect(',');
        line.skipBlanks();
      } else if (line.peek() !== '}') {
        line.fail(`expected "," or "}" after the value of label ${label}, got ${line.describeNext()}`);
      }
    }
    line.expect('}');
    spaced = line.skipBlanks();
  }
  if (!spaced) line.fail(`expected a space before a value after ${name}, got ${line.describeNext()}`);
  const valueToken = line.readToken();
  const value = parseValue(valueToken);
  if (value === undefined) line.fail(`value of ${name} must be a number, NaN, +Inf or -Inf, got ${JSON.stringify(valueToken)}`);
  const sample: MetricSample = { name, labels, value, line: line.number };
  line.skipBlanks();
  if (!line.atEnd()) {
    const token = line.readToken();
    const timestampMs = Number(token);
    if (!TIMESTAMP.test(token) || !Number.isSafeInteger(timestampMs)) {
      line.fail(`timestamp of ${name} must be an integer number of milliseconds, got ${JSON.stringify(token)}`);
    }
    sample.timestampMs = timestampMs;
    line.skipBlanks();
    if (!line.atEnd()) line.fail(`unexpected ${JSON.stringify(line.rest())} after the timestamp of ${name}`);
  }
  return sample;
}

/** A Go float as Prometheus reads it (strconv.ParseFloat), without hex floats. */
function parseValue(token: string): number | undefined {
  if (DECIMAL.test(token)) return Number(token);
  if (INFINITY.test(token)) return token.startsWith('-') ? -Infinity : Infinity;
  if (NOT_A_NUMBER.test(token)) return NaN;
  return undefined;
}

/** The family a sample belongs to: `x_bucket`, `x_sum`, `x_count` belong to a histogram or summary `x`. */
function familyOf(name: string, families: Map<string, MetricFamily>): string {
  for (const suffix of FAMILY_SUFFIXES) {
    if (!name.endsWith(suffix)) continue;
    const base = families.get(name.slice(0, -suffix.length));
    if (base && (base.type === 'histogram' || (base.type === 'summary' && suffix !== '_bucket'))) return base.name;
  }
  return name;
}

function seriesKey(sample: MetricSample): string {
  return JSON.stringify([
    sample.name,
    ...Object.keys(sample.labels)
      .sort()
      .map((k) => [k, sample.labels[k]]),
  ]);
}

function describeSeries(sample: MetricSample): string {
  const labels = Object.entries(sample.labels)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(',');
  return labels === '' ? sample.name : `${sample.name}{${labels}}`;
}

/** A cursor over one line, whose failures name the source, the line and the column. */
class LineReader {
  private pos = 0;

  constructor(
    private readonly text: string,
    readonly number: number,
    private readonly source: string,
  ) {}

  fail(message: string): never {
    throw new MetricsParseError(this.source, this.number, this.pos + 1, message);
  }

  atEnd(): boolean {
    return this.pos >= this.text.length;
  }

  atBlank(): boolean {
    return this.peek() === ' ' || this.peek() === '\t';
  }

  peek(): string {
    return this.text[this.pos] ?? '';
  }

  describeNext(): string {
    if (this.atEnd()) return 'the end of the line';
    // The format's lines end with \n alone; a \r is most likely a file saved with CRLF line ends.
    if (this.peek() === '\r') return 'a carriage return (lines must end with \\n alone)';
    return JSON.stringify(this.peek());
  }

  /** The rest of the line, starting `back` characters earlier (what was just read). */
  rest(back = ''): string {
    return this.text.slice(this.pos - back.length);
  }

  /** Whether there were any. */
  skipBlanks(): boolean {
    const start = this.pos;
    while (this.atBlank()) this.pos += 1;
    return this.pos > start;
  }

  requireBlank(before: string): void {
    if (!this.atBlank()) this.fail(`expected a space before ${before}, got ${this.describeNext()}`);
    this.skipBlanks();
  }

  expect(char: string, what = JSON.stringify(char)): void {
    if (this.peek() !== char) this.fail(`expected ${what}, got ${this.describeNext()}`);
    this.pos += 1;
  }

  readWhile(pattern: RegExp): string {
    const start = this.pos;
    while (!this.atEnd() && pattern.test(this.peek())) this.pos += 1;
    return this.text.slice(start, this.pos);
  }

  /** Up to the next blank or the end of the line. */
  readToken(): string {
    const start = this.pos;
    while (!this.atEnd() && !this.atBlank()) this.pos += 1;
    return this.text.slice(start, this.pos);
  }

  readMetricName(context: string): string {
    if (!METRIC_NAME_START.test(this.peek())) this.fail(`expected a metric name in ${context}, got ${this.describeNext()}`);
    return this.readWhile(METRIC_NAME_CHAR);
  }

  readLabelName(): string {
    if (!LABEL_NAME_START.test(this.peek())) this.fail(`expected a label name or "}", got ${this.describeNext()}`);
    return this.readWhile(LABEL_NAME_CHAR);
  }

  readLabelValue(label: string): string {
    this.expect('"', `a quoted value for label ${label}`);
    let value = '';
    for (;;) {
      if (this.atEnd()) this.fail(`value of label ${label} has no closing quote`);
      const char = this.peek();
      this.pos += 1;
      if (char === '"') return value;
      if (char !== '\\') {
        value += char;
        continue;
      }
      const escaped = this.peek();
      if (escaped === '\\' || escaped === '"') value += escaped;
      else if (escaped === 'n') value += '\n';
      else this.fail(`unknown escape \\${escaped} in the value of label ${label} (only \\\\, \\" and \\n)`);
      this.pos += 1;
    }
  }

  /** The rest of the line, unescaping `\\` and `\n`. */
  readHelpText(): string {
    let help = '';
    while (!this.atEnd()) {
      const char = this.peek();
      this.pos += 1;
      if (char !== '\\') {
        help += char;
        continue;
      }
      const escaped = this.peek();
      if (escaped === '\\') help += '\\';
      else if (escaped === 'n') help += '\n';
      else this.fail(`unknown escape \\${escaped} in HELP text (only \\\\ and \\n)`);
      this.pos += 1;
    }
    return help;
  }
}
