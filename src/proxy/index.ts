// src/proxy: the node proxy's listeners, HBONE client and server, relay and connection tracking.
export {
  NodeProxy,
  PROXY_LIMIT_DEFAULTS,
  type AccessRecord,
  type HboneOptions,
  type NodeProxyDeps,
  type ProxyLimits,
  type ProxyPath,
  type RefusalReason,
} from './node-proxy';
export { relay, resetEnd, type RelayResult } from './relay';
export { ConnectionTracker, type AuthorizationContext, type ConnectionDescription, type TrackedConnection } from './connection-tracker';
export {
  HBONE_POOL_DEFAULTS,
  HbonePool,
  type HboneOpenRequest,
  type HbonePeerBackoff,
  type HbonePeerStats,
  type HbonePoolCounters,
  type HbonePoolOptions,
  type HbonePoolStats,
  type HboneRequestHeaders,
} from './hbone-pool';
export {
  HBONE_SERVER_DEFAULTS,
  HboneListener,
  hboneServerLimits,
  type HboneInboundStream,
  type HboneListenerDeps,
  type HboneListenerStats,
  type HboneServerLimits,
} from './hbone-server';
export {
  HBONE_ADMISSION_DEFAULTS,
  HboneAdmission,
  type AdmittedHandshake,
  type HboneAdmissionLimits,
  type HboneAdmissionStats,
} from './hbone-admission';
export { GUARD_CODES, HTTP2_GUARD_DEFAULTS, type Http2GuardLimits, type Http2GuardViolation } from './http2-guard';
export { http2RuntimeProblem } from './http2-runtime';
export {
  HBONE_FLOW,
  HBONE_MAX_STREAMS,
  HBONE_TUNNEL_BUFFER_BYTES,
  forwardedFor,
  newTraceparent,
  sourceBaggage,
  streamWindowFor,
} from './hbone-protocol';
export {
  PROXY_ERROR_CODES,
  HboneDialError,
  HboneError,
  HboneIdentityError,
  HboneNoIdentityError,
  HbonePoolClosedError,
  HboneStatusError,
  HboneStreamError,
  HboneTlsError,
  ProxyOptionsError,
  StreamResetError,
} from './errors';
export type {
  AuthorizationVerdict,
  DestinationResolver,
  DialOptions,
  Dialer,
  IdentityContexts,
  InboundAuthorizer,
  InboundSource,
  OriginalDestinationSource,
  PeerIdentity,
  PodListenerFds,
  ProxyPod,
  SocketAddress,
  SocketOptions,
  TlsProvider,
} from './types';
