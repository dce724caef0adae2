// src/k8s: Kubernetes on Ferry's side — the mesh-membership rules shared by the controller and the sandbox's
// YAML loader, the translation of API objects into Ferry's model, and informers that survive the API server.
export {
  DEFAULT_NAMESPACE,
  DEFAULT_SERVICE_ACCOUNT,
  EXCLUDE_OUTBOUND_CIDRS_ANNOTATION,
  EXCLUDE_OUTBOUND_CIDRS_MAX,
  EXCLUDE_OUTBOUND_PORTS_ANNOTATION,
  EXCLUDE_OUTBOUND_PORTS_MAX,
  FERRY_ANNOTATION_PREFIX,
  MESH_ANNOTATION,
  NAMESPACE_ANNOTATIONS,
  POD_ANNOTATIONS,
  ferryAnnotationProblems,
  meshEnabledFor,
  parseExcludedCidrs,
  parseExcludedPorts,
  type Checked,
  type ObjectProblem,
} from './mesh-rules';
export {
  CLUSTER_DOMAIN,
  SERVICE_NAME_LABEL,
  authorizationPolicyFromK8s,
  objectRef,
  peerAuthenticationFromK8s,
  serviceFromK8s,
  workloadFromPod,
  type Translation,
} from './translate';
export { WatchedResource, type ResourceEvent, type WatchedResourceOptions, type WatchedResourceStats } from './watched-resource';
export {
  ISTIO_SECURITY_GROUP,
  ISTIO_SECURITY_VERSION,
  clusterWatchStats,
  createClusterWatch,
  watchedResources,
  type ClusterWatch,
  type ClusterWatchOptions,
  type CustomObject,
} from './cluster-watch';
