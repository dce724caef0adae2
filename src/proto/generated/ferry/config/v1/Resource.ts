// Original file: proto/ferry/config/v1/config.proto

import type { ResourceKind as _ferry_config_v1_ResourceKind, ResourceKind__Output as _ferry_config_v1_ResourceKind__Output } from '../../../ferry/config/v1/ResourceKind';
import type { Workload as _ferry_config_v1_Workload, Workload__Output as _ferry_config_v1_Workload__Output } from '../../../ferry/config/v1/Workload';
import type { Service as _ferry_config_v1_Service, Service__Output as _ferry_config_v1_Service__Output } from '../../../ferry/config/v1/Service';

export interface Resource {
  'kind'?: (_ferry_config_v1_ResourceKind);
  'name'?: (string);
  /**
   * Opaque to the agent, compared for equality only. The controller derives it from the resource's content, so
   * a restarted controller gives unchanged resources the same versions and a resync moves nothing.
   */
  'version'?: (string);
  'workload'?: (_ferry_config_v1_Workload | null);
  'service'?: (_ferry_config_v1_Service | null);
  /**
   * AuthorizationPolicy and PeerAuthentication travel as the normalised model JSON of src/policy (UTF-8),
   * not as protobuf messages: their shape is owned and versioned by src/policy, whose JSON schema the agent
   * validates them against on receipt (and compiles them), so there is one definition of a policy, not two
   * that could drift.
   */
  'authorizationPolicyJson'?: (Buffer | Uint8Array | string);
  'peerAuthenticationJson'?: (Buffer | Uint8Array | string);
  'body'?: "workload"|"service"|"authorizationPolicyJson"|"peerAuthenticationJson";
}

export interface Resource__Output {
  'kind': (_ferry_config_v1_ResourceKind__Output);
  'name': (string);
  /**
   * Opaque to the agent, compared for equality only. The controller derives it from the resource's content, so
   * a restarted controller gives unchanged resources the same versions and a resync moves nothing.
   */
  'version': (string);
  'workload'?: (_ferry_config_v1_Workload__Output | null);
  'service'?: (_ferry_config_v1_Service__Output | null);
  /**
   * AuthorizationPolicy and PeerAuthentication travel as the normalised model JSON of src/policy (UTF-8),
   * not as protobuf messages: their shape is owned and versioned by src/policy, whose JSON schema the agent
   * validates them against on receipt (and compiles them), so there is one definition of a policy, not two
   * that could drift.
   */
  'authorizationPolicyJson'?: (Buffer);
  'peerAuthenticationJson'?: (Buffer);
  'body'?: "workload"|"service"|"authorizationPolicyJson"|"peerAuthenticationJson";
}
