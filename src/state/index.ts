// src/state: the one in-memory model of workloads, services and policies that the agent reads.
export type { ClusterSnapshot, Endpoint, Service, ServicePort, Workload } from './model';
export { workloadUid } from './model';
export { ClusterState, type Destination } from './cluster-state';
export { parseSnapshot, readSnapshot, watchSnapshot, writeSnapshot } from './snapshot-file';
export { SnapshotError, STATE_ERROR_CODES } from './errors';
