// src/state: the one in-memory model of workloads, services and policies that the agent reads, the typed deltas
// that change it, and the ConfigSource interface its feeders (the controller's stream, memory in tests) implement.
export type { ClusterSnapshot, Endpoint, Service, ServicePort, Workload } from './model';
export { workloadUid } from './model';
export { ClusterState, type AppliedChange, type Destination } from './cluster-state';
export {
  DELTA_FIELDS,
  RESOURCE_KINDS,
  deltaOf,
  isEmptyDelta,
  resourceName,
  resourcesDelta,
  sameValue,
  snapshotDelta,
  type ResourceDelta,
  type ResourceKind,
  type ResourceSets,
  type ResourceTypes,
  type StateDelta,
} from './delta';
export {
  MemoryConfigSource,
  type ConfigSink,
  type ConfigSource,
  type ConfigUpdate,
} from './config-source';
export { validateResource, type ResourceProblem } from './validate-resource';
