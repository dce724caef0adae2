#!/usr/bin/env node
// Writes deploy/crds/*.yaml (the security.istio.io CRDs) from src/policy/crd.ts, compiled: `npm run gen:crds`
// builds first. test/unit/crds.test.ts fails when a committed file differs from what this writes.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const compiled = path.join(root, 'dist', 'src', 'policy', 'crd.js');
if (!fs.existsSync(compiled)) {
  console.error(`gen-crds: ${compiled} missing; run npm run build:ts first`);
  process.exit(1);
}
const { renderPolicyCrds } = require(compiled);
for (const { file, text } of renderPolicyCrds()) {
  const target = path.join(root, file);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, text);
  console.log(`wrote ${file}`);
}
