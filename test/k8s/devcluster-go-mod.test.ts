// devcluster/go.mod stays derived from k8s.io/kubernetes: its replaces are exactly the staging modules of the
// pinned release's own go.mod (read from the Go module cache the build filled), at that release's v0.X.Y, and
// etcd is the version that release requires. Also: the Go sources are gofmt-clean.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

const REPO = path.resolve(__dirname, '..', '..', '..');
const DEVCLUSTER = path.join(REPO, 'devcluster');

interface ModuleVersion {
  Path: string;
  Version?: string;
}
interface GoMod {
  Require: ModuleVersion[] | null;
  Replace: Array<{ Old: ModuleVersion; New: ModuleVersion }> | null;
}

function go(args: string[], cwd = DEVCLUSTER): string {
  try {
    return execFileSync('go', args, { cwd, encoding: 'utf8' });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    assert.fail(
      `go ${args.join(' ')} (in ${cwd}): ${e.stderr ?? e.message}; the build (scripts/build-devcluster.sh) needs Go and fills the module cache`,
    );
  }
}

/** go.mod parsed by the go command itself. */
function readGoMod(file: string): GoMod {
  return JSON.parse(go(['mod', 'edit', '-json', file])) as GoMod;
}

function required(mod: GoMod, modulePath: string): string {
  const version = mod.Require?.find((r) => r.Path === modulePath)?.Version;
  assert.ok(version !== undefined, `${modulePath} is not required`);
  return version;
}

test("devcluster/go.mod's replaces are exactly the staging modules of the pinned k8s.io/kubernetes", () => {
  const ours = readGoMod(path.join(DEVCLUSTER, 'go.mod'));
  const kubernetesVersion = required(ours, 'k8s.io/kubernetes');
  const match = /^v1\.(\d+\.\d+)$/.exec(kubernetesVersion);
  assert.ok(match, `k8s.io/kubernetes ${kubernetesVersion} is not a v1.X.Y release`);
  const stagingVersion = `v0.${match[1]}`;

  // From the module cache, which the build filled (or the Go module proxy when FERRY_DEVCLUSTER spared the build).
  const download = JSON.parse(go(['mod', 'download', '-json', `k8s.io/kubernetes@${kubernetesVersion}`])) as { GoMod?: string };
  const upstreamFile = download.GoMod ?? '';
  assert.ok(fs.existsSync(upstreamFile), `no go.mod of k8s.io/kubernetes@${kubernetesVersion} in the module cache (${upstreamFile})`);
  const upstream = readGoMod(upstreamFile);
  const staging = (upstream.Replace ?? [])
    .filter((r) => r.New.Path === `./staging/src/${r.Old.Path}`)
    .map((r) => r.Old.Path)
    .sort();
  // The format check: a release without staging replaces would make the comparison below vacuous.
  assert.ok(staging.length >= 20 && staging.includes('k8s.io/client-go'), `only ${staging.length} staging replaces in ${upstreamFile}`);

  const replaces = (ours.Replace ?? [])
    .map((r) => `${r.Old.Path}${r.Old.Version ? `@${r.Old.Version}` : ''} => ${r.New.Path}@${r.New.Version}`)
    .sort();
  assert.deepEqual(
    replaces,
    staging.map((m) => `${m} => ${m}@${stagingVersion}`),
    'run devcluster/sync-staging.sh',
  );
  assert.equal(
    required(ours, 'go.etcd.io/etcd/server/v3'),
    required(upstream, 'go.etcd.io/etcd/server/v3'),
    'etcd: run devcluster/sync-staging.sh',
  );
});

test('the Gateway API module is pinned in go.mod and go.sum', () => {
  const ours = readGoMod(path.join(DEVCLUSTER, 'go.mod'));
  const version = required(ours, 'sigs.k8s.io/gateway-api');
  const sum = fs.readFileSync(path.join(DEVCLUSTER, 'go.sum'), 'utf8');
  assert.match(sum, new RegExp(`^sigs\\.k8s\\.io/gateway-api ${version.replace(/\./g, '\\.')} h1:`, 'm'));
});

test('devcluster/*.go is gofmt-clean', () => {
  const files = fs
    .readdirSync(DEVCLUSTER)
    .filter((f) => f.endsWith('.go'))
    .map((f) => path.join(DEVCLUSTER, f));
  assert.ok(files.length > 0);
  const gofmt = path.join(go(['env', 'GOROOT']).trim(), 'bin', 'gofmt');
  assert.equal(execFileSync(gofmt, ['-l', ...files], { encoding: 'utf8' }), '');
});
