// Original file: proto/ferry/config/v1/config.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { AgentMessage as _ferry_config_v1_AgentMessage, AgentMessage__Output as _ferry_config_v1_AgentMessage__Output } from '../../../ferry/config/v1/AgentMessage';
import type { ControllerMessage as _ferry_config_v1_ControllerMessage, ControllerMessage__Output as _ferry_config_v1_ControllerMessage__Output } from '../../../ferry/config/v1/ControllerMessage';

/**
 * Like Envoy's delta xDS (DeltaAggregatedResources), reduced to what Ferry needs:
 * 
 * 1. The agent opens Stream with `authorization: Bearer <projected service-account token>` metadata and sends
 * Hello, listing every resource it already holds with its version (after a restart of either side).
 * 2. The controller answers with a push: the resources whose version differs from the agent's, and the names the
 * agent holds that no longer exist. The first push names the agent's node, taken from the authenticated
 * identity, never from anything the agent sent. Pushes that complete the initial sync carry `synced`.
 * 3. The agent answers every push with an Ack naming its nonce: `rejected` empty is an ACK; otherwise a NACK
 * naming each resource it refused and why. The rest of the push is applied either way, and the rejected
 * resources keep their previous version (or stay absent).
 * 4. At most one push per stream is unacknowledged. Changes made meanwhile are coalesced: the next push carries
 * the latest version of each changed resource once.
 */
export interface ConfigServiceClient extends grpc.Client {
  Stream(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_ferry_config_v1_AgentMessage, _ferry_config_v1_ControllerMessage__Output>;
  Stream(options?: grpc.CallOptions): grpc.ClientDuplexStream<_ferry_config_v1_AgentMessage, _ferry_config_v1_ControllerMessage__Output>;
  stream(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_ferry_config_v1_AgentMessage, _ferry_config_v1_ControllerMessage__Output>;
  stream(options?: grpc.CallOptions): grpc.ClientDuplexStream<_ferry_config_v1_AgentMessage, _ferry_config_v1_ControllerMessage__Output>;
  
}

/**
 * Like Envoy's delta xDS (DeltaAggregatedResources), reduced to what Ferry needs:
 * 
 * 1. The agent opens Stream with `authorization: Bearer <projected service-account token>` metadata and sends
 * Hello, listing every resource it already holds with its version (after a restart of either side).
 * 2. The controller answers with a push: the resources whose version differs from the agent's, and the names the
 * agent holds that no longer exist. The first push names the agent's node, taken from the authenticated
 * identity, never from anything the agent sent. Pushes that complete the initial sync carry `synced`.
 * 3. The agent answers every push with an Ack naming its nonce: `rejected` empty is an ACK; otherwise a NACK
 * naming each resource it refused and why. The rest of the push is applied either way, and the rejected
 * resources keep their previous version (or stay absent).
 * 4. At most one push per stream is unacknowledged. Changes made meanwhile are coalesced: the next push carries
 * the latest version of each changed resource once.
 */
export interface ConfigServiceHandlers extends grpc.UntypedServiceImplementation {
  Stream: grpc.handleBidiStreamingCall<_ferry_config_v1_AgentMessage__Output, _ferry_config_v1_ControllerMessage>;
  
}

export interface ConfigServiceDefinition extends grpc.ServiceDefinition {
  Stream: MethodDefinition<_ferry_config_v1_AgentMessage, _ferry_config_v1_ControllerMessage, _ferry_config_v1_AgentMessage__Output, _ferry_config_v1_ControllerMessage__Output>
}
