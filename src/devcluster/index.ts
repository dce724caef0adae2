// src/devcluster: start and stop a dev cluster (the Go ferry-devcluster binary: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler on loopback) and install the Gateway API CRDs into it.
export { startDevCluster, type DevCluster, type DevClusterOptions } from './launcher';
export { installGatewayApiCrds, type GatewayApiCrds, type InstallGatewayApiCrdsOptions } from './gateway-api';
export type { KubectlResult } from './kubectl';
export {
  DEVCLUSTER_ERROR_CODES,
  DevClusterArgumentError,
  DevClusterBinaryMissingError,
  DevClusterCrdError,
  DevClusterError,
  DevClusterStartError,
  DevClusterStopError,
  type DevClusterErrorCode,
} from './errors';
