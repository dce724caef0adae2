#!/usr/bin/env node
// Runs Ferry's compiled test suites with node's test runner, one file at a time (integration
// files build sandboxes and must not overlap). `node scripts/run-tests.js [unit|k8s|bpf|native|integration]…`
// k8s runs against a real dev cluster (build/devcluster, or FERRY_DEVCLUSTER) and needs no root.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const suites = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['unit', 'k8s', 'bpf', 'native', 'integration'];
const rootOnly = new Set(['bpf', 'native', 'integration']);

if (process.getuid() !== 0 && suites.some((s) => rootOnly.has(s))) {
  // Never a silent skip: these suites exist to exercise the kernel, which needs root.
  console.error(`run-tests: the ${suites.filter((s) => rootOnly.has(s)).join(', ')} suites need root; run as root (CI does)`);
  process.exit(1);
}
const files = [];
for (const suite of suites) {
  const dir = path.join(root, 'dist', 'test', suite);
  if (!fs.existsSync(dir)) {
    console.error(`run-tests: ${dir} missing; run npm run build first`);
    process.exit(1);
  }
  for (const f of fs.readdirSync(dir).sort()) if (f.endsWith('.test.js')) files.push(path.join(dir, f));
}
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
  cwd: root,
  env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE || '16' },
});
process.exit(result.status ?? 1);
