// Root integration: `ferry sandbox up` refuses bad input with errors naming file, document and field,
// and builds nothing; commands on a sandbox that is not up say so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO, ferry, leftovers, requireRoot } from './harness';

const PREFIX = 'ferryt-cli';
const NAMES = [`${PREFIX}-fabric`, `${PREFIX}-node-node-a`, `${PREFIX}-node-node-b`];

test('bad manifests: each error names file, document and field; nothing is built', async (t) => {
  requireRoot();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bad-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const cases: Array<{ name: string; text: string; expect: RegExp[] }> = [
    {
      name: 'malformed.yaml',
      text: 'apiVersion: v1\nkind: Namespace\nmetadata: { name: [unclosed\n',
      expect: [/malformed\.yaml/, /document 1/],
    },
    {
      name: 'unknown-field.yaml',
      text:
        'apiVersion: v1\nkind: Namespace\nmetadata: { name: ok }\n---\n' +
        'apiVersion: v1\nkind: Pod\nmetadata: { name: p, namespace: ok }\nspec:\n  containers: [{ name: c, command: [sleep, "1"], imagePullPolicy: Always }]\n',
      expect: [/unknown-field\.yaml/, /document 2/, /Pod ok\/p/, /spec\.containers\[0\]/, /imagePullPolicy/],
    },
    {
      name: 'impossible.yaml',
      text: 'apiVersion: v1\nkind: Service\nmetadata: { name: s }\nspec: { ports: [{ port: 70000 }] }\n',
      expect: [/impossible\.yaml/, /document 1/, /spec\.ports\[0\]\.port/],
    },
    {
      name: 'unknown-kind.yaml',
      text: 'apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: d }\n',
      expect: [/unknown-kind\.yaml/, /Deployment/],
    },
  ];
  for (const c of cases) {
    const file = path.join(dir, c.name);
    fs.writeFileSync(file, c.text);
    const result = await ferry(['sandbox', 'up', '-f', file, '--prefix', PREFIX]);
    assert.notEqual(result.code, 0, `${c.name} was accepted`);
    for (const pattern of c.expect) assert.match(result.stderr, pattern, `${c.name}: ${result.stderr}`);
    assert.deepEqual(await leftovers(PREFIX, NAMES), [], `${c.name} left something behind`);
  }
});

test('the shipped bad examples are all refused', async () => {
  requireRoot();
  for (const name of fs.readdirSync(path.join(REPO, 'examples', 'bad'))) {
    const result = await ferry(['sandbox', 'up', '-f', path.join(REPO, 'examples', 'bad', name), '--prefix', PREFIX]);
    assert.notEqual(result.code, 0, `${name} was accepted`);
    assert.match(result.stderr, new RegExp(name.replace('.', '\\.')));
  }
  assert.deepEqual(await leftovers(PREFIX, NAMES), []);
});

test('commands on a sandbox that is not up fail with a clear message', async () => {
  requireRoot();
  for (const args of [
    ['status'],
    ['down'],
    ['exec', 'default/x', '--', 'true'],
    ['kubeconfig'],
    ['kubectl', 'get', 'pods'],
    ['controller', 'kill'],
    ['controller', 'start'],
    ['agent', 'kill', 'node-a'],
    ['agent', 'start', 'node-a'],
    ['ca', 'rotate'],
    ['apply', '-f', '/dev/null'],
    ['delete', '-f', '/dev/null'],
    ['query', 'up'],
    ['inspect', 'node-a', 'workloads'],
  ]) {
    const verb = ['controller', 'agent', 'ca'].includes(args[0]) ? args.slice(0, 2) : [args[0]];
    const rest = args.slice(verb.length);
    const result = await ferry(['sandbox', ...verb, '--prefix', PREFIX, ...rest]);
    assert.notEqual(result.code, 0, `sandbox ${args.join(' ')} succeeded`);
    assert.match(result.stderr, new RegExp(`no sandbox "${PREFIX}" is up`), `sandbox ${args.join(' ')}: ${result.stderr}`);
  }
});
