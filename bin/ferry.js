#!/usr/bin/env node
// Entry point of the `ferry` command: runs the compiled CLI (npm run build makes dist/).
'use strict';
// The addon's blocking calls (setns, connect) run on libuv's thread pool; its default of 4 would
// queue outbound dials behind each other. Must be set before the pool starts.
process.env.UV_THREADPOOL_SIZE = process.env.UV_THREADPOOL_SIZE || '16';
const path = require('node:path');
const fs = require('node:fs');
const main = path.join(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
if (!fs.existsSync(main)) {
  process.stderr.write(`ferry: not built yet; run \`npm ci && npm run build\` in ${path.join(__dirname, '..')}\n`);
  process.exit(1);
}
require(main)
  .main(process.argv)
  .catch((err) => {
    process.stderr.write(`ferry: ${err?.message ? err.message : err}\n`);
    process.exit(1);
  });
