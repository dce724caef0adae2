// How a dev cluster ends: SIGTERM to ferry-devcluster exits 0 promptly, and a cluster whose launcher is
// SIGKILLed (no exit hook runs) shuts itself down because its parent is gone (--exit-with-parent).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { devClusterBinariesFrom } from '../../src/config';
import { waitFor } from './helpers';

/** Running, not a zombie: an orphan's exit is reaped by whichever init adopted it, maybe not at once. */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

test('ferry-devcluster serve exits 0 within 15 s of SIGTERM and removes cluster.json', { timeout: 180_000 }, async (t) => {
  const binaries = devClusterBinariesFrom();
  assert.ok(fs.existsSync(binaries.devcluster), `${binaries.devcluster} missing: run scripts/setup.sh or set FERRY_DEVCLUSTER`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-devcluster-sigterm-'));
  const log = fs.openSync(path.join(dataDir, 'devcluster.log'), 'a');
  const child = spawn(binaries.devcluster, ['serve', `--data-dir=${dataDir}`], { stdio: ['ignore', log, log], detached: true });
  fs.closeSync(log);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  const info = path.join(dataDir, 'cluster.json');
  await waitFor('cluster.json', async () => (fs.existsSync(info) ? true : undefined), 120_000);
  assert.equal((JSON.parse(fs.readFileSync(info, 'utf8')) as { pid: number }).pid, child.pid);

  const started = Date.now();
  child.kill('SIGTERM');
  const result = await Promise.race([exited, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 15_000))]);
  assert.notEqual(
    result,
    'timeout',
    `still running 15 s after SIGTERM; log:\n${fs.readFileSync(path.join(dataDir, 'devcluster.log'), 'utf8').slice(-3000)}`,
  );
  assert.deepEqual(result, { code: 0, signal: null });
  assert.equal(fs.existsSync(info), false);
  t.diagnostic(`exited ${Date.now() - started} ms after SIGTERM`);
});

test('a dev cluster whose launcher is SIGKILLed stops by itself', { timeout: 180_000 }, async (t) => {
  const launcher = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'start-and-hang.js')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  launcher.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  let started: { pid: number; dataDir: string } | undefined;
  t.after(() => {
    if (launcher.exitCode === null && launcher.signalCode === null) launcher.kill('SIGKILL');
    if (started !== undefined) {
      if (alive(started.pid)) process.kill(started.pid, 'SIGKILL');
      // The launcher died without its exit hook, so its data directory is ours to remove.
      fs.rmSync(started.dataDir, { recursive: true, force: true });
    }
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: launcher.stdout }).once('line', resolve);
    launcher.once('exit', (code) => reject(new Error(`launcher exited ${code} before the cluster was up: ${stderr}`)));
  });
  started = JSON.parse(line) as { pid: number; dataDir: string };
  assert.ok(alive(started.pid));

  launcher.kill('SIGKILL');
  const { pid } = started;
  await waitFor(`cluster pid ${pid} gone after its launcher was killed`, async () => (alive(pid) ? undefined : true), 20_000);
});
