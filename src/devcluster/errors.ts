// Errors of src/devcluster, with stable codes. Messages name the binary, the data directory or the object and
// carry the end of the cluster's log when the cluster itself failed.
import { FerryError } from '../errors';

export const DEVCLUSTER_ERROR_CODES = {
  FERRY_ERR_DEVCLUSTER_BINARY_MISSING:
    'the ferry-devcluster binary (or kubectl) is not there or not executable: run scripts/setup.sh, or set FERRY_DEVCLUSTER / FERRY_KUBECTL',
  FERRY_ERR_DEVCLUSTER_ARGUMENT: 'startDevCluster was given an invalid option, e.g. a data directory that is not empty',
  FERRY_ERR_DEVCLUSTER_START: 'the dev cluster exited or did not become usable before the deadline; the message ends with its log',
  FERRY_ERR_DEVCLUSTER_STOP: 'the dev cluster process did not exit even after SIGKILL, or its data directory could not be removed',
  FERRY_ERR_DEVCLUSTER_CRDS: 'CRD files are missing or unreadable, or applying them or waiting for Established failed',
} as const;

export type DevClusterErrorCode = keyof typeof DEVCLUSTER_ERROR_CODES;

export class DevClusterError extends FerryError<DevClusterErrorCode> {}

export class DevClusterBinaryMissingError extends DevClusterError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_ERR_DEVCLUSTER_BINARY_MISSING', message, options);
  }
}

export class DevClusterArgumentError extends DevClusterError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_ERR_DEVCLUSTER_ARGUMENT', message, options);
  }
}

export class DevClusterStartError extends DevClusterError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_ERR_DEVCLUSTER_START', message, options);
  }
}

export class DevClusterStopError extends DevClusterError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_ERR_DEVCLUSTER_STOP', message, options);
  }
}

export class DevClusterCrdError extends DevClusterError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_ERR_DEVCLUSTER_CRDS', message, options);
  }
}
