// The values TypeScript shares with the BPF programs (ports, mark, sizes, struct layouts, map
// names) must equal the C header's: compile a probe against bpf/include/ferry-shared.h and compare.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BPF_CONSTANTS, LAYOUT, MAP_NAMES } from '../../src/capture/bpf-layout';
import { DELIVERY, PORTS, SOCKET_MARK } from '../../src/config';

const repo = path.resolve(__dirname, '..', '..', '..');
const include = path.join(repo, 'bpf', 'include');

function probeSource(): string {
  const lines: string[] = [];
  for (const name of Object.keys(BPF_CONSTANTS)) {
    lines.push(`  printf("\\"${name}\\": %lld,\\n", (long long)(${name}));`);
  }
  for (const [struct, layout] of Object.entries(LAYOUT)) {
    lines.push(`  printf("\\"sizeof(${struct})\\": %zu,\\n", sizeof(struct ${struct}));`);
    for (const field of Object.keys(layout.fields)) {
      lines.push(`  printf("\\"offsetof(${struct}.${field})\\": %zu,\\n", offsetof(struct ${struct}, ${field}));`);
    }
  }
  return [
    '#include <stdio.h>',
    '#include <stddef.h>',
    '#include "ferry-shared.h"',
    'int main(void) {',
    '  printf("{\\n");',
    ...lines,
    '  printf("\\"end\\": 0}\\n");',
    '  return 0;',
    '}',
  ].join('\n');
}

test('constants and struct layouts match bpf/include/ferry-shared.h', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-layout-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'probe.c'), probeSource());
  execFileSync('cc', ['-Wall', '-Werror', '-I', include, '-o', path.join(dir, 'probe'), path.join(dir, 'probe.c')]);
  const fromC = JSON.parse(execFileSync(path.join(dir, 'probe'), { encoding: 'utf8' })) as Record<string, number>;

  for (const [name, value] of Object.entries(BPF_CONSTANTS)) {
    assert.equal(value, fromC[name], `${name}: TypeScript ${value}, C ${fromC[name]}`);
  }
  for (const [struct, layout] of Object.entries(LAYOUT)) {
    assert.equal(layout.size, fromC[`sizeof(${struct})`], `sizeof(struct ${struct})`);
    for (const [field, offset] of Object.entries(layout.fields)) {
      assert.equal(offset, fromC[`offsetof(${struct}.${field})`], `offsetof(struct ${struct}, ${field})`);
    }
  }
});

test('ports and mark in src/config equal the C constants', () => {
  assert.equal(SOCKET_MARK, BPF_CONSTANTS.FERRY_SOCKET_MARK);
  assert.equal(DELIVERY.mark, BPF_CONSTANTS.FERRY_DELIVERY_MARK);
  assert.deepEqual(PORTS, {
    admin: BPF_CONSTANTS.FERRY_PORT_ADMIN,
    outbound: BPF_CONSTANTS.FERRY_PORT_OUTBOUND,
    inbound: BPF_CONSTANTS.FERRY_PORT_INBOUND,
    hbone: BPF_CONSTANTS.FERRY_PORT_HBONE,
    metrics: BPF_CONSTANTS.FERRY_PORT_METRICS,
    readiness: BPF_CONSTANTS.FERRY_PORT_READINESS,
    dns: BPF_CONSTANTS.FERRY_PORT_DNS,
  });
});

test('every map the header declares is named in MAP_NAMES, and only those', () => {
  const header = fs.readFileSync(path.join(include, 'maps.h'), 'utf8');
  const declared = [...header.matchAll(/\}\s*(\w+)\s+SEC\("\.maps"\)/g)].map((m) => m[1]).sort();
  assert.deepEqual(declared, Object.values(MAP_NAMES).sort());
});
