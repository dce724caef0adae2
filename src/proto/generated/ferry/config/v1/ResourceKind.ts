// Original file: proto/ferry/config/v1/config.proto

export const ResourceKind = {
  RESOURCE_KIND_UNSPECIFIED: 'RESOURCE_KIND_UNSPECIFIED',
  /**
   * Named by uid ("namespace/name").
   */
  WORKLOAD: 'WORKLOAD',
  /**
   * Named "namespace/name".
   */
  SERVICE: 'SERVICE',
  /**
   * Named "namespace/name".
   */
  AUTHORIZATION_POLICY: 'AUTHORIZATION_POLICY',
  /**
   * Named "namespace/name".
   */
  PEER_AUTHENTICATION: 'PEER_AUTHENTICATION',
} as const;

export type ResourceKind =
  | 'RESOURCE_KIND_UNSPECIFIED'
  | 0
  /**
   * Named by uid ("namespace/name").
   */
  | 'WORKLOAD'
  | 1
  /**
   * Named "namespace/name".
   */
  | 'SERVICE'
  | 2
  /**
   * Named "namespace/name".
   */
  | 'AUTHORIZATION_POLICY'
  | 3
  /**
   * Named "namespace/name".
   */
  | 'PEER_AUTHENTICATION'
  | 4

export type ResourceKind__Output = typeof ResourceKind[keyof typeof ResourceKind]
