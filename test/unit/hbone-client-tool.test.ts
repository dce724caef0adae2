// Fakes: FakeTlsProvider (test/unit/hbone-pki.ts) stands in for src/identity; the "pod" is 127.0.0.1.
// test/fixtures/tools/hbone-client.js, which the integration tests run inside pods, run here as a
// child process against a real HboneListener: every mode prints one JSON line and exits 0.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hboneServer, type Server } from './hbone-harness';
import { spiffe } from './hbone-pki';
import type { After } from './helpers';

// dist/test/unit → <repo>/test/fixtures/tools
const TOOL = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'tools', 'hbone-client.js');

interface Run {
  code: number | null;
  json: Record<string, unknown>;
}

function runTool(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [TOOL, ...args], { timeout: 20_000 }, (err, stdout) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      const lines = stdout.trim().split('\n');
      if (lines.length !== 1) {
        reject(new Error(`expected one JSON line, got ${JSON.stringify(stdout)}`));
        return;
      }
      resolve({ code, json: JSON.parse(lines[0]) as Record<string, unknown> });
    });
  });
}

/** PEM files for a frontend client identity (or another trust domain's), in a temp dir. */
async function credentials(t: After, s: Server, trustDomain = 'cluster.local'): Promise<string[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-hbone-tool-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const issued = await s.ca.issue([spiffe(trustDomain, 'shop', 'frontend')]);
  fs.writeFileSync(path.join(dir, 'cert.pem'), issued.certPem);
  fs.writeFileSync(path.join(dir, 'key.pem'), issued.keyPem);
  fs.writeFileSync(path.join(dir, 'ca.pem'), s.ca.pem);
  return ['--cert', path.join(dir, 'cert.pem'), '--key', path.join(dir, 'key.pem'), '--ca', path.join(dir, 'ca.pem')];
}

test('hbone-client --mode connect: a round trip, and a wrong expected principal refused', async (t) => {
  const s = await hboneServer(t);
  const creds = await credentials(t, s);
  const base = ['--target', `127.0.0.1:${s.port}`, '--authority', `127.0.0.1:${s.appPort}`, ...creds];
  const ok = await runTool([
    ...base,
    '--mode',
    'connect',
    '--send',
    'hello tool',
    '--expect-principal',
    'spiffe://cluster.local/ns/shop/sa/backend',
  ]);
  assert.equal(ok.code, 0);
  assert.deepEqual(ok.json, { ok: true, status: 200, tls: 'ok', reply: 'hello tool' });

  const wrong = await runTool([...base, '--mode', 'connect', '--send', 'x', '--expect-principal', 'cluster.local/ns/shop/sa/other']);
  assert.equal(wrong.code, 0);
  assert.equal(wrong.json.ok, false);
  assert.match(String(wrong.json.tls), /server is cluster\.local\/ns\/shop\/sa\/backend, expected cluster\.local\/ns\/shop\/sa\/other/);

  const badTarget = await runTool([...base, '--mode', 'connect', '--authority', `127.0.0.9:${s.appPort}`]);
  assert.equal(badTarget.json.status, 400);
  assert.equal(s.requests.length, 1);
});

test('hbone-client: a client of another trust domain is refused by the server', async (t) => {
  const s = await hboneServer(t);
  const creds = await credentials(t, s, 'evil.example');
  const run = await runTool([
    '--target',
    `127.0.0.1:${s.port}`,
    '--authority',
    `127.0.0.1:${s.appPort}`,
    ...creds,
    '--mode',
    'connect',
    '--send',
    'x',
  ]);
  assert.equal(run.code, 0);
  assert.equal(run.json.ok, false);
  assert.equal(s.requests.length, 0);
});

test('hbone-client abuse modes: rapid-reset, big-header, many-headers, garbage, stall', async (t) => {
  const s = await hboneServer(t, { maxResetsPerWindow: 50, maxPendingHandshakes: 8, handshakeTimeoutMs: 500 });
  const creds = await credentials(t, s);
  const base = ['--target', `127.0.0.1:${s.port}`, '--authority', `127.0.0.1:${s.appPort}`, ...creds];

  const flood = await runTool([...base, '--mode', 'rapid-reset', '--count', '2000']);
  assert.equal(flood.json.sessionClosed, true, JSON.stringify(flood.json));
  assert.ok(Number(flood.json.streamsSent) < 2000, JSON.stringify(flood.json));
  // A reset stream whose HEADERS the server read before its RST_STREAM reaches the handler (how many depends on
  // how the bytes were split into reads); the reset budget bounds them, and no other mode gets one through.
  const afterFlood = s.requests.length;
  assert.ok(afterFlood <= 50, `${afterFlood} rapid-reset streams reached the handler; at most the 50 resets allowed`);

  const big = await runTool([...base, '--mode', 'big-header', '--bytes', String(100 * 1024)]);
  assert.equal(big.json.status, undefined, JSON.stringify(big.json));

  const many = await runTool([...base, '--mode', 'many-headers', '--count', '1000']);
  assert.equal(many.json.status, undefined, JSON.stringify(many.json));
  assert.equal(many.json.rstCode, 11);

  const garbage = await runTool(['--target', `127.0.0.1:${s.port}`, '--mode', 'garbage', '--bytes', '4096', '--timeout-ms', '3000']);
  assert.equal(garbage.json.closed, true);

  const stall = await runTool(['--target', `127.0.0.1:${s.port}`, '--mode', 'stall', '--count', '40', '--hold-ms', '1500']);
  assert.deepEqual(
    { opened: stall.json.opened, closedByServer: stall.json.closedByServer, failed: stall.json.failed },
    { opened: 40, closedByServer: 40, failed: 0 },
  );
  assert.equal(s.requests.length, afterFlood);
});
