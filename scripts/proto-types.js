#!/usr/bin/env node
// Regenerates the TypeScript types of Ferry's protobuf messages (every .proto under proto/) with
// proto-loader-gen-types, into src/proto/generated or the folder given as `--out DIR`. The options
// match src/proto's loader options, so the types describe exactly what the loader hands out.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const protoRoot = path.join(root, 'proto');
const outIndex = process.argv.indexOf('--out');
const outDir = outIndex > 0 ? path.resolve(process.argv[outIndex + 1]) : path.join(root, 'src', 'proto', 'generated');

function protoFiles(dir) {
  const found = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...protoFiles(full));
    else if (entry.name.endsWith('.proto')) found.push(path.relative(protoRoot, full));
  }
  return found.sort();
}

const generator = require.resolve('@grpc/proto-loader/build/bin/proto-loader-gen-types.js', { paths: [root] });
// Keep in step with LOADER_OPTIONS in src/proto/loader.ts (test/unit/config-proto.test.ts compares them).
const options = ['--longs=String', '--enums=String', '--defaults', '--oneofs', '--includeComments', '--grpcLib=@grpc/grpc-js'];
fs.rmSync(outDir, { recursive: true, force: true });
const result = spawnSync(process.execPath, [generator, ...options, '-I', protoRoot, '-O', outDir, ...protoFiles(protoRoot)], {
  cwd: root,
  stdio: 'inherit',
});
if (result.status !== 0) process.exit(result.status ?? 1);
// The generator writes each source's absolute path into its output; keep it relative to the repository, so the
// committed files are the same whichever directory they were generated in.
function relativise(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) relativise(full);
    else fs.writeFileSync(full, fs.readFileSync(full, 'utf8').split(`${root}${path.sep}`).join(''));
  }
}
relativise(outDir);
