// Tests for src/errors' explainAjvError, the one ajv-error explainer behind the manifest and policy validators:
// field paths as users write them, the schema's description as the "expected" half, one message per problem.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import Ajv from 'ajv';
import { explainAjvError, formatFieldPath, jsonPointerToPath } from '../../src/errors';

const ajv = new Ajv({ allErrors: true, verbose: true, strict: true });
const check = ajv.compile({
  type: 'object',
  description: 'a thing',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', pattern: '^[a-z]+$', minLength: 2, maxLength: 5, description: 'a short lowercase name' },
    protocol: { type: 'string', enum: ['TCP'], description: 'TCP' },
    port: { type: 'integer', minimum: 1, maximum: 65535, description: 'a port from 1 to 65535' },
    command: { type: 'array', minItems: 1, description: 'a non-empty list', items: { type: 'string', description: 'a string' } },
    ports: {
      type: 'object',
      description: 'a mapping of port numbers to modes',
      propertyNames: { pattern: '^[0-9]+$', description: 'a port number' },
      additionalProperties: { type: 'string', enum: ['STRICT'], description: 'STRICT' },
    },
  },
});

/** Every explained message of one document, as `path: message`. */
function explain(doc: unknown, options: Parameters<typeof explainAjvError>[2] = {}): string[] {
  assert.equal(check(doc), false, 'the document should fail the schema');
  return (check.errors ?? [])
    .map((error) => explainAjvError(error, doc, options))
    .filter((e) => e !== undefined)
    .map((e) => `${formatFieldPath(e.path)}: ${e.message}`);
}

describe('jsonPointerToPath', () => {
  test('list positions are numbers, mapping keys strings even when digits, ~1 and ~0 unescaped', () => {
    const doc = { a: [{ '8080': { 'x/y': { '~': 1 } } }] };
    assert.deepEqual(jsonPointerToPath('/a/0/8080/x~1y/~0', doc), ['a', 0, '8080', 'x/y', '~']);
    assert.equal(formatFieldPath(jsonPointerToPath('/a/0/8080', doc)), 'a[0]["8080"]');
    assert.deepEqual(jsonPointerToPath('', doc), []);
  });
});

describe('explainAjvError', () => {
  test('required, unknown field and wrong type name the field and what was expected', () => {
    assert.deepEqual(explain({ nam: 'x', port: 'http' }), [
      'name: is required; expected a short lowercase name',
      'nam: unknown field (Ferry does not support it); expected one of: name, protocol, port, command, ports',
      'port: is a string ("http"); expected a port from 1 to 65535',
    ]);
  });

  test('enum, range, length, pattern and empty lists', () => {
    assert.deepEqual(explain({ name: 'ABCDEFG', protocol: 'SCTP', port: 70000, command: [] }), [
      'name: "ABCDEFG" is 7 characters long; expected a short lowercase name',
      'name: "ABCDEFG" is not valid; expected a short lowercase name',
      'protocol: "SCTP" is not supported; expected TCP',
      'port: 70000 is out of range; expected a port from 1 to 65535',
      'command: is empty; expected a non-empty list',
    ]);
    assert.deepEqual(explain({ name: 'a' }), ['name: "a" is not valid; expected a short lowercase name']);
  });

  test('values the caller plans to support are "not supported yet"', () => {
    assert.deepEqual(explain({ name: 'ab', protocol: 'UDP' }, { notSupportedYet: ['UDP'] }), [
      'protocol: UDP is not supported yet; expected TCP',
    ]);
    assert.deepEqual(explain({ name: 'ab', protocol: 'UDP' }), ['protocol: "UDP" is not supported; expected TCP']);
  });

  test('a bad mapping key is one problem, at the key, kept as a string', () => {
    assert.deepEqual(explain({ name: 'ab', ports: { http: 'STRICT', '80': 'LOOSE' } }), [
      'ports.http: is not a valid key; expected a port number',
      'ports["80"]: "LOOSE" is not supported; expected STRICT',
    ]);
  });
});
