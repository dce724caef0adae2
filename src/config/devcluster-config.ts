// Where the dev cluster's binaries are: FERRY_DEVCLUSTER and FERRY_KUBECTL, or what scripts/build-devcluster.sh
// builds into build/devcluster/ of this checkout.
import * as path from 'node:path';
import { ConfigError } from './errors';

/** A program and the arguments that come before the caller's (for `ferry-devcluster kubectl ...`). */
export interface CommandLine {
  command: string;
  args: string[];
}

export interface DevClusterBinaries {
  /** The ferry-devcluster binary (`serve`, `kubectl`, `version`). */
  devcluster: string;
  /** kubectl of the same release. */
  kubectl: CommandLine;
  /** The Gateway API standard-channel CRD files the build copied beside the binary (`../crds/gateway-api`). */
  gatewayApiCrdDir: string;
  /** Which of the two came from the environment, for messages that tell the user what to fix. */
  from: { devcluster: 'FERRY_DEVCLUSTER' | 'build'; kubectl: 'FERRY_KUBECTL' | 'FERRY_DEVCLUSTER' | 'build' };
}

// This file runs as <repo>/dist/src/config/devcluster-config.js.
const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const DEV_CLUSTER_BUILD_DIR = path.join(REPO_ROOT, 'build', 'devcluster');

/**
 * The dev cluster's binaries. FERRY_DEVCLUSTER names the ferry-devcluster binary and FERRY_KUBECTL a kubectl;
 * with only FERRY_DEVCLUSTER set, kubectl is that binary's `kubectl` subcommand. Relative paths are taken from
 * the working directory. Whether the files exist is the launcher's question, asked when it starts one.
 */
export function devClusterBinariesFrom(env: NodeJS.ProcessEnv = process.env): DevClusterBinaries {
  const devclusterEnv = pathFromEnv(env, 'FERRY_DEVCLUSTER');
  const kubectlEnv = pathFromEnv(env, 'FERRY_KUBECTL');
  const devcluster = devclusterEnv ?? path.join(DEV_CLUSTER_BUILD_DIR, 'bin', 'ferry-devcluster');
  let kubectl: CommandLine;
  let kubectlFrom: DevClusterBinaries['from']['kubectl'];
  if (kubectlEnv !== undefined) {
    kubectl = { command: kubectlEnv, args: [] };
    kubectlFrom = 'FERRY_KUBECTL';
  } else if (devclusterEnv !== undefined) {
    kubectl = { command: devclusterEnv, args: ['kubectl'] };
    kubectlFrom = 'FERRY_DEVCLUSTER';
  } else {
    kubectl = { command: path.join(DEV_CLUSTER_BUILD_DIR, 'bin', 'kubectl'), args: [] };
    kubectlFrom = 'build';
  }
  return {
    devcluster,
    kubectl,
    gatewayApiCrdDir: path.join(path.dirname(devcluster), '..', 'crds', 'gateway-api'),
    from: { devcluster: devclusterEnv !== undefined ? 'FERRY_DEVCLUSTER' : 'build', kubectl: kubectlFrom },
  };
}

function pathFromEnv(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name];
  if (value === undefined) return undefined;
  if (value.trim() === '' || value.includes('\0')) {
    throw new ConfigError(`${name} is set but is not a path (got ${JSON.stringify(value)}); unset it or name the binary`);
  }
  return path.resolve(value);
}
