// The dev cluster's configuration (FERRY_DEVCLUSTER / FERRY_KUBECTL) and the launcher's refusals that need no
// cluster: a missing binary, a bad name, a data directory that is not empty.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { ConfigError, DEV_CLUSTER_BUILD_DIR, devClusterBinariesFrom } from '../../src/config';
import { startDevCluster } from '../../src/devcluster';

const REPO = path.resolve(__dirname, '..', '..', '..');

test('without variables the binaries are those scripts/build-devcluster.sh builds in this checkout', () => {
  const binaries = devClusterBinariesFrom({});
  assert.equal(DEV_CLUSTER_BUILD_DIR, path.join(REPO, 'build', 'devcluster'));
  assert.equal(binaries.devcluster, path.join(REPO, 'build', 'devcluster', 'bin', 'ferry-devcluster'));
  assert.deepEqual(binaries.kubectl, { command: path.join(REPO, 'build', 'devcluster', 'bin', 'kubectl'), args: [] });
  assert.equal(binaries.gatewayApiCrdDir, path.join(REPO, 'build', 'devcluster', 'crds', 'gateway-api'));
  assert.deepEqual(binaries.from, { devcluster: 'build', kubectl: 'build' });
});

test('FERRY_DEVCLUSTER alone also provides kubectl (its subcommand); FERRY_KUBECTL wins for kubectl', () => {
  const alone = devClusterBinariesFrom({ FERRY_DEVCLUSTER: '/opt/ferry/bin/ferry-devcluster' });
  assert.equal(alone.devcluster, '/opt/ferry/bin/ferry-devcluster');
  assert.deepEqual(alone.kubectl, { command: '/opt/ferry/bin/ferry-devcluster', args: ['kubectl'] });
  assert.equal(alone.gatewayApiCrdDir, '/opt/ferry/crds/gateway-api');
  assert.deepEqual(alone.from, { devcluster: 'FERRY_DEVCLUSTER', kubectl: 'FERRY_DEVCLUSTER' });

  const both = devClusterBinariesFrom({ FERRY_DEVCLUSTER: '/opt/d', FERRY_KUBECTL: 'relative/kubectl' });
  assert.deepEqual(both.kubectl, { command: path.resolve('relative/kubectl'), args: [] });
  assert.deepEqual(both.from, { devcluster: 'FERRY_DEVCLUSTER', kubectl: 'FERRY_KUBECTL' });
});

test('an empty FERRY_DEVCLUSTER or FERRY_KUBECTL is a configuration error naming the variable', () => {
  assert.throws(
    () => devClusterBinariesFrom({ FERRY_DEVCLUSTER: '' }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.code, 'FERRY_ERR_CONFIG_INVALID');
      assert.match(err.message, /FERRY_DEVCLUSTER/);
      return true;
    },
  );
  assert.throws(() => devClusterBinariesFrom({ FERRY_KUBECTL: '  ' }), /FERRY_KUBECTL/);
});

test('a missing binary is FERRY_ERR_DEVCLUSTER_BINARY_MISSING and says how to get one', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-devcluster-missing-'));
  try {
    const built = devClusterBinariesFrom({ FERRY_DEVCLUSTER: path.join(dir, 'bin', 'ferry-devcluster') });
    await assert.rejects(
      startDevCluster({ binaries: { ...built, from: { devcluster: 'build', kubectl: 'build' } } }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'FERRY_ERR_DEVCLUSTER_BINARY_MISSING');
        assert.match(err.message, /ferry-devcluster does not exist/);
        assert.match(err.message, /scripts\/setup\.sh/);
        assert.match(err.message, /FERRY_DEVCLUSTER/);
        return true;
      },
    );
    await assert.rejects(startDevCluster({ binaries: built }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'FERRY_ERR_DEVCLUSTER_BINARY_MISSING');
      assert.match(err.message, /fix FERRY_DEVCLUSTER/);
      return true;
    });
    // A file that is there but not executable.
    const notExecutable = path.join(dir, 'ferry-devcluster');
    fs.writeFileSync(notExecutable, '#!/bin/sh\n', { mode: 0o644 });
    await assert.rejects(
      startDevCluster({ binaries: devClusterBinariesFrom({ FERRY_DEVCLUSTER: notExecutable }) }),
      /is not an executable file/,
    );
    // Nothing was left behind: the check comes before any data directory is made.
    assert.deepEqual(fs.readdirSync(dir), ['ferry-devcluster']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('bad names, timeouts and non-empty data directories are refused before anything starts', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-devcluster-args-'));
  try {
    // /bin/true stands in for the binary: these refusals happen before it would be run.
    const binaries = devClusterBinariesFrom({ FERRY_DEVCLUSTER: '/bin/true', FERRY_KUBECTL: '/bin/true' });
    for (const name of ['', 'Upper', '-dash', 'a'.repeat(33), 'sp ace']) {
      await assert.rejects(startDevCluster({ name, binaries }), { code: 'FERRY_ERR_DEVCLUSTER_ARGUMENT' });
    }
    for (const timeoutMs of [0, -1, Number.NaN]) {
      await assert.rejects(startDevCluster({ timeoutMs, binaries }), { code: 'FERRY_ERR_DEVCLUSTER_ARGUMENT' });
    }
    fs.writeFileSync(path.join(dir, 'precious'), 'keep me');
    await assert.rejects(startDevCluster({ dataDir: dir, binaries }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'FERRY_ERR_DEVCLUSTER_ARGUMENT');
      assert.match(err.message, /is not empty \(precious/);
      return true;
    });
    assert.equal(fs.readFileSync(path.join(dir, 'precious'), 'utf8'), 'keep me');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a binary that exits at once fails the start with its exit and its log, and leaves no data directory', async () => {
  // A stand-in shell script for the binary: the real one cannot be made to fail at start on demand.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-devcluster-exits-'));
  try {
    const fake = path.join(dir, 'fails');
    fs.writeFileSync(fake, '#!/bin/sh\necho "serve: cannot start: the reason" >&2\nexit 3\n', { mode: 0o755 });
    const dataDir = path.join(dir, 'data');
    await assert.rejects(
      startDevCluster({ dataDir, binaries: devClusterBinariesFrom({ FERRY_DEVCLUSTER: fake }), timeoutMs: 10_000 }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'FERRY_ERR_DEVCLUSTER_START');
        assert.match(err.message, /exited with code 3/);
        assert.match(err.message, /serve: cannot start: the reason/);
        return true;
      },
    );
    assert.equal(fs.existsSync(dataDir), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
