// Every module's error registry (the exported *_ERROR_CODES records, found by scanning src/) has
// stable, unique, documented FERRY_ERR_* codes, and every code string src/ raises is registered.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

// This file runs as dist/test/unit/error-codes.test.js; sources are in <repo>/src, compiled in <repo>/dist/src.
const REPO = path.resolve(__dirname, '..', '..', '..');
const SRC = path.join(REPO, 'src');
const DIST_SRC = path.resolve(__dirname, '..', '..', 'src');
const CODE = /^FERRY_ERR_[A-Z0-9_]+$/;

function tsFiles(dir: string): string[] {
  const found: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...tsFiles(full));
    else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) found.push(full);
  }
  return found.sort();
}

interface Registry {
  /** e.g. "src/identity/errors.ts IDENTITY_ERROR_CODES" */
  where: string;
  codes: Record<string, unknown>;
}

/** Each `export const X_ERROR_CODES` in src/, read from the compiled module. */
function registries(): Registry[] {
  const found: Registry[] = [];
  for (const file of tsFiles(SRC)) {
    const text = fs.readFileSync(file, 'utf8');
    const names = [...text.matchAll(/export\s+const\s+([A-Z0-9_]*_ERROR_CODES)\b/g)].map((m) => m[1]);
    if (names.length === 0) continue;
    const relative = path.relative(SRC, file);
    const compiled = path.join(DIST_SRC, relative.replace(/\.ts$/, '.js'));
    assert.ok(fs.existsSync(compiled), `${compiled} is missing: run npx tsc -p tsconfig.json`);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const exports = require(compiled) as Record<string, unknown>;
    for (const name of names) {
      const value = exports[name];
      const where = `src/${relative} ${name}`;
      assert.ok(typeof value === 'object' && value !== null && !Array.isArray(value), `${where} is not an object`);
      found.push({ where, codes: value as Record<string, unknown> });
    }
  }
  return found;
}

test("the scan finds every module's registry", () => {
  const names = registries().map((r) => r.where.split(' ')[1]);
  for (const expected of [
    'CAPTURE_ERROR_CODES',
    'CONFIG_ERROR_CODES',
    'NATIVE_ERROR_CODES',
    'SANDBOX_ERROR_CODES',
    'SANDBOX_RUNTIME_ERROR_CODES',
    'IDENTITY_ERROR_CODES',
  ]) {
    assert.ok(names.includes(expected), `no ${expected} found in src/ (found ${names.join(', ')})`);
  }
});

test('every registered code is FERRY_ERR_[A-Z0-9_]+ with a non-empty description', () => {
  const problems: string[] = [];
  for (const { where, codes } of registries()) {
    assert.ok(Object.keys(codes).length > 0, `${where} is empty`);
    for (const [code, description] of Object.entries(codes)) {
      if (!CODE.test(code)) problems.push(`${where}: ${code} does not match ${CODE}`);
      if (typeof description !== 'string' || description.trim() === '') {
        problems.push(`${where}: ${code} has no description`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

test('codes are unique across all modules', () => {
  const owner = new Map<string, string>();
  const duplicates: string[] = [];
  for (const { where, codes } of registries()) {
    for (const code of Object.keys(codes)) {
      const first = owner.get(code);
      if (first !== undefined) duplicates.push(`${code} is in both ${first} and ${where}`);
      else owner.set(code, where);
    }
  }
  assert.deepEqual(duplicates, []);
  assert.ok(owner.size >= 6, `only ${owner.size} codes registered`);
});

test('every FERRY_ERR_ string literal in src/ is registered', () => {
  const registered = new Set(registries().flatMap((r) => Object.keys(r.codes)));
  const unregistered: string[] = [];
  let literals = 0;
  for (const file of tsFiles(SRC)) {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      // A string literal that is, or starts with, a code: 'FERRY_ERR_X', "FERRY_ERR_X", `FERRY_ERR_X ...`.
      for (const match of line.matchAll(/['"`](FERRY_ERR_[A-Za-z0-9_]*)/g)) {
        literals += 1;
        const code = match[1];
        if (!CODE.test(code) || !registered.has(code)) {
          unregistered.push(`src/${path.relative(SRC, file)}:${i + 1}: ${code}`);
        }
      }
    });
  }
  assert.deepEqual(unregistered, []);
  // The scan must be looking at the sources that raise errors, or the check above proves nothing.
  assert.ok(literals >= 10, `only ${literals} FERRY_ERR_ literals found under ${SRC}`);
});
