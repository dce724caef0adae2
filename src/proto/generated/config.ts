import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { Ack as _ferry_config_v1_Ack, Ack__Output as _ferry_config_v1_Ack__Output } from './ferry/config/v1/Ack';
import type { AgentMessage as _ferry_config_v1_AgentMessage, AgentMessage__Output as _ferry_config_v1_AgentMessage__Output } from './ferry/config/v1/AgentMessage';
import type { ConfigServiceClient as _ferry_config_v1_ConfigServiceClient, ConfigServiceDefinition as _ferry_config_v1_ConfigServiceDefinition } from './ferry/config/v1/ConfigService';
import type { ControllerMessage as _ferry_config_v1_ControllerMessage, ControllerMessage__Output as _ferry_config_v1_ControllerMessage__Output } from './ferry/config/v1/ControllerMessage';
import type { Endpoint as _ferry_config_v1_Endpoint, Endpoint__Output as _ferry_config_v1_Endpoint__Output } from './ferry/config/v1/Endpoint';
import type { Hello as _ferry_config_v1_Hello, Hello__Output as _ferry_config_v1_Hello__Output } from './ferry/config/v1/Hello';
import type { Resource as _ferry_config_v1_Resource, Resource__Output as _ferry_config_v1_Resource__Output } from './ferry/config/v1/Resource';
import type { ResourceError as _ferry_config_v1_ResourceError, ResourceError__Output as _ferry_config_v1_ResourceError__Output } from './ferry/config/v1/ResourceError';
import type { ResourceName as _ferry_config_v1_ResourceName, ResourceName__Output as _ferry_config_v1_ResourceName__Output } from './ferry/config/v1/ResourceName';
import type { ResourceVersion as _ferry_config_v1_ResourceVersion, ResourceVersion__Output as _ferry_config_v1_ResourceVersion__Output } from './ferry/config/v1/ResourceVersion';
import type { Service as _ferry_config_v1_Service, Service__Output as _ferry_config_v1_Service__Output } from './ferry/config/v1/Service';
import type { ServicePort as _ferry_config_v1_ServicePort, ServicePort__Output as _ferry_config_v1_ServicePort__Output } from './ferry/config/v1/ServicePort';
import type { Workload as _ferry_config_v1_Workload, Workload__Output as _ferry_config_v1_Workload__Output } from './ferry/config/v1/Workload';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  ferry: {
    config: {
      v1: {
        Ack: MessageTypeDefinition<_ferry_config_v1_Ack, _ferry_config_v1_Ack__Output>
        AgentMessage: MessageTypeDefinition<_ferry_config_v1_AgentMessage, _ferry_config_v1_AgentMessage__Output>
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
        ConfigService: SubtypeConstructor<typeof grpc.Client, _ferry_config_v1_ConfigServiceClient> & { service: _ferry_config_v1_ConfigServiceDefinition }
        ControllerMessage: MessageTypeDefinition<_ferry_config_v1_ControllerMessage, _ferry_config_v1_ControllerMessage__Output>
        Endpoint: MessageTypeDefinition<_ferry_config_v1_Endpoint, _ferry_config_v1_Endpoint__Output>
        Hello: MessageTypeDefinition<_ferry_config_v1_Hello, _ferry_config_v1_Hello__Output>
        Resource: MessageTypeDefinition<_ferry_config_v1_Resource, _ferry_config_v1_Resource__Output>
        ResourceError: MessageTypeDefinition<_ferry_config_v1_ResourceError, _ferry_config_v1_ResourceError__Output>
        ResourceKind: EnumTypeDefinition
        ResourceName: MessageTypeDefinition<_ferry_config_v1_ResourceName, _ferry_config_v1_ResourceName__Output>
        ResourceVersion: MessageTypeDefinition<_ferry_config_v1_ResourceVersion, _ferry_config_v1_ResourceVersion__Output>
        Service: MessageTypeDefinition<_ferry_config_v1_Service, _ferry_config_v1_Service__Output>
        ServicePort: MessageTypeDefinition<_ferry_config_v1_ServicePort, _ferry_config_v1_ServicePort__Output>
        Workload: MessageTypeDefinition<_ferry_config_v1_Workload, _ferry_config_v1_Workload__Output>
      }
    }
  }
}

