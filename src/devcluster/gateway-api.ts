// Installs the Gateway API standard-channel CRDs (copied by scripts/build-devcluster.sh from the
// sigs.k8s.io/gateway-api module that devcluster/go.mod pins) into a running dev cluster.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { devClusterBinariesFrom } from '../config';
import { DevClusterCrdError } from './errors';
import type { DevCluster } from './launcher';

export interface GatewayApiCrds {
  /** The module version the files came from (the VERSION file beside them). */
  version: string;
  /** The applied files. */
  files: string[];
  /** Names of the CustomResourceDefinitions, all Established. */
  crds: string[];
}

export interface InstallGatewayApiCrdsOptions {
  /** Directory of the YAML files. Default: `crds/gateway-api` beside the binary's `bin/` (src/config). */
  dir?: string;
  /** How long the CRDs may take to become Established. Default: 60 s. */
  timeoutMs?: number;
}

/** `kubectl apply --server-side` of every file, then `kubectl wait --for=condition=Established` of every CRD in them. */
export async function installGatewayApiCrds(cluster: DevCluster, options: InstallGatewayApiCrdsOptions = {}): Promise<GatewayApiCrds> {
  const dir = options.dir ?? devClusterBinariesFrom().gatewayApiCrdDir;
  const timeoutMs = options.timeoutMs ?? 60_000;
  let files: string[];
  try {
    files = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.yaml'))
      .sort()
      .map((f) => path.join(dir, f));
  } catch (err) {
    throw new DevClusterCrdError(`Gateway API CRDs: cannot read ${dir}: ${(err as Error).message}; run scripts/build-devcluster.sh`, {
      cause: err,
    });
  }
  const version = readVersion(dir);
  const crds: string[] = [];
  for (const file of files) crds.push(...crdNames(file));
  if (crds.length === 0) throw new DevClusterCrdError(`Gateway API CRDs: no CustomResourceDefinition in ${dir}`);

  const applied = await cluster.kubectl(['apply', '--server-side', '--field-manager=ferry-devcluster', ...files.flatMap((f) => ['-f', f])]);
  if (applied.code !== 0) {
    throw new DevClusterCrdError(`Gateway API CRDs ${version}: kubectl apply failed (exit ${applied.code}): ${applied.stderr.trim()}`);
  }
  const waited = await cluster.kubectl([
    'wait',
    '--for=condition=Established',
    `--timeout=${Math.ceil(timeoutMs / 1000)}s`,
    ...crds.map((name) => `customresourcedefinition/${name}`),
  ]);
  if (waited.code !== 0) {
    throw new DevClusterCrdError(`Gateway API CRDs ${version}: not Established within ${timeoutMs} ms: ${waited.stderr.trim()}`);
  }
  return { version, files, crds };
}

function readVersion(dir: string): string {
  try {
    return fs.readFileSync(path.join(dir, 'VERSION'), 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** metadata.name of each CustomResourceDefinition document in a file. */
function crdNames(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new DevClusterCrdError(`Gateway API CRDs: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const names: string[] = [];
  parseAllDocuments(text).forEach((document, index) => {
    if (document.errors.length > 0) {
      throw new DevClusterCrdError(`Gateway API CRDs: ${file}: document ${index + 1}: ${document.errors[0].message}`);
    }
    const object = document.toJS() as { kind?: unknown; metadata?: { name?: unknown } } | null;
    if (object?.kind !== 'CustomResourceDefinition') return;
    const name = object.metadata?.name;
    if (typeof name !== 'string' || name === '') {
      throw new DevClusterCrdError(`Gateway API CRDs: ${file}: document ${index + 1}: metadata.name is missing`);
    }
    names.push(name);
  });
  return names;
}
