// The collections Ferry's controller watches, cluster-wide: Namespaces, Pods, Services, EndpointSlices and
// Istio's AuthorizationPolicy and PeerAuthentication (security.istio.io/v1).
import {
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type V1EndpointSlice,
  type V1Namespace,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import type { Logger } from '../telemetry';
import { WatchedResource, type WatchedResourceStats } from './watched-resource';

export const ISTIO_SECURITY_GROUP = 'security.istio.io';
export const ISTIO_SECURITY_VERSION = 'v1';

/** A custom object as the API returns it: typed only as far as every object is. */
export type CustomObject = KubernetesObject & { spec?: unknown };

export interface ClusterWatch {
  namespaces: WatchedResource<V1Namespace>;
  pods: WatchedResource<V1Pod>;
  services: WatchedResource<V1Service>;
  endpointSlices: WatchedResource<V1EndpointSlice>;
  authorizationPolicies: WatchedResource<CustomObject>;
  peerAuthentications: WatchedResource<CustomObject>;
}

export interface ClusterWatchOptions {
  kubeConfig: KubeConfig;
  log: Logger;
  backoffStartMs?: number;
  backoffCapMs?: number;
}

export function createClusterWatch(options: ClusterWatchOptions): ClusterWatch {
  const core = options.kubeConfig.makeApiClient(CoreV1Api);
  const discovery = options.kubeConfig.makeApiClient(DiscoveryV1Api);
  const custom = options.kubeConfig.makeApiClient(CustomObjectsApi);
  const watched = <T extends KubernetesObject>(path: string, list: () => Promise<KubernetesListObject<T>>): WatchedResource<T> =>
    new WatchedResource<T>({ ...options, path, list });
  const istio = (plural: string): WatchedResource<CustomObject> =>
    watched<CustomObject>(
      `/apis/${ISTIO_SECURITY_GROUP}/${ISTIO_SECURITY_VERSION}/${plural}`,
      async () =>
        (await custom.listClusterCustomObject({
          group: ISTIO_SECURITY_GROUP,
          version: ISTIO_SECURITY_VERSION,
          plural,
        })) as KubernetesListObject<CustomObject>,
    );
  return {
    namespaces: watched('/api/v1/namespaces', () => core.listNamespace()),
    pods: watched('/api/v1/pods', () => core.listPodForAllNamespaces()),
    services: watched('/api/v1/services', () => core.listServiceForAllNamespaces()),
    endpointSlices: watched('/apis/discovery.k8s.io/v1/endpointslices', () => discovery.listEndpointSliceForAllNamespaces()),
    authorizationPolicies: istio('authorizationpolicies'),
    peerAuthentications: istio('peerauthentications'),
  };
}

export function watchedResources(watch: ClusterWatch): WatchedResource<KubernetesObject>[] {
  return Object.values(watch) as WatchedResource<KubernetesObject>[];
}

export function clusterWatchStats(watch: ClusterWatch): Record<string, WatchedResourceStats> {
  return Object.fromEntries(
    Object.entries(watch).map(([name, resource]) => [name, (resource as WatchedResource<KubernetesObject>).stats()]),
  );
}
