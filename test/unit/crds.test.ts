// The security.istio.io CRDs under deploy/crds/: equal to what the generator writes now, structural by the rules
// the API server applies to openAPIV3Schema (walked here, independently of the generator), and carrying every field
// the TypeBox definitions accept. Installing them on a real API server is the dev cluster's job, not this test's.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import { parse, parseAllDocuments } from 'yaml';
import {
  AUTHORIZATION_POLICY_DOCUMENT_SCHEMA,
  PEER_AUTHENTICATION_DOCUMENT_SCHEMA,
  policyCrd,
  renderPolicyCrds,
  toStructuralSchema,
  validateAuthorizationPolicy,
  validatePeerAuthentication,
} from '../../src/policy';

// This file runs as dist/test/unit/crds.test.js.
const REPO = path.resolve(__dirname, '..', '..', '..');

type Node = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------------------------
// The structural rules (Kubernetes "Specifying a structural schema", apiextensions-apiserver validation), stricter
// where that is simpler: only the keywords listed here may appear at all.

const TYPES = new Set(['object', 'array', 'string', 'integer', 'number', 'boolean']);
const VALUE_KEYWORDS = new Set([
  'description',
  'type',
  'format',
  'enum',
  'pattern',
  'minLength',
  'maxLength',
  'minimum',
  'maximum',
  'minItems',
  'maxItems',
  'minProperties',
  'maxProperties',
  'required',
  'properties',
  'additionalProperties',
  'items',
  'anyOf',
  'x-kubernetes-int-or-string',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-validations',
]);

const isNode = (value: unknown): value is Node => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Every rule a node breaks, as `path: problem`. */
function structuralProblems(node: unknown, at: string, problems: string[] = []): string[] {
  const problem = (text: string): void => {
    problems.push(`${at}: ${text}`);
  };
  if (!isNode(node)) {
    problem('is not a schema object');
    return problems;
  }
  for (const key of Object.keys(node)) if (!VALUE_KEYWORDS.has(key)) problem(`keyword ${key} is not allowed`);
  const intOrString = node['x-kubernetes-int-or-string'] === true;
  if (intOrString) {
    if (node.type !== undefined) problem('int-or-string has a type');
    if (node.anyOf !== undefined && JSON.stringify(node.anyOf) !== JSON.stringify([{ type: 'integer' }, { type: 'string' }])) {
      problem('int-or-string anyOf is not [{type: integer}, {type: string}]');
    }
  } else {
    if (node.anyOf !== undefined) problem('anyOf outside int-or-string');
    if (typeof node.type !== 'string' || !TYPES.has(node.type)) problem(`has no valid type (${JSON.stringify(node.type)})`);
  }
  if (node.description !== undefined && typeof node.description !== 'string') problem('description is not a string');
  if (node.properties !== undefined && node.additionalProperties !== undefined) problem('additionalProperties next to properties');
  if (node.additionalProperties !== undefined && !isNode(node.additionalProperties)) problem('additionalProperties is not a schema');
  if ((node.properties !== undefined || node.additionalProperties !== undefined) && node.type !== 'object') {
    problem('properties on a node that is not an object');
  }
  if (node.type === 'array' && !isNode(node.items)) problem('an array without one items schema');
  if (node.items !== undefined && node.type !== 'array') problem('items on a node that is not an array');
  if (node['x-kubernetes-preserve-unknown-fields'] !== undefined) {
    if (node['x-kubernetes-preserve-unknown-fields'] !== true || node.type !== 'object')
      problem('preserve-unknown-fields must be true, on an object');
  }
  if (node.enum !== undefined) {
    const values = Array.isArray(node.enum) ? node.enum : [];
    if (values.length === 0) problem('enum is empty');
    for (const value of values)
      if (typeof value !== node.type) problem(`enum value ${JSON.stringify(value)} is not a ${String(node.type)}`);
  }
  if (typeof node.pattern === 'string') {
    // The API server compiles patterns with Go's RE2: no lookaround, no backreferences.
    if (/\(\?[=!<]|\\[1-9]/.test(node.pattern)) problem(`pattern ${node.pattern} is not RE2`);
  } else if (node.pattern !== undefined) {
    problem('pattern is not a string');
  }
  if (node.required !== undefined) {
    const names = Object.keys(isNode(node.properties) ? node.properties : {});
    if (!Array.isArray(node.required)) problem('required is not a list');
    else for (const name of node.required) if (!names.includes(String(name))) problem(`required ${String(name)} is not a property`);
  }
  if (node['x-kubernetes-validations'] !== undefined) {
    const rules = node['x-kubernetes-validations'];
    if (!Array.isArray(rules) || rules.length === 0) problem('x-kubernetes-validations is not a non-empty list');
    else {
      for (const rule of rules) {
        if (!isNode(rule) || typeof rule.rule !== 'string' || typeof rule.message !== 'string' || Object.keys(rule).length !== 2) {
          problem(`validation rule ${JSON.stringify(rule)} is not {rule, message}`);
        }
      }
    }
  }
  if (isNode(node.properties))
    for (const [name, child] of Object.entries(node.properties)) structuralProblems(child, `${at}.${name}`, problems);
  if (node.additionalProperties !== undefined) structuralProblems(node.additionalProperties, `${at}.*`, problems);
  if (node.items !== undefined) structuralProblems(node.items, `${at}[]`, problems);
  return problems;
}

/** The root adds Kubernetes' own rules: metadata is the API server's, apiVersion and kind are plain strings. */
function rootProblems(schema: unknown): string[] {
  const problems = structuralProblems(schema, '(root)');
  const properties = (isNode(schema) && isNode(schema.properties) ? schema.properties : {}) as Record<string, Node>;
  if (JSON.stringify(properties.metadata) !== JSON.stringify({ type: 'object' }))
    problems.push('(root).metadata: is not just {type: object}');
  for (const name of ['apiVersion', 'kind']) {
    const node = properties[name];
    if (node === undefined || node.type !== 'string' || Object.keys(node).some((k) => k !== 'type' && k !== 'description')) {
      problems.push(`(root).${name}: is not a plain string`);
    }
  }
  return problems;
}

describe('the structural-schema check itself', () => {
  test('reports each rule a schema breaks', () => {
    const bad = {
      type: 'object',
      properties: {
        apiVersion: { type: 'string', enum: ['x'] },
        kind: { type: 'string' },
        metadata: { type: 'object', properties: { name: { type: 'string' } } },
        a: {},
        b: { type: 'object', properties: { x: { type: 'string' } }, additionalProperties: { type: 'string' } },
        c: { type: 'string', const: 'x' },
        d: { type: 'object', propertyNames: { pattern: 'a' }, additionalProperties: false },
        e: { type: 'array' },
        f: { type: ['string', 'integer'] },
        g: { $ref: '#/x' },
        h: { type: 'string', enum: [1], pattern: '(?=a)' },
        i: { type: 'object', required: ['missing'], 'x-kubernetes-validations': [{ rule: 'true' }] },
        j: { 'x-kubernetes-int-or-string': true, anyOf: [{ type: 'string' }] },
      },
    };
    assert.deepEqual(rootProblems(bad), [
      '(root).a: has no valid type (undefined)',
      '(root).b: additionalProperties next to properties',
      '(root).c: keyword const is not allowed',
      '(root).d: keyword propertyNames is not allowed',
      '(root).d: additionalProperties is not a schema',
      '(root).d.*: is not a schema object',
      '(root).e: an array without one items schema',
      '(root).f: has no valid type (["string","integer"])',
      '(root).g: keyword $ref is not allowed',
      '(root).g: has no valid type (undefined)',
      '(root).h: enum value 1 is not a string',
      '(root).h: pattern (?=a) is not RE2',
      '(root).i: required missing is not a property',
      '(root).i: validation rule {"rule":"true"} is not {rule, message}',
      '(root).j: int-or-string anyOf is not [{type: integer}, {type: string}]',
      '(root).metadata: is not just {type: object}',
      '(root).apiVersion: is not a plain string',
    ]);
  });
});

// ---------------------------------------------------------------------------------------------------------------

const KINDS = [
  { kind: 'AuthorizationPolicy', plural: 'authorizationpolicies', short: 'ap', column: ['Action', '.spec.action'] },
  { kind: 'PeerAuthentication', plural: 'peerauthentications', short: 'pa', column: ['Mode', '.spec.mtls.mode'] },
] as const;

describe('deploy/crds', () => {
  test('the committed files are byte for byte what `npm run gen:crds` writes', () => {
    const rendered = renderPolicyCrds();
    assert.deepEqual(
      rendered.map((r) => r.file),
      KINDS.map((k) => `deploy/crds/security.istio.io_${k.plural}.yaml`),
    );
    for (const { file, text } of rendered) {
      const committed = fs.readFileSync(path.join(REPO, file), 'utf8');
      assert.ok(committed === text, `${file} is out of date: run npm run gen:crds`);
    }
    // Nothing else lives there that the generator does not own.
    assert.deepEqual(fs.readdirSync(path.join(REPO, 'deploy', 'crds')).sort(), rendered.map((r) => path.basename(r.file)).sort());
  });

  for (const { kind, plural, short, column } of KINDS) {
    describe(kind, () => {
      const file = path.join(REPO, 'deploy', 'crds', `security.istio.io_${plural}.yaml`);
      const crd = parse(fs.readFileSync(file, 'utf8')) as {
        apiVersion: string;
        kind: string;
        metadata: { name: string };
        spec: {
          group: string;
          scope: string;
          names: Record<string, unknown>;
          versions: {
            name: string;
            served: boolean;
            storage: boolean;
            schema: { openAPIV3Schema: Node };
            subresources: unknown;
            additionalPrinterColumns: { name: string; jsonPath: string; type: string }[];
          }[];
        };
      };

      test('one YAML document, the same object the generator builds', () => {
        assert.equal(parseAllDocuments(fs.readFileSync(file, 'utf8')).length, 1);
        assert.deepEqual(crd, policyCrd(kind));
      });

      test("names, scope, versions, status subresource and columns as Istio's CRD has them", () => {
        assert.equal(crd.apiVersion, 'apiextensions.k8s.io/v1');
        assert.equal(crd.kind, 'CustomResourceDefinition');
        assert.equal(crd.metadata.name, `${plural}.security.istio.io`);
        assert.equal(crd.spec.group, 'security.istio.io');
        assert.equal(crd.spec.scope, 'Namespaced');
        assert.deepEqual(crd.spec.names, {
          categories: ['istio-io', 'security-istio-io'],
          kind,
          listKind: `${kind}List`,
          plural,
          shortNames: [short],
          singular: kind.toLowerCase(),
        });
        assert.deepEqual(
          crd.spec.versions.map((v) => [v.name, v.served, v.storage]),
          [
            ['v1', true, true],
            ['v1beta1', true, false],
          ],
        );
        for (const version of crd.spec.versions) {
          assert.deepEqual(version.subresources, { status: {} });
          assert.deepEqual(
            version.additionalPrinterColumns.map((c) => [c.name, c.jsonPath, c.type]),
            [
              [column[0], column[1], 'string'],
              ['Age', '.metadata.creationTimestamp', 'date'],
            ],
          );
        }
        assert.deepEqual(crd.spec.versions[1]?.schema, crd.spec.versions[0]?.schema);
      });

      test('every version has a structural openAPIV3Schema', () => {
        for (const version of crd.spec.versions) assert.deepEqual(rootProblems(version.schema.openAPIV3Schema), [], version.name);
      });
    });
  }

  test('every field the definitions accept is in the CRD, except those Ferry refuses with its own message', () => {
    // Walks the TypeBox definition and the CRD side by side; a field the generator dropped would go unnoticed
    // by the API server (it prunes it) and reach Ferry's controller silently.
    const missing: string[] = [];
    const extra: string[] = [];
    const walk = (definition: Node, crd: Node | undefined, at: string): void => {
      if (crd === undefined) {
        missing.push(at);
        return;
      }
      const defined = (definition.properties ?? {}) as Record<string, Node>;
      const rendered = (crd.properties ?? {}) as Record<string, Node>;
      for (const [name, child] of Object.entries(defined)) {
        if (child['x-ferry-rejected'] === true) {
          if (rendered[name] !== undefined) extra.push(`${at}.${name}`);
        } else {
          walk(child, rendered[name], `${at}.${name}`);
        }
      }
      if (isNode(definition.additionalProperties))
        walk(definition.additionalProperties, crd.additionalProperties as Node | undefined, `${at}.*`);
      if (isNode(definition.items)) walk(definition.items, crd.items as Node | undefined, `${at}[]`);
    };
    for (const [kind, definition] of [
      ['AuthorizationPolicy', AUTHORIZATION_POLICY_DOCUMENT_SCHEMA],
      ['PeerAuthentication', PEER_AUTHENTICATION_DOCUMENT_SCHEMA],
    ] as const) {
      // apiVersion, kind and metadata are the API server's at the root (checked by rootProblems).
      const defined = (definition as unknown as { properties: Record<string, Node> }).properties;
      const rendered = crdSchema(kind).properties as Record<string, Node>;
      for (const part of ['spec', 'status']) walk(defined[part] as Node, rendered[part], `${kind}.${part}`);
    }
    assert.deepEqual(missing, []);
    assert.deepEqual(extra, []);
    // The rejected ones, by name: Istio has them, Ferry does not implement them.
    const spec = crdSchema('AuthorizationPolicy').properties as { spec: { properties: Record<string, Node> } };
    assert.deepEqual(Object.keys(spec.spec.properties), ['selector', 'action', 'rules']);
    assert.deepEqual(spec.spec.properties.action?.enum, ['ALLOW', 'DENY', 'AUDIT']);
  });

  test('the CRD schemas accept every example policy Ferry accepts (types, enums, patterns and limits agree)', () => {
    // ajv over the generated schema, for its value keywords only: it neither prunes nor runs CEL as the API server does.
    const ajv = new Ajv({ allErrors: true, strict: true });
    for (const keyword of ['x-kubernetes-int-or-string', 'x-kubernetes-preserve-unknown-fields', 'x-kubernetes-validations'])
      ajv.addKeyword({ keyword });
    const checks = {
      AuthorizationPolicy: { crd: ajv.compile(crdSchema('AuthorizationPolicy')), ferry: validateAuthorizationPolicy },
      PeerAuthentication: { crd: ajv.compile(crdSchema('PeerAuthentication')), ferry: validatePeerAuthentication },
    };
    let seen = 0;
    for (const name of ['demo.yaml', 'tenancy.yaml']) {
      for (const doc of parseAllDocuments(fs.readFileSync(path.join(REPO, 'examples', name), 'utf8'))) {
        const value = doc.toJS() as { kind?: string };
        if (value.kind !== 'AuthorizationPolicy' && value.kind !== 'PeerAuthentication') continue;
        const check = checks[value.kind];
        assert.deepEqual(check.ferry(value).problems, [], `${name}: Ferry refuses it`);
        assert.ok(check.crd(value), `${name}: the CRD refuses it: ${JSON.stringify(check.crd.errors)}`);
        seen += 1;
      }
    }
    assert.ok(seen >= 3, `only ${seen} example policies`);
    // And a bad value the API server must refuse too: an action Ferry does not implement.
    const custom = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'x' }, spec: { action: 'CUSTOM' } };
    assert.equal(checks.AuthorizationPolicy.crd(custom), false);
  });

  test('the generator refuses what a structural schema cannot say, naming the field', () => {
    assert.throws(() => toStructuralSchema({ type: 'object', properties: { a: { type: 'string', not: { const: 'x' } } } }), {
      message: 'CRD schema a: not has no structural form',
    });
    assert.throws(() => toStructuralSchema({ type: 'array', items: { type: ['string', 'boolean'] } }), {
      message: 'CRD schema []: type string|boolean is not structural',
    });
    assert.throws(() => toStructuralSchema({ type: 'object', properties: { a: {} } }), { message: 'CRD schema a: no type' });
    assert.throws(
      () => toStructuralSchema({ type: 'object', properties: { a: { type: 'string' } }, additionalProperties: { type: 'string' } }),
      {
        message: 'CRD schema (root): additionalProperties next to properties',
      },
    );
    assert.deepEqual(toStructuralSchema({ type: 'string', const: 'x', description: 'why' }), {
      description: 'why',
      type: 'string',
      enum: ['x'],
    });
  });
});

function crdSchema(kind: 'AuthorizationPolicy' | 'PeerAuthentication'): Node {
  return (policyCrd(kind).spec as { versions: { schema: { openAPIV3Schema: Node } }[] }).versions[0]?.schema.openAPIV3Schema as Node;
}
