// Root integration: PeerAuthentication and AuthorizationPolicy enforced by real agents on real
// connections — plaintext from outside the mesh, HBONE across nodes and the same-node short path —
// applied to a running sandbox on its API server with kubectl (`ferry sandbox apply|delete`), including
// connections already open.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TestSandbox, echoCommand, eventually, ferry, sh, withSandbox } from './harness';

const PREFIX = 'ferryt-pol';
const idle = '[{ name: c, command: ["sleep", "infinity"] }]';
const MANIFEST = `
apiVersion: v1
kind: Namespace
metadata: { name: app, annotations: { ferry.dev/mesh: enabled } }
---
apiVersion: v1
kind: Namespace
metadata: { name: other, annotations: { ferry.dev/mesh: enabled } }
---
apiVersion: v1
kind: Namespace
metadata: { name: plain }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: app, labels: { app: server } }
spec:
  nodeName: node-b
  serviceAccountName: server
  containers:
    - { name: main, command: ${echoCommand(7000)}, env: [{ name: POD_NAME, value: server }], ports: [{ containerPort: 7000 }] }
    - { name: admin, command: ${echoCommand(7001)}, env: [{ name: POD_NAME, value: server }], ports: [{ containerPort: 7001 }] }
---
apiVersion: v1
kind: Pod
metadata: { name: alpha, namespace: app }
spec: { nodeName: node-a, serviceAccountName: alpha, containers: ${idle} }
---
apiVersion: v1
kind: Pod
metadata: { name: beta, namespace: app }
spec: { nodeName: node-a, serviceAccountName: beta, containers: ${idle} }
---
apiVersion: v1
kind: Pod
metadata: { name: alpha-local, namespace: app }
spec: { nodeName: node-b, serviceAccountName: alpha, containers: ${idle} }
---
apiVersion: v1
kind: Pod
metadata: { name: stranger, namespace: other }
spec: { nodeName: node-a, containers: ${idle} }
---
apiVersion: v1
kind: Pod
metadata: { name: outsider, namespace: plain }
spec: { nodeName: node-a, containers: ${idle} }
`;

/** Who connects: enrolled pods over HBONE (alpha, beta, stranger), the short path (alpha-local), plaintext (outsider). */
const CLIENTS = ['app/alpha', 'app/beta', 'app/alpha-local', 'other/stranger', 'plain/outsider'] as const;
type Client = (typeof CLIENTS)[number];
type Expect = Partial<Record<Client, boolean>>;

const ALPHA = 'cluster.local/ns/app/sa/alpha';
const policy = (name: string, spec: string, annotations = ''): string => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: app${annotations ? `, annotations: { ${annotations} }` : ''} }
spec:
${spec.replace(/^/gm, '  ')}`;
const peerAuth = (name: string, spec: string, namespace = 'app'): string => `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${spec.replace(/^/gm, '  ')}`;

describe('policy enforced by the agents of a two-node sandbox', { timeout: 900_000 }, () => {
  const sandbox = new TestSandbox(PREFIX, MANIFEST);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `${PREFIX}-policies-`));
  let applied: string[] = [];

  const { ip } = withSandbox(sandbox, () => fs.rmSync(work, { recursive: true, force: true }));

  /** namespace/name of each policy document. */
  const names = (docs: string[]): string[] =>
    docs.map((doc) => {
      const kind = /^kind: (\w+)/m.exec(doc)?.[1];
      const meta = /metadata: \{ name: ([\w-]+), namespace: ([\w-]+)/.exec(doc);
      return `${kind} ${meta?.[2]}/${meta?.[1]}`;
    });

  /** The policies each agent holds (its admin API's config_dump), as "Kind namespace/name". */
  async function held(node: string): Promise<string[]> {
    const dump = JSON.parse(
      await sh('ip', ['netns', 'exec', `${PREFIX}-node-${node}`, 'curl', '-s', '-m', '3', 'http://127.0.0.1:15000/config_dump']),
    ) as { policies: Record<'authorizationPolicies' | 'peerAuthentications', Array<{ namespace: string; name: string }>> };
    return [
      ...dump.policies.authorizationPolicies.map((p) => `AuthorizationPolicy ${p.namespace}/${p.name}`),
      ...dump.policies.peerAuthentications.map((p) => `PeerAuthentication ${p.namespace}/${p.name}`),
    ];
  }

  /** Both agents hold exactly `expected` (every change of a case is a delete, then an apply, so names suffice). */
  async function agentsHold(expected: string[]): Promise<void> {
    for (const node of ['node-a', 'node-b']) {
      let last: string[] = [];
      await eventually(
        async () => {
          last = (await held(node)).sort();
          return JSON.stringify(last) === JSON.stringify([...expected].sort());
        },
        5000,
        `${node}'s agent to hold ${expected.join(', ') || 'no policy'} (holds ${last.join(', ') || 'none'})`,
      );
    }
  }

  /** Replace the policies of the previous case with `docs` through the API; returns what kubectl printed. */
  async function usePolicies(docs: string[]): Promise<string> {
    if (applied.length > 0) {
      const old = path.join(work, 'old.yaml');
      fs.writeFileSync(old, applied.join('\n---\n'));
      const removed = await ferry(['sandbox', 'delete', '--prefix', PREFIX, '-f', old]);
      assert.equal(removed.code, 0, removed.stderr);
      await agentsHold([]);
    }
    applied = docs;
    if (docs.length === 0) return '';
    const file = path.join(work, 'policies.yaml');
    fs.writeFileSync(file, docs.join('\n---\n'));
    const result = await ferry(['sandbox', 'apply', '--prefix', PREFIX, '-f', file]);
    assert.equal(result.code, 0, `apply failed:\n${result.stdout}\n${result.stderr}`);
    await agentsHold(names(docs));
    return result.stdout + result.stderr;
  }

  /** The controller's Warning Events about `name` in namespace app (e.g. what it changed in a policy). */
  async function warningsAbout(name: string): Promise<string> {
    const result = await ferry([
      'sandbox',
      'kubectl',
      '--prefix',
      PREFIX,
      '-n',
      'app',
      'get',
      'events',
      '--field-selector',
      `involvedObject.name=${name}`,
      '-o',
      'jsonpath={range .items[*]}{.type} {.reason}: {.message}{"\\n"}{end}',
    ]);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout;
  }

  /** true when `client` gets its message echoed by server:port, false when the connection is refused or reset. */
  async function reaches(client: Client, port: number): Promise<boolean> {
    const text = `from ${client} to ${port}\n`;
    const result = await sandbox.client(client, ['send', ip.server, String(port), text]);
    if (result.body === `${text}BYE-AFTER-FIN\n`) return true;
    assert.ok(result.body === undefined || result.body === '', `partial answer to ${client}: ${JSON.stringify(result)}`);
    return false;
  }

  async function check(expect: Expect, port = 7000): Promise<void> {
    const seen: Expect = {};
    for (const client of Object.keys(expect) as Client[]) seen[client] = await reaches(client, port);
    assert.deepEqual(seen, expect, `port ${port}`);
  }

  test('without policies everything is admitted (PERMISSIVE, no AuthorizationPolicy)', async () => {
    await usePolicies([]);
    await check({ 'app/alpha': true, 'app/beta': true, 'app/alpha-local': true, 'other/stranger': true, 'plain/outsider': true });
  });

  describe('PeerAuthentication', () => {
    test('STRICT namespace-wide refuses plaintext from a pod outside the mesh; mutual TLS still passes', async () => {
      await usePolicies([peerAuth('strict', 'mtls: { mode: STRICT }')]);
      await check({ 'plain/outsider': false, 'app/alpha': true, 'app/alpha-local': true });
    });

    test('PERMISSIVE admits plaintext as unauthenticated', async () => {
      await usePolicies([peerAuth('permissive', 'mtls: { mode: PERMISSIVE }')]);
      await check({ 'plain/outsider': true, 'app/alpha': true });
    });

    test('mesh-wide STRICT with a port-level PERMISSIVE override on the workload', async () => {
      await usePolicies([
        peerAuth('default', 'mtls: { mode: STRICT }', 'ferry-system'),
        peerAuth(
          'admin-port',
          'selector: { matchLabels: { app: server } }\nmtls: { mode: STRICT }\nportLevelMtls: { "7001": { mode: PERMISSIVE } }',
        ),
      ]);
      await check({ 'plain/outsider': false }, 7000);
      await check({ 'plain/outsider': true }, 7001);
    });
  });

  describe('AuthorizationPolicy', () => {
    const cases: Array<{ name: string; docs: () => string[]; expect: Expect; port?: number }> = [
      {
        name: 'ALLOW principals',
        docs: () => [policy('p', `action: ALLOW\nrules: [{ from: [{ source: { principals: ["${ALPHA}"] } }] }]`)],
        expect: { 'app/alpha': true, 'app/alpha-local': true, 'app/beta': false, 'other/stranger': false, 'plain/outsider': false },
      },
      {
        name: 'ALLOW notPrincipals',
        docs: () => [policy('p', `rules: [{ from: [{ source: { notPrincipals: ["${ALPHA}"] } }] }]`)],
        expect: { 'app/alpha': false, 'app/alpha-local': false, 'app/beta': true, 'other/stranger': true },
      },
      {
        name: 'ALLOW namespaces',
        docs: () => [policy('p', 'rules: [{ from: [{ source: { namespaces: ["app"] } }] }]')],
        expect: { 'app/alpha': true, 'app/beta': true, 'other/stranger': false, 'plain/outsider': false },
      },
      {
        name: 'ALLOW notNamespaces',
        docs: () => [policy('p', 'rules: [{ from: [{ source: { notNamespaces: ["app"] } }] }]')],
        expect: { 'app/alpha': false, 'other/stranger': true },
      },
      {
        name: 'ALLOW to ports',
        docs: () => [policy('p', 'rules: [{ to: [{ operation: { ports: ["7001"] } }] }]')],
        expect: { 'app/alpha': false, 'plain/outsider': false },
        port: 7000,
      },
      {
        name: 'ALLOW to ports (the allowed port)',
        docs: () => [policy('p', 'rules: [{ to: [{ operation: { ports: ["7001"] } }] }]')],
        expect: { 'app/alpha': true, 'plain/outsider': true },
        port: 7001,
      },
      {
        name: 'ALLOW notPorts',
        docs: () => [policy('p', 'rules: [{ to: [{ operation: { notPorts: ["7001"] } }] }]')],
        expect: { 'app/alpha': false },
        port: 7001,
      },
      {
        name: 'ALLOW ipBlocks',
        docs: () => [policy('p', `rules: [{ from: [{ source: { ipBlocks: ["${ip.alpha}/32", "${ip.outsider}"] } }] }]`)],
        expect: { 'app/alpha': true, 'plain/outsider': true, 'app/beta': false, 'other/stranger': false },
      },
      {
        name: 'ALLOW notIpBlocks',
        docs: () => [policy('p', `rules: [{ from: [{ source: { notIpBlocks: ["${ip.alpha}/32"] } }] }]`)],
        expect: { 'app/alpha': false, 'app/beta': true, 'plain/outsider': true },
      },
      {
        name: 'DENY wins over ALLOW',
        docs: () => [
          policy('allow-app', 'action: ALLOW\nrules: [{ from: [{ source: { namespaces: ["app"] } }] }]'),
          policy('deny-alpha', `action: DENY\nrules: [{ from: [{ source: { principals: ["${ALPHA}"] } }] }]`),
        ],
        expect: { 'app/alpha': false, 'app/alpha-local': false, 'app/beta': true, 'other/stranger': false },
      },
      {
        name: 'DENY notNamespaces',
        docs: () => [policy('p', 'action: DENY\nrules: [{ from: [{ source: { notNamespaces: ["app"] } }] }]')],
        expect: { 'app/alpha': true, 'other/stranger': false },
      },
      {
        name: 'an ALLOW that applies and matches nothing denies everything',
        docs: () => [
          policy(
            'nobody',
            'selector: { matchLabels: { app: server } }\nrules: [{ from: [{ source: { principals: ["cluster.local/ns/none/sa/none"] } }] }]',
          ),
        ],
        expect: { 'app/alpha': false, 'app/beta': false, 'app/alpha-local': false, 'plain/outsider': false },
      },
      {
        name: 'an ALLOW selecting other workloads does not apply',
        docs: () => [
          policy(
            'elsewhere',
            'selector: { matchLabels: { app: not-the-server } }\nrules: [{ from: [{ source: { principals: ["cluster.local/ns/none/sa/none"] } }] }]',
          ),
        ],
        expect: { 'app/alpha': true, 'plain/outsider': true },
      },
      {
        name: 'when conditions (source.namespace, destination.port)',
        docs: () => [
          policy('p', 'rules: [{ when: [{ key: source.namespace, values: ["app"] }, { key: destination.port, values: ["7000"] }] }]'),
        ],
        expect: { 'app/alpha': true, 'other/stranger': false },
      },
      {
        name: 'a dry-run DENY is logged, not enforced',
        docs: () => [policy('deny-all', 'action: DENY\nrules: [{}]', '"istio.io/dry-run": "true"')],
        expect: { 'app/alpha': true, 'plain/outsider': true },
      },
      {
        name: 'ALLOW with L7 fields matches nothing (restrictive)',
        docs: () => [
          policy('l7-allow', `rules: [{ from: [{ source: { principals: ["${ALPHA}"] } }], to: [{ operation: { methods: ["GET"] } }] }]`),
        ],
        expect: { 'app/alpha': false, 'app/beta': false },
      },
      {
        name: 'DENY with L7 fields is enforced on its L4 part (restrictive)',
        docs: () => [policy('l7-deny', 'action: DENY\nrules: [{ to: [{ operation: { ports: ["7000"], paths: ["/admin"] } }] }]')],
        expect: { 'app/alpha': false, 'plain/outsider': false },
      },
    ];
    for (const c of cases) {
      test(c.name, async () => {
        await usePolicies(c.docs());
        if (c.name.includes('L7')) {
          const name = /name: (l7-\w+)/.exec(c.docs()[0])?.[1] ?? '';
          await eventually(
            async () => /^Warning FerryConfigurationChanged: .*HTTP attributes are not enforced/m.test(await warningsAbout(name)),
            10_000,
            `a Warning Event announcing the restriction of app/${name}`,
          );
        }
        await check(c.expect, c.port ?? 7000);
      });
    }

    test('dry-run decisions are logged by the destination agent', async () => {
      await usePolicies([policy('deny-all', 'action: DENY\nrules: [{}]', '"istio.io/dry-run": "true"')]);
      const before = sandbox.agentLog('node-b').length;
      assert.equal(await reaches('app/beta', 7000), true);
      await eventually(
        () =>
          /dry.run/i.test(sandbox.agentLog('node-b').slice(before)) && sandbox.agentLog('node-b').slice(before).includes('app/deny-all'),
        5000,
        'a dry-run log line naming app/deny-all',
      );
    });

    test('a policy change closes open connections it now denies, within a second of the agent applying it', async () => {
      await usePolicies([]);
      const hold = sandbox.hold('app/alpha', ip.server, 7000);
      const keep = sandbox.hold('app/beta', ip.server, 7000);
      const lines: Record<string, string[]> = { alpha: [], beta: [] };
      for (const [name, child] of [
        ['alpha', hold],
        ['beta', keep],
      ] as const) {
        child.stdout.on('data', (c: Buffer) => lines[name].push(...c.toString().split('\n').filter(Boolean)));
      }
      try {
        await eventually(
          () => lines.alpha.some((l) => l.includes('connected')) && lines.beta.some((l) => l.includes('connected')),
          10_000,
          'held connections',
        );
        hold.stdin.write('ping\n');
        await eventually(() => lines.alpha.some((l) => l.includes('ping')), 5000, 'echo on the held connection');
        const appliedAt = Date.now();
        await usePolicies([policy('deny-alpha', `action: DENY\nrules: [{ from: [{ source: { principals: ["${ALPHA}"] } }] }]`)]);
        await eventually(
          () => lines.alpha.some((l) => l.includes('"ended"') || l.includes('"error"')),
          3000,
          'the denied connection to close',
        );
        process.stdout.write(`# denied connection closed ${Date.now() - appliedAt} ms after apply\n`);
        keep.stdin.write('still here\n');
        await eventually(() => lines.beta.some((l) => l.includes('still here')), 5000, 'the allowed connection to stay open');
      } finally {
        hold.kill();
        keep.kill();
      }
    });
  });
});
