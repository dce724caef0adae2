#!/usr/bin/env node
// Writes deploy/prometheus/scrape-config.yaml from src/sandbox/prometheus-config.ts (compiled: run
// `npm run build:ts` first). test/unit/sandbox-prometheus.test.ts fails when the file is out of date.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const compiled = path.join(root, 'dist', 'src', 'sandbox', 'prometheus-config.js');
if (!fs.existsSync(compiled)) {
  console.error(`generate-prometheus-config: ${compiled} missing; run npm run build:ts first`);
  process.exit(1);
}
const { KUBERNETES_SCRAPE_CONFIG_FILE, renderKubernetesScrapeConfig } = require(compiled);
const target = path.join(root, KUBERNETES_SCRAPE_CONFIG_FILE);
fs.mkdirSync(path.dirname(target), { recursive: true });
fs.writeFileSync(target, renderKubernetesScrapeConfig());
console.log(`wrote ${path.relative(root, target)}`);
