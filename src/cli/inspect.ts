// `ferry inspect …` and `ferry sandbox inspect …`: one agent's admin API (config dump, connections,
// log levels) as tables or JSON, and the service graph merged from several agents' metrics.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { type Command, Option } from 'commander';
import { Agent, request } from 'undici';
import type { CertificateDump, ConfigDump, ConnectionDump, ConnectionsDump, LoggingDump, WorkloadDump } from '../app/admin-types';
import { PORTS, sandboxPrefixFrom } from '../config';
import { DEFAULT_ROOT_NAMESPACE, type AuthorizationPolicy, type PeerAuthentication } from '../policy';
import { netnsHttpGet, readPlan, type SandboxPlan } from '../sandbox';
import type { Service } from '../state';
import {
  GRAPH_TABLE_HEADER,
  buildServiceGraph,
  humanBytes,
  parsePrometheusText,
  serviceGraphDot,
  serviceGraphRows,
  type Exposition,
  type ServiceGraph,
} from '../telemetry';
import { CliAnswerError, CliArgumentError, CliUnreachableError } from './errors';
import { printTable } from './table';

/** What `inspect` shows of one agent's config dump or connections. */
export const INSPECT_KINDS = ['workloads', 'services', 'policies', 'certs', 'connections'] as const;
export type InspectKind = (typeof INSPECT_KINDS)[number];

const DEFAULT_ADMIN_URL = `http://127.0.0.1:${PORTS.admin}`;
const DEFAULT_METRICS_URL = `http://127.0.0.1:${PORTS.metrics}/metrics`;
const DEFAULT_GRAPH_FILE = 'ferry-graph.dot';
/** Bounds one GET or POST to an agent: the admin API answers from memory, so this is generous. */
const REQUEST_TIMEOUT_MS = 5000;
const DOT_TIMEOUT_MS = 30_000;

export interface InspectIo {
  /** The command's output (stdout). */
  print(line: string): void;
  /** Warnings and progress that must not mix with JSON output (stderr). */
  warn(line: string): void;
}

/** How the sandbox forms reach the sandbox; tests replace both (there is no sandbox in a unit test). */
export interface SandboxAccess {
  readPlan(prefix: string): SandboxPlan;
  netnsHttpGet: typeof netnsHttpGet;
}

export interface InspectOptions {
  io?: InspectIo;
  sandbox?: SandboxAccess;
}

const stdio: InspectIo = {
  print: (line) => {
    process.stdout.write(`${line}\n`);
  },
  warn: (line) => {
    process.stderr.write(`${line}\n`);
  },
};

/** One agent's HTTP endpoint: `get` resolves with the body of a 200 answer; errors name the agent. */
interface AgentGet {
  get(path: string): Promise<string>;
  /** How messages name what answered `path`. */
  where(path: string): string;
}

/** Adds `inspect` to the program and `inspect` to the sandbox command. */
export function registerInspect(program: Command, sandbox: Command, options: InspectOptions = {}): void {
  const io = options.io ?? stdio;
  const access = options.sandbox ?? { readPlan, netnsHttpGet };
  const outputOption = (): Option => new Option('-o, --output <format>', 'table or json').choices(['table', 'json']).default('table');

  const inspect = program
    .command('inspect')
    .description("what one agent knows (its admin API, default 127.0.0.1:15000), and the service graph from agents' metrics");
  const describe: Record<InspectKind, string> = {
    workloads: 'every pod the agent knows: address, node, identity, whether it is enrolled here',
    services: 'Services with their VIPs, ports and endpoints',
    policies: 'AuthorizationPolicy and PeerAuthentication in force, and their warnings',
    certs: "the agent's workload certificates (never keys) and trust bundle",
    connections: 'connections the agent is proxying now',
  };
  for (const kind of INSPECT_KINDS) {
    inspect
      .command(kind)
      .description(describe[kind])
      .option('--admin <url>', "the agent's admin API", DEFAULT_ADMIN_URL)
      .addOption(outputOption())
      .action(async (opts: { admin: string; output: string }) => {
        await withHttp(async (http) => {
          await showKind(io, kind, opts.output === 'json', http.agent(parseUrl('--admin', opts.admin), 'admin API'));
        });
      });
  }
  inspect
    .command('graph')
    .description("the service graph from agents' Istio TCP metrics: an edge table, a DOT file and, with Graphviz, an SVG")
    .option('--metrics <url...>', `an agent's metrics URL (repeat for each agent; default ${DEFAULT_METRICS_URL})`)
    .option('--out <file>', `where to write the DOT file (default ./${DEFAULT_GRAPH_FILE}; with -o json only when given)`)
    .addOption(outputOption())
    .action(async (opts: { metrics?: string[]; out?: string; output: string }) => {
      const urls = (opts.metrics ?? [DEFAULT_METRICS_URL]).map((url) => parseUrl('--metrics', url));
      const expositions = await withHttp(async (http) =>
        Promise.all(
          urls.map(async (url) => {
            const body = await http.agent(url, 'metrics endpoint').get('');
            return parsePrometheusText(body, url.href);
          }),
        ),
      );
      await showGraph(io, expositions, opts.output === 'json', opts.out);
    });
  inspect
    .command('logging')
    .description("the agent's log levels; with --level, change them (the root level, or one component's)")
    .option('--admin <url>', "the agent's admin API", DEFAULT_ADMIN_URL)
    .option(
      '--level <level>',
      "set this level (fatal|error|warn|info|debug|trace|silent; reset drops a component's own level); the agent checks it",
    )
    .option('--component <name>', 'set the level of this component only (e.g. access)')
    .addOption(outputOption())
    .action(async (opts: { admin: string; level?: string; component?: string; output: string }) => {
      if (opts.component !== undefined && opts.level === undefined) {
        throw new CliArgumentError('--component needs --level: say which level to give it');
      }
      const admin = parseUrl('--admin', opts.admin);
      await withHttp(async (http) => {
        if (opts.level !== undefined) {
          const query = new URLSearchParams({ level: opts.level });
          if (opts.component !== undefined) query.set('component', opts.component);
          const url = under(admin, '/logging');
          url.search = query.toString();
          await http.post(url, 'admin API');
        }
        const agent = http.agent(admin, 'admin API');
        const logging = parseJson<LoggingDump>(await agent.get('/logging'), agent.where('/logging'));
        if (typeof logging?.level !== 'string' || typeof logging.components !== 'object' || logging.components === null) {
          throw new CliAnswerError(`${agent.where('/logging')} did not answer a LoggingDump (level and components)`);
        }
        if (opts.output === 'json') io.print(JSON.stringify(logging, null, 2));
        else printTable(io.print, ['COMPONENT', 'LEVEL'], [['(root)', logging.level], ...Object.entries(logging.components).sort()]);
      });
    });

  sandbox
    .command('inspect')
    .description(`one node's agent: ${INSPECT_KINDS.join('|')}; or \`graph\`: the service graph of every node's agent`)
    .argument('<node>', 'a node name, or graph')
    .argument('[what]', INSPECT_KINDS.join('|'))
    .addOption(new Option('--prefix <name>', 'names of everything made start with this (FERRY_SANDBOX_PREFIX)'))
    .addOption(outputOption())
    .option('--out <file>', `graph: where to write the DOT file (default ./${DEFAULT_GRAPH_FILE}; with -o json only when given)`)
    .action(async (target: string, what: string | undefined, opts: { prefix?: string; output: string; out?: string }) => {
      const prefix = sandboxPrefixFrom(opts.prefix);
      const plan = access.readPlan(prefix);
      const json = opts.output === 'json';
      if (target === 'graph' && what === undefined) {
        await showGraph(io, await sandboxExpositions(io, plan, access), json, opts.out);
        return;
      }
      const node = plan.nodes.find((n) => n.name === target);
      if (!node) {
        throw new CliArgumentError(
          `sandbox "${plan.prefix}" has no node "${target}"; its nodes: ${plan.nodes.map((n) => n.name).join(', ')} (or graph)`,
        );
      }
      if (what === undefined) throw new CliArgumentError(`say what to inspect on node ${node.name}: ${INSPECT_KINDS.join('|')}`);
      if (!isInspectKind(what)) throw new CliArgumentError(`cannot inspect "${what}": choose one of ${INSPECT_KINDS.join(', ')}`);
      await showKind(io, what, json, sandboxAgent(access, node, PORTS.admin));
    });
}

function isInspectKind(value: string): value is InspectKind {
  return (INSPECT_KINDS as readonly string[]).includes(value);
}

// ---------------------------------------------------------------------------------------------------------------
// Reaching agents.

function parseUrl(option: string, value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new CliArgumentError(`${option}: ${JSON.stringify(value)} is not a URL (e.g. ${DEFAULT_ADMIN_URL})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CliArgumentError(`${option}: ${JSON.stringify(value)} is not an http:// or https:// URL`);
  }
  return url;
}

/** `path` below the base URL's path, so an admin API behind a path prefix works too. */
function under(base: URL, requestPath: string): URL {
  const url = new URL(base.href);
  url.pathname = `${base.pathname.replace(/\/$/, '')}/${requestPath.replace(/^\//, '')}`;
  url.search = '';
  return url;
}

interface Http {
  /** GETs paths below `base` (an empty path is `base` itself); `what` says what the URL should be, for errors. */
  agent(base: URL, what: string): AgentGet;
  post(url: URL, what: string): Promise<string>;
}

/**
 * Runs `use` with an HTTP client of its own, closed afterwards so no kept-alive socket holds the
 * process open once the command has printed.
 */
async function withHttp<T>(use: (http: Http) => Promise<T>): Promise<T> {
  const dispatcher = new Agent({ headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS });
  const send = async (url: URL, method: 'GET' | 'POST', what: string): Promise<string> => {
    let status: number;
    let body: string;
    try {
      const answer = await request(url, { method, dispatcher, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      status = answer.statusCode;
      body = await answer.body.text();
    } catch (err) {
      throw new CliUnreachableError(
        `nothing answers ${method} ${url.href}: ${causeOf(err)}; is the agent running, and is this its ${what}?`,
        { cause: err },
      );
    }
    if (status !== 200) throw new CliAnswerError(`${method} ${url.href} answered HTTP ${status}: ${firstLine(body)}`);
    return body;
  };
  try {
    return await use({
      agent: (base, what) => {
        const url = (p: string): URL => (p === '' ? base : under(base, p));
        return { get: (p) => send(url(p), 'GET', what), where: (p) => `GET ${url(p).href}` };
      },
      post: (url, what) => send(url, 'POST', what),
    });
  } finally {
    await dispatcher.close();
  }
}

/** GETs from 127.0.0.1:port inside a sandbox node's network namespace, where its agent listens. */
function sandboxAgent(access: SandboxAccess, node: SandboxPlan['nodes'][number], port: number): AgentGet {
  const get = async (requestPath: string): Promise<string> => {
    let answer: Awaited<ReturnType<typeof netnsHttpGet>>;
    try {
      answer = await access.netnsHttpGet(`/run/netns/${node.netns}`, '127.0.0.1', port, requestPath, REQUEST_TIMEOUT_MS);
    } catch (err) {
      const errno = errnoOf(err);
      if (errno === 'ECONNREFUSED') {
        throw new CliUnreachableError(
          `the agent on node ${node.name} is not running: nothing listens on 127.0.0.1:${port} in its namespace ${node.netns} ` +
            `(ferry sandbox status shows the agents; ferry sandbox agent start ${node.name} starts it)`,
          { cause: err },
        );
      }
      if (errno === 'ENOENT') {
        throw new CliUnreachableError(
          `node ${node.name}'s network namespace /run/netns/${node.netns} does not exist: the sandbox is not fully up (ferry sandbox status)`,
          { cause: err },
        );
      }
      throw new CliUnreachableError(
        `the agent on node ${node.name} did not answer GET ${requestPath} on 127.0.0.1:${port}: ${causeOf(err)}`,
        { cause: err },
      );
    }
    if (answer.status !== 200) {
      throw new CliAnswerError(
        `the agent on node ${node.name} answered HTTP ${answer.status} to GET ${requestPath}: ${firstLine(answer.body)}`,
      );
    }
    return answer.body;
  };
  return { get, where: (requestPath) => `GET ${requestPath} from the agent on node ${node.name}` };
}

/**
 * Every node's agent metrics. An agent that does not answer is left out with a warning rather than
 * failing the graph: the graph then shows its pods' traffic as their peers' agents reported it (see
 * buildServiceGraph). With no agent answering there is no graph.
 */
async function sandboxExpositions(io: InspectIo, plan: SandboxPlan, access: SandboxAccess): Promise<Exposition[]> {
  const results = await Promise.all(
    plan.nodes.map(async (node) => {
      try {
        const body = await sandboxAgent(access, node, PORTS.metrics).get('/metrics');
        return parsePrometheusText(body, `node ${node.name} (127.0.0.1:${PORTS.metrics}/metrics)`);
      } catch (err) {
        if (!(err instanceof CliUnreachableError) || plan.nodes.length === 1) throw err;
        io.warn(`warning: ${err.message}; the graph lacks what it reports`);
        return undefined;
      }
    }),
  );
  const expositions = results.filter((e): e is Exposition => e !== undefined);
  if (expositions.length === 0) {
    throw new CliUnreachableError(
      `no agent of sandbox "${plan.prefix}" answered on 127.0.0.1:${PORTS.metrics}: is any running? (ferry sandbox status)`,
    );
  }
  return expositions;
}

/** The errno name (ECONNREFUSED…) anywhere along an error's cause chain. */
function errnoOf(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth += 1) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code;
  }
  return undefined;
}

function causeOf(err: unknown): string {
  const errno = errnoOf(err);
  const message = err instanceof Error ? err.message : String(err);
  return errno !== undefined && !message.includes(errno) ? `${errno} (${message})` : message;
}

function firstLine(body: string): string {
  const line = body.trim().split('\n')[0] ?? '';
  return line === '' ? '(empty body)' : line.slice(0, 200);
}

function parseJson<T>(body: string, where: string): T {
  try {
    return JSON.parse(body) as T;
  } catch (err) {
    throw new CliAnswerError(`${where} did not answer JSON: ${(err as Error).message}`, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One agent's state.

async function showKind(io: InspectIo, kind: InspectKind, json: boolean, agent: AgentGet): Promise<void> {
  if (kind === 'connections') {
    const where = agent.where('/connections');
    const dump = parseJson<ConnectionsDump>(await agent.get('/connections'), where);
    const connections = requirePart(dump, 'connections', 'array', where) as ConnectionDump[];
    if (json) io.print(JSON.stringify(connections, null, 2));
    else printConnections(io, connections);
    return;
  }
  const where = agent.where('/config_dump');
  const dump = parseJson<ConfigDump>(await agent.get('/config_dump'), where);
  switch (kind) {
    case 'workloads': {
      const workloads = requirePart(dump, 'workloads', 'array', where) as WorkloadDump[];
      if (json) io.print(JSON.stringify(workloads, null, 2));
      else printWorkloads(io, workloads);
      return;
    }
    case 'services': {
      const services = requirePart(dump, 'services', 'array', where) as Service[];
      if (json) io.print(JSON.stringify(services, null, 2));
      else printServices(io, services);
      return;
    }
    case 'policies': {
      const policies = requirePart(dump, 'policies', 'object', where) as ConfigDump['policies'];
      if (json) io.print(JSON.stringify(policies, null, 2));
      else printPolicies(io, policies);
      return;
    }
    case 'certs': {
      const certificates = requirePart(dump, 'certificates', 'array', where) as CertificateDump[];
      if (json) io.print(JSON.stringify(certificates, null, 2));
      else printCertificates(io, certificates, Array.isArray(dump.trustBundle) ? dump.trustBundle : []);
      return;
    }
  }
}

/** The dump's field, checked for its kind: a different agent version answers with an error, not a crash. */
function requirePart(dump: unknown, field: string, kind: 'array' | 'object', where: string): unknown {
  const value = typeof dump === 'object' && dump !== null ? (dump as Record<string, unknown>)[field] : undefined;
  const ok = kind === 'array' ? Array.isArray(value) : typeof value === 'object' && value !== null && !Array.isArray(value);
  if (!ok)
    throw new CliAnswerError(`${where} answered JSON without a ${field} ${kind}: is this a Ferry agent's admin API, of this version?`);
  return value;
}

const byNamespaceAndName = (a: { namespace: string; name: string }, b: { namespace: string; name: string }): number =>
  a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name);

function printWorkloads(io: InspectIo, workloads: WorkloadDump[]): void {
  printTable(
    io.print,
    ['NAMESPACE', 'POD', 'IP', 'NODE', 'IDENTITY', 'PROTOCOL', 'ENROLLED'],
    [...workloads]
      .sort(byNamespaceAndName)
      .map((w) => [w.namespace, w.name, w.ips.join(',') || '-', w.node, w.identity, w.protocol, w.enrolled ? 'yes' : 'no']),
  );
}

function printServices(io: InspectIo, services: Service[]): void {
  printTable(
    io.print,
    ['NAMESPACE', 'NAME', 'VIP', 'PORTS', 'ENDPOINTS'],
    [...services]
      .sort(byNamespaceAndName)
      .map((s) => [
        s.namespace,
        s.name,
        s.vips.join(',') || '-',
        s.ports.map((p) => (p.name ? `${p.port}/${p.name}` : String(p.port))).join(',') || '-',
        [...new Set(s.ports.flatMap((p) => p.endpoints.map((e) => `${e.ip}:${e.port}`)))].join(' ') || '(none)',
      ]),
  );
}

/** Like `istioctl ztunnel-config policies`: scope is the mesh (root namespace), a namespace, or a selector. */
function printPolicies(io: InspectIo, policies: ConfigDump['policies']): void {
  const scope = (p: { namespace: string; selector?: Record<string, string> }): string => {
    if (p.selector)
      return Object.entries(p.selector)
        .map(([k, v]) => `${k}=${v}`)
        .join(',');
    return p.namespace === DEFAULT_ROOT_NAMESPACE ? 'mesh' : 'namespace';
  };
  const authorization = [...(policies.authorizationPolicies ?? [])]
    .sort(byNamespaceAndName)
    .map((p: AuthorizationPolicy) => [
      p.namespace,
      p.name,
      'AuthorizationPolicy',
      p.dryRun ? `${p.action} (dry-run)` : p.action,
      scope(p),
      String(p.rules.length),
    ]);
  const peer = [...(policies.peerAuthentications ?? [])]
    .sort(byNamespaceAndName)
    .map((p: PeerAuthentication) => [
      p.namespace,
      p.name,
      'PeerAuthentication',
      [`mTLS ${p.mode}`, ...p.portLevelMtls.map((l) => `${l.port}: ${l.mode}`)].join('; '),
      scope(p),
      '-',
    ]);
  printTable(io.print, ['NAMESPACE', 'NAME', 'KIND', 'ACTION', 'SCOPE', 'RULES'], [...authorization, ...peer]);
  const warnings = policies.warnings ?? [];
  if (warnings.length > 0) {
    io.print('');
    for (const warning of warnings) io.print(`warning: ${warning}`);
  }
}

function printCertificates(io: InspectIo, certificates: CertificateDump[], trustBundle: ConfigDump['trustBundle']): void {
  printTable(
    io.print,
    ['IDENTITY', 'SERIAL', 'STATE', 'NOT-BEFORE', 'NOT-AFTER', 'ISSUER'],
    [...certificates]
      .sort((a, b) => a.identity.localeCompare(b.identity))
      .map((c) => [c.identity, c.serial, c.state, c.notBefore, c.notAfter, c.issuer]),
  );
  io.print('');
  printTable(
    io.print,
    ['TRUST ANCHOR', 'NOT-AFTER', 'SHA-256 FINGERPRINT'],
    trustBundle.map((t) => [t.subject, t.notAfter, t.fingerprint256]),
  );
}

/** SENT and RECEIVED are from the source's side, as in the dump: what it sent, and what came back. */
function printConnections(io: InspectIo, connections: ConnectionDump[]): void {
  const party = (workload: string | undefined, namespace: string | undefined, address: string): string =>
    workload ? `${workload}.${namespace ?? 'unknown'}` : address;
  printTable(
    io.print,
    ['DIRECTION', 'PATH', 'SOURCE', 'DESTINATION', 'SENT', 'RECEIVED', 'AGE'],
    [...connections]
      .sort((a, b) => b.ageMs - a.ageMs)
      .map((c) => [
        c.direction,
        c.path,
        party(c.sourceWorkload, c.sourceNamespace, c.source),
        party(c.destinationWorkload, c.destinationNamespace, c.destination),
        humanBytes(c.bytesSent),
        humanBytes(c.bytesReceived),
        humanAge(c.ageMs),
      ]),
  );
}

/** 850ms, 12s, 3m05s, 2h04m, 3d02h. */
export function humanAge(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = Math.floor(ms / 1000);
  const two = (n: number): string => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d${two(Math.floor((s % 86_400) / 3600))}h`;
}

// ---------------------------------------------------------------------------------------------------------------
// The service graph.

/**
 * Prints the graph (an edge table, or JSON) and writes it as DOT — always for the table, with JSON
 * only when --out was given — and as SVG next to it when Graphviz's `dot` runs.
 */
async function showGraph(io: InspectIo, expositions: Exposition[], json: boolean, out: string | undefined): Promise<void> {
  const graph = buildServiceGraph(expositions);
  // With JSON on stdout, what the command says about files goes to stderr.
  const say = json ? io.warn : io.print;
  if (json) io.print(JSON.stringify(graph, null, 2));
  else if (graph.edges.length === 0) io.print(`no traffic reported yet by ${describeSources(graph)}`);
  else printTable(io.print, GRAPH_TABLE_HEADER, serviceGraphRows(graph));
  if (json && out === undefined) return;
  await writeGraphFiles(graph, out ?? DEFAULT_GRAPH_FILE, say, io.warn);
}

function describeSources(graph: ServiceGraph): string {
  return graph.sources.length === 1 ? graph.sources[0] : `any of ${graph.sources.length} agents`;
}

async function writeGraphFiles(
  graph: ServiceGraph,
  dotFile: string,
  say: (line: string) => void,
  warn: (line: string) => void,
): Promise<void> {
  try {
    fs.writeFileSync(dotFile, serviceGraphDot(graph));
  } catch (err) {
    throw new CliArgumentError(`--out: cannot write ${dotFile}: ${(err as Error).message}`, { cause: err });
  }
  say(`wrote ${dotFile}`);
  const svgFile = path.extname(dotFile) === '.dot' ? `${dotFile.slice(0, -'.dot'.length)}.svg` : `${dotFile}.svg`;
  try {
    await promisify(execFile)('dot', ['-Tsvg', '-o', svgFile, dotFile], { timeout: DOT_TIMEOUT_MS });
    say(`wrote ${svgFile}`);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') warn("no SVG: Graphviz's dot is not on PATH (install graphviz, or render the DOT file elsewhere)");
    else warn(`no SVG: dot failed: ${((err as { stderr?: string }).stderr ?? '').trim() || (err as Error).message}`);
  }
}
