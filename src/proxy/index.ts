// src/proxy: the node proxy's listeners, relay and connection tracking.
export { NodeProxy, type AccessRecord, type NodeProxyDeps } from './node-proxy';
export { relay, type RelayResult } from './relay';
export { ConnectionTracker, type TrackedConnection } from './connection-tracker';
export type {
  DestinationResolver, Dialer, OriginalDestinationSource, PodListenerFds, ProxyPod, SocketAddress,
} from './types';
