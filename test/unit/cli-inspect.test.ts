// The sandbox forms run against a fake SandboxAccess (a plan object and a netnsHttpGet that GETs from a local
// server): a unit test has no node namespaces to make sockets in; test/integration covers the real ones.
// Everything else is real: `ferry inspect …` and `ferry sandbox inspect …` as registered on a commander program,
// over HTTP to an in-process server on 127.0.0.1 (ephemeral port) serving a fixture ConfigDump, ConnectionsDump,
// log levels and agents' metrics.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { once } from 'node:events';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import type { AddressInfo } from 'node:net';
import { registerInspect, humanAge, type SandboxAccess } from '../../src/cli/inspect';
import type { ConfigDump, ConnectionsDump, LoggingDump } from '../../src/app/admin-types';
import type { SandboxPlan } from '../../src/sandbox';
import { ISTIO_TCP_LABELS, type IstioTcpLabels } from '../../src/telemetry';
import type { After } from './helpers';

const CONFIG: ConfigDump = {
  node: 'node-a',
  revision: 7,
  policyRevision: 2,
  ready: { ready: true },
  workloads: [
    {
      uid: 'shop/web-1',
      namespace: 'shop',
      name: 'web-1',
      node: 'node-b',
      ips: ['10.244.1.10'],
      serviceAccount: 'web',
      identity: 'spiffe://cluster.local/ns/shop/sa/web',
      workloadName: 'web',
      app: 'web',
      version: 'v1',
      protocol: 'HBONE',
      enrolled: false,
    },
    {
      uid: 'shop/client',
      namespace: 'shop',
      name: 'client',
      node: 'node-a',
      ips: ['10.244.0.10'],
      serviceAccount: 'default',
      identity: 'spiffe://cluster.local/ns/shop/sa/default',
      workloadName: 'client',
      app: 'client',
      version: 'latest',
      protocol: 'HBONE',
      enrolled: true,
    },
    {
      uid: 'legacy/db',
      namespace: 'legacy',
      name: 'db',
      node: 'node-a',
      ips: [],
      serviceAccount: 'default',
      identity: 'spiffe://cluster.local/ns/legacy/sa/default',
      workloadName: 'db',
      app: 'db',
      version: 'latest',
      protocol: 'TCP',
      enrolled: false,
    },
  ],
  services: [
    {
      namespace: 'shop',
      name: 'web',
      hostname: 'web.shop.svc.cluster.local',
      vips: ['10.96.0.10'],
      ports: [
        { name: 'http', port: 80, endpoints: [{ ip: '10.244.1.10', port: 8080, workloadUid: 'shop/web-1' }] },
        { port: 9090, endpoints: [{ ip: '10.244.1.10', port: 9090 }] },
      ],
    },
    {
      namespace: 'legacy',
      name: 'db',
      hostname: 'db.legacy.svc.cluster.local',
      vips: ['10.96.0.11'],
      ports: [{ port: 5432, endpoints: [] }],
    },
  ],
  policies: {
    authorizationPolicies: [
      {
        namespace: 'shop',
        name: 'web-allow',
        action: 'ALLOW',
        dryRun: false,
        selector: { app: 'web' },
        rules: [{ from: [{ namespaces: ['shop'] }] }, {}],
      },
      { namespace: 'ferry-system', name: 'deny-legacy', action: 'DENY', dryRun: true, rules: [{}] },
    ],
    peerAuthentications: [
      { namespace: 'shop', name: 'strict', mode: 'STRICT', portLevelMtls: [] },
      { namespace: 'shop', name: 'web-metrics', selector: { app: 'web' }, mode: 'UNSET', portLevelMtls: [{ port: 9090, mode: 'DISABLE' }] },
    ],
    warnings: ['shop/web-allow: rules[0].to[0].operation.methods is L7 and not enforced'],
  },
  certificates: [
    {
      identity: 'spiffe://cluster.local/ns/shop/sa/default',
      principal: 'cluster.local/ns/shop/sa/default',
      serial: '0a1b',
      issuer: 'CN=Ferry Intermediate',
      notBefore: '2030-01-01T00:00:00.000Z',
      notAfter: '2030-01-02T00:00:00.000Z',
      state: 'valid',
      expiresInSeconds: 86_000,
      chain: ['-----BEGIN CERTIFICATE-----\n…'],
    },
  ],
  trustBundle: [{ subject: 'CN=Ferry Root', notAfter: '2040-01-01T00:00:00.000Z', fingerprint256: 'AB:CD' }],
  bpf: { links: [], maps: [], verdicts: [] },
  refusedPods: [],
};

const CONNECTIONS: ConnectionsDump = {
  connections: [
    {
      id: 'c1',
      direction: 'outbound',
      path: 'hbone',
      source: '10.244.0.10:40000',
      destination: '10.244.1.10:8080',
      sourceWorkload: 'client',
      sourceNamespace: 'shop',
      destinationService: 'web.shop.svc.cluster.local',
      destinationWorkload: 'web',
      destinationNamespace: 'shop',
      bytesSent: 100,
      bytesReceived: 4096,
      startedAt: '2030-01-01T00:00:00.000Z',
      ageMs: 5000,
    },
    {
      id: 'c2',
      direction: 'inbound',
      path: 'plaintext',
      source: '10.250.0.1:50000',
      destination: '10.244.0.10:8080',
      destinationWorkload: 'client',
      destinationNamespace: 'shop',
      bytesSent: 5,
      bytesReceived: 0,
      startedAt: '2030-01-01T00:01:00.000Z',
      ageMs: 125_000,
    },
  ],
};

const LOGGING: LoggingDump = { level: 'info', components: { access: 'debug' } };

function istio(reporter: 'source' | 'destination', srcWorkload: string, dstService: string, flag = '-'): string {
  const labels = Object.fromEntries(ISTIO_TCP_LABELS.map((l) => [l, 'unknown'])) as IstioTcpLabels;
  Object.assign(labels, {
    reporter,
    source_workload: srcWorkload,
    source_workload_namespace: 'shop',
    destination_service: `${dstService}.shop.svc.cluster.local`,
    response_flags: flag,
  });
  return `{${Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(',')}}`;
}

/** node-a: client (enrolled) → web, 3 connections, 1 denied. node-b: web's side of the same, and an outsider's 2. */
const METRICS: Record<string, string> = {
  'node-a': [
    '# HELP ferry_workload_enrolled Enrolled pods of each workload on this node',
    '# TYPE ferry_workload_enrolled gauge',
    'ferry_workload_enrolled{namespace="shop",workload="client"} 1',
    '# TYPE istio_tcp_connections_opened_total counter',
    `istio_tcp_connections_opened_total${istio('source', 'client', 'web')} 3`,
    `istio_tcp_connections_closed_total${istio('source', 'client', 'web', 'DENY')} 1`,
    `istio_tcp_received_bytes_total${istio('source', 'client', 'web')} 2048`,
    `istio_tcp_sent_bytes_total${istio('source', 'client', 'web')} 10240`,
    '',
  ].join('\n'),
  'node-b': [
    'ferry_workload_enrolled{namespace="shop",workload="web"} 1',
    `istio_tcp_connections_opened_total${istio('destination', 'client', 'web')} 3`,
    `istio_tcp_connections_opened_total${istio('destination', 'outsider', 'web')} 2`,
    '',
  ].join('\n'),
};

interface Server {
  url: string;
  requests: string[];
}

/** The fixture agent: /config_dump, /connections, /logging (GET, POST), /metrics/NODE; /broken/* misbehaves. */
async function startServer(t: After): Promise<Server> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const url = new URL(req.url ?? '/', 'http://x');
    const json = (body: unknown): void => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/config_dump') json(CONFIG);
    else if (url.pathname === '/connections') json(CONNECTIONS);
    else if (url.pathname === '/logging' && req.method === 'POST' && url.searchParams.get('level') === 'loud') {
      res.statusCode = 400;
      res.end('level "loud" is not one of fatal, error, warn, info, debug, trace, silent\n');
    } else if (url.pathname === '/logging') json(LOGGING);
    else if (url.pathname.startsWith('/metrics/') && METRICS[url.pathname.slice('/metrics/'.length)] !== undefined) {
      res.setHeader('content-type', 'text/plain; version=0.0.4');
      res.end(METRICS[url.pathname.slice('/metrics/'.length)]);
    } else if (url.pathname === '/broken/config_dump') {
      res.statusCode = 500;
      res.end('state not synced yet\nmore detail');
    } else if (url.pathname === '/notjson/config_dump') res.end('<html>');
    else if (url.pathname === '/other/config_dump') json({ node: 'x' });
    else if (url.pathname === '/bad-metrics') res.end('up 1\nistio_tcp_connections_opened_total{reporter="source" 1\n');
    else {
      res.statusCode = 404;
      res.end('not found');
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Output {
  out: string[];
  err: string[];
}

async function ferry(args: string[], sandbox?: SandboxAccess): Promise<Output> {
  const output: Output = { out: [], err: [] };
  const program = new Command('ferry').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  const sandboxCommand = program.command('sandbox');
  registerInspect(program, sandboxCommand, {
    io: { print: (line) => output.out.push(line), warn: (line) => output.err.push(line) },
    sandbox,
  });
  await program.parseAsync(args, { from: 'user' });
  return output;
}

/** Splits an aligned table into cells (columns are separated by two or more spaces). */
function cells(lines: string[]): string[][] {
  return lines.map((l) => l.split(/ {2,}/));
}

async function rejectsWith(promise: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: Error & { code?: string }) => {
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

describe('ferry inspect against an admin API', () => {
  test('workloads: a table sorted by namespace and pod, and -o json the workloads array', async (t) => {
    const { url, requests } = await startServer(t);
    const { out } = await ferry(['inspect', 'workloads', '--admin', url]);
    assert.deepEqual(cells(out), [
      ['NAMESPACE', 'POD', 'IP', 'NODE', 'IDENTITY', 'PROTOCOL', 'ENROLLED'],
      ['legacy', 'db', '-', 'node-a', 'spiffe://cluster.local/ns/legacy/sa/default', 'TCP', 'no'],
      ['shop', 'client', '10.244.0.10', 'node-a', 'spiffe://cluster.local/ns/shop/sa/default', 'HBONE', 'yes'],
      ['shop', 'web-1', '10.244.1.10', 'node-b', 'spiffe://cluster.local/ns/shop/sa/web', 'HBONE', 'no'],
    ]);
    assert.deepEqual(requests, ['GET /config_dump']);
    const json = await ferry(['inspect', 'workloads', '--admin', url, '-o', 'json']);
    assert.deepEqual(JSON.parse(json.out.join('\n')), CONFIG.workloads);
  });

  test('services: VIPs, named ports and distinct endpoints', async (t) => {
    const { url } = await startServer(t);
    const { out } = await ferry(['inspect', 'services', '--admin', url]);
    assert.deepEqual(cells(out), [
      ['NAMESPACE', 'NAME', 'VIP', 'PORTS', 'ENDPOINTS'],
      ['legacy', 'db', '10.96.0.11', '5432', '(none)'],
      ['shop', 'web', '10.96.0.10', '80/http,9090', '10.244.1.10:8080 10.244.1.10:9090'],
    ]);
    const json = await ferry(['inspect', 'services', '--admin', url, '-o', 'json']);
    assert.deepEqual(JSON.parse(json.out.join('\n')), CONFIG.services);
  });

  test('policies: both kinds with action and scope, then the warnings; -o json the policies object', async (t) => {
    const { url } = await startServer(t);
    const { out } = await ferry(['inspect', 'policies', '--admin', url]);
    assert.deepEqual(cells(out), [
      ['NAMESPACE', 'NAME', 'KIND', 'ACTION', 'SCOPE', 'RULES'],
      ['ferry-system', 'deny-legacy', 'AuthorizationPolicy', 'DENY (dry-run)', 'mesh', '1'],
      ['shop', 'web-allow', 'AuthorizationPolicy', 'ALLOW', 'app=web', '2'],
      ['shop', 'strict', 'PeerAuthentication', 'mTLS STRICT', 'namespace', '-'],
      ['shop', 'web-metrics', 'PeerAuthentication', 'mTLS UNSET; 9090: DISABLE', 'app=web', '-'],
      [''],
      ['warning: shop/web-allow: rules[0].to[0].operation.methods is L7 and not enforced'],
    ]);
    const json = await ferry(['inspect', 'policies', '--admin', url, '-o', 'json']);
    assert.deepEqual(JSON.parse(json.out.join('\n')), CONFIG.policies);
  });

  test('certs: certificates, then the trust bundle; -o json the certificates array', async (t) => {
    const { url } = await startServer(t);
    const { out } = await ferry(['inspect', 'certs', '--admin', url]);
    assert.deepEqual(cells(out), [
      ['IDENTITY', 'SERIAL', 'STATE', 'NOT-BEFORE', 'NOT-AFTER', 'ISSUER'],
      [
        'spiffe://cluster.local/ns/shop/sa/default',
        '0a1b',
        'valid',
        '2030-01-01T00:00:00.000Z',
        '2030-01-02T00:00:00.000Z',
        'CN=Ferry Intermediate',
      ],
      [''],
      ['TRUST ANCHOR', 'NOT-AFTER', 'SHA-256 FINGERPRINT'],
      ['CN=Ferry Root', '2040-01-01T00:00:00.000Z', 'AB:CD'],
    ]);
    const json = await ferry(['inspect', 'certs', '--admin', url, '-o', 'json']);
    assert.deepEqual(JSON.parse(json.out.join('\n')), CONFIG.certificates);
  });

  test('connections: oldest first, workloads where known, else addresses; -o json the connections array', async (t) => {
    const { url, requests } = await startServer(t);
    const { out } = await ferry(['inspect', 'connections', '--admin', url]);
    assert.deepEqual(cells(out), [
      ['DIRECTION', 'PATH', 'SOURCE', 'DESTINATION', 'SENT', 'RECEIVED', 'AGE'],
      ['inbound', 'plaintext', '10.250.0.1:50000', 'client.shop', '5 B', '0 B', '2m05s'],
      ['outbound', 'hbone', 'client.shop', 'web.shop', '100 B', '4.0 KiB', '5s'],
    ]);
    assert.deepEqual(requests, ['GET /connections']);
    const json = await ferry(['inspect', 'connections', '--admin', url, '-o', 'json']);
    assert.deepEqual(JSON.parse(json.out.join('\n')), CONNECTIONS.connections);
  });

  test('logging: shows levels; --level (and --component) POSTs the change first', async (t) => {
    const { url, requests } = await startServer(t);
    const { out } = await ferry(['inspect', 'logging', '--admin', url]);
    assert.deepEqual(cells(out), [
      ['COMPONENT', 'LEVEL'],
      ['(root)', 'info'],
      ['access', 'debug'],
    ]);
    await ferry(['inspect', 'logging', '--admin', url, '--level', 'debug', '--component', 'access']);
    assert.deepEqual(requests.slice(1), ['POST /logging?level=debug&component=access', 'GET /logging']);
    await rejectsWith(
      ferry(['inspect', 'logging', '--admin', url, '--component', 'access']),
      'FERRY_ERR_CLI_ARGUMENT',
      /--component needs --level/,
    );
    assert.equal(requests.length, 3, 'a rejected option sends nothing');
    // The agent checks levels (it knows `reset` too); its refusal is shown as it gave it.
    await rejectsWith(
      ferry(['inspect', 'logging', '--admin', url, '--level', 'loud']),
      'FERRY_ERR_CLI_ANSWER',
      /^POST http:\/\/127\.0\.0\.1:\d+\/logging\?level=loud answered HTTP 400: level "loud" is not one of fatal/,
    );
  });

  test('errors name the cause: bad URL, nothing listening, HTTP error, not JSON, another shape', async (t) => {
    const { url } = await startServer(t);
    await rejectsWith(
      ferry(['inspect', 'workloads', '--admin', 'localhost:15000']),
      'FERRY_ERR_CLI_ARGUMENT',
      /--admin: "localhost:15000" is not an http:\/\/ or https:\/\/ URL/,
    );
    await rejectsWith(ferry(['inspect', 'workloads', '--admin', 'nonsense']), 'FERRY_ERR_CLI_ARGUMENT', /--admin: "nonsense" is not a URL/);
    const port = await closedPort();
    await rejectsWith(
      ferry(['inspect', 'workloads', '--admin', `http://127.0.0.1:${port}`]),
      'FERRY_ERR_CLI_UNREACHABLE',
      new RegExp(
        `nothing answers GET http://127\\.0\\.0\\.1:${port}/config_dump: connect ECONNREFUSED .*is the agent running, and is this its admin API\\?`,
      ),
    );
    await rejectsWith(
      ferry(['inspect', 'workloads', '--admin', `${url}/broken/`]),
      'FERRY_ERR_CLI_ANSWER',
      /GET http:\/\/127\.0\.0\.1:\d+\/broken\/config_dump answered HTTP 500: state not synced yet$/,
    );
    await rejectsWith(
      ferry(['inspect', 'certs', '--admin', `${url}/notjson`]),
      'FERRY_ERR_CLI_ANSWER',
      /^GET http:\/\/127\.0\.0\.1:\d+\/notjson\/config_dump did not answer JSON: /,
    );
    await rejectsWith(
      ferry(['inspect', 'certs', '--admin', `${url}/other/`]),
      'FERRY_ERR_CLI_ANSWER',
      /^GET http:\/\/127\.0\.0\.1:\d+\/other\/config_dump answered JSON without a certificates array/,
    );
  });
});

describe('ferry inspect graph', () => {
  test("merges agents' metrics into an edge table, a DOT file and (with Graphviz) an SVG", async (t) => {
    const { url } = await startServer(t);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-graph-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const dotFile = path.join(dir, 'mesh.dot');
    const { out, err } = await ferry([
      'inspect',
      'graph',
      '--metrics',
      `${url}/metrics/node-a`,
      '--metrics',
      `${url}/metrics/node-b`,
      '--out',
      dotFile,
    ]);
    const table = cells(out.slice(0, 3));
    assert.deepEqual(table, [
      ['SOURCE', 'DESTINATION', 'CONNECTIONS', 'BYTES', 'REQUEST', 'RESPONSE', 'FAILURES'],
      ['client.shop', 'web.shop', '3', '12.0 KiB', '2.0 KiB', '10.0 KiB', '1 (DENY 1)'],
      ['outsider.shop', 'web.shop', '2', '0 B', '0 B', '0 B', '0'],
    ]);
    assert.equal(out[3], `wrote ${dotFile}`);
    const dot = fs.readFileSync(dotFile, 'utf8');
    assert.match(dot, /"workload:client\.shop" -> "service:web\.shop" \[label="3 connections\\n.*color="red"/);
    if (hasDot()) {
      assert.deepEqual([out[4], err], [`wrote ${path.join(dir, 'mesh.svg')}`, []]);
      assert.match(fs.readFileSync(path.join(dir, 'mesh.svg'), 'utf8'), /<svg[\s\S]*client\.shop/);
    } else {
      assert.match(err.join('\n'), /no SVG: Graphviz's dot is not on PATH/);
    }
  });

  test('-o json prints the graph and writes no file unless --out is given', async (t) => {
    const { url } = await startServer(t);
    const { out, err } = await ferry(['inspect', 'graph', '--metrics', `${url}/metrics/node-a`, `${url}/metrics/node-b`, '-o', 'json']);
    const graph = JSON.parse(out.join('\n'));
    assert.deepEqual(graph.enrolledWorkloads, ['client.shop', 'web.shop']);
    assert.deepEqual(
      graph.edges.map((e: { source: string; connections: number }) => [e.source, e.connections]),
      [
        ['workload:client.shop', 3],
        ['workload:outsider.shop', 2],
      ],
    );
    assert.deepEqual(err, []);
  });

  test('malformed metrics fail with the URL and line', async (t) => {
    const { url } = await startServer(t);
    await rejectsWith(
      ferry(['inspect', 'graph', '--metrics', `${url}/bad-metrics`, '-o', 'json']),
      'FERRY_ERR_METRICS_PARSE',
      new RegExp(`^${url.replace(/\./g, '\\.')}/bad-metrics: line 2, column \\d+: expected "," or "}"`),
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------

const PLAN = {
  prefix: 'unit',
  nodes: [
    { name: 'node-a', netns: 'unit-node-a' },
    { name: 'node-b', netns: 'unit-node-b' },
    { name: 'node-c', netns: 'unit-node-c' },
  ],
} as unknown as SandboxPlan;

/**
 * node-a and node-b answer from the fixture server (admin on 15000, metrics on 15020); node-c's agent is down: its
 * GETs go to a closed port, so they fail with a real ECONNREFUSED, wrapped as netnsHttpGet wraps it.
 */
function fakeSandbox(serverUrl: string, downPort: number, calls: string[]): SandboxAccess {
  return {
    readPlan: (prefix) => {
      assert.equal(prefix, 'unit');
      return PLAN;
    },
    netnsHttpGet: async (netnsPath, host, port, requestPath) => {
      calls.push(`${netnsPath} ${host}:${port}${requestPath}`);
      const node = PLAN.nodes.find((n) => netnsPath === `/run/netns/${n.netns}`);
      assert.ok(node, `no node has namespace ${netnsPath}`);
      const target =
        node.name === 'node-c'
          ? `http://127.0.0.1:${downPort}${requestPath}`
          : port === 15020
            ? `${serverUrl}/metrics/${node.name}`
            : `${serverUrl}${requestPath}`;
      return new Promise((resolve, reject) => {
        http
          .get(target, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => {
              body += chunk;
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          })
          .on('error', (err) =>
            reject(new Error(`GET http://${host}:${port}${requestPath} in ${netnsPath}: ${err.message}`, { cause: err })),
          );
      });
    },
  };
}

describe('ferry sandbox inspect', () => {
  test("NODE KIND asks that node's agent, inside its namespace", async (t) => {
    const { url } = await startServer(t);
    const calls: string[] = [];
    const { out } = await ferry(
      ['sandbox', 'inspect', 'node-a', 'workloads', '--prefix', 'unit'],
      fakeSandbox(url, await closedPort(), calls),
    );
    assert.deepEqual(calls, ['/run/netns/unit-node-a 127.0.0.1:15000/config_dump']);
    assert.equal(out[0].split(/ {2,}/)[0], 'NAMESPACE');
    assert.equal(out.length, 1 + CONFIG.workloads.length);
    const json = await ferry(['sandbox', 'inspect', 'node-b', 'connections', '--prefix', 'unit', '-o', 'json'], fakeSandbox(url, 1, calls));
    assert.deepEqual(JSON.parse(json.out.join('\n')), CONNECTIONS.connections);
  });

  test('unknown node, missing or unknown kind, and a stopped agent are clear errors', async (t) => {
    const { url } = await startServer(t);
    const sandbox = fakeSandbox(url, await closedPort(), []);
    await rejectsWith(
      ferry(['sandbox', 'inspect', 'node-x', 'workloads', '--prefix', 'unit'], sandbox),
      'FERRY_ERR_CLI_ARGUMENT',
      /sandbox "unit" has no node "node-x"; its nodes: node-a, node-b, node-c \(or graph\)/,
    );
    await rejectsWith(
      ferry(['sandbox', 'inspect', 'node-a', '--prefix', 'unit'], sandbox),
      'FERRY_ERR_CLI_ARGUMENT',
      /say what to inspect on node node-a: workloads\|services\|policies\|certs\|connections/,
    );
    await rejectsWith(
      ferry(['sandbox', 'inspect', 'node-a', 'pods', '--prefix', 'unit'], sandbox),
      'FERRY_ERR_CLI_ARGUMENT',
      /cannot inspect "pods": choose one of workloads, services, policies, certs, connections/,
    );
    await rejectsWith(
      ferry(['sandbox', 'inspect', 'node-c', 'certs', '--prefix', 'unit'], sandbox),
      'FERRY_ERR_CLI_UNREACHABLE',
      /the agent on node node-c is not running: nothing listens on 127\.0\.0\.1:15000 in its namespace unit-node-c .*ferry sandbox agent start node-c/,
    );
  });

  test("graph merges every answering node's metrics and warns about the others", async (t) => {
    const { url } = await startServer(t);
    const calls: string[] = [];
    const { out, err } = await ferry(
      ['sandbox', 'inspect', 'graph', '--prefix', 'unit', '-o', 'json'],
      fakeSandbox(url, await closedPort(), calls),
    );
    assert.deepEqual(
      calls.sort(),
      ['a', 'b', 'c'].map((n) => `/run/netns/unit-node-${n} 127.0.0.1:15020/metrics`),
    );
    const graph = JSON.parse(out.join('\n'));
    assert.deepEqual(graph.sources, ['node node-a (127.0.0.1:15020/metrics)', 'node node-b (127.0.0.1:15020/metrics)']);
    assert.deepEqual(
      graph.edges.map((e: { source: string; connections: number }) => [e.source, e.connections]),
      [
        ['workload:client.shop', 3],
        ['workload:outsider.shop', 2],
      ],
    );
    assert.equal(err.length, 1);
    assert.match(err[0], /^warning: the agent on node node-c is not running: .*; the graph lacks what it reports$/);
  });
});

test('humanAge', () => {
  assert.deepEqual([0, 850, 12_000, 185_000, 7_440_000, 270_000_000].map(humanAge), ['0ms', '850ms', '12s', '3m05s', '2h04m', '3d03h']);
});

function hasDot(): boolean {
  try {
    execFileSync('dot', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
