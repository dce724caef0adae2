// Original file: proto/ferry/config/v1/config.proto

import type { Resource as _ferry_config_v1_Resource, Resource__Output as _ferry_config_v1_Resource__Output } from '../../../ferry/config/v1/Resource';
import type { ResourceName as _ferry_config_v1_ResourceName, ResourceName__Output as _ferry_config_v1_ResourceName__Output } from '../../../ferry/config/v1/ResourceName';

export interface ControllerMessage {
  /**
   * Echoed by the agent's Ack.
   */
  'nonce'?: (string);
  /**
   * The controller's change counter after this push: for logs and debugging, never compared by the agent.
   */
  'systemVersion'?: (string);
  /**
   * Added or changed resources, each at its latest version.
   */
  'resources'?: (_ferry_config_v1_Resource)[];
  /**
   * Resources that no longer exist (or that the agent held and the controller never had).
   */
  'removed'?: (_ferry_config_v1_ResourceName)[];
  /**
   * On the first push of a stream: the node this agent serves, from its authenticated identity. The agent
   * enrols the workloads of this node only, and refuses the stream when it is not the node it runs on.
   */
  'node'?: (string);
  /**
   * After applying this push the agent holds everything the controller had when the stream started (true on
   * the push that completes the initial sync and on every push after it).
   */
  'synced'?: (boolean);
}

export interface ControllerMessage__Output {
  /**
   * Echoed by the agent's Ack.
   */
  'nonce': (string);
  /**
   * The controller's change counter after this push: for logs and debugging, never compared by the agent.
   */
  'systemVersion': (string);
  /**
   * Added or changed resources, each at its latest version.
   */
  'resources': (_ferry_config_v1_Resource__Output)[];
  /**
   * Resources that no longer exist (or that the agent held and the controller never had).
   */
  'removed': (_ferry_config_v1_ResourceName__Output)[];
  /**
   * On the first push of a stream: the node this agent serves, from its authenticated identity. The agent
   * enrols the workloads of this node only, and refuses the stream when it is not the node it runs on.
   */
  'node': (string);
  /**
   * After applying this push the agent holds everything the controller had when the stream started (true on
   * the push that completes the initial sync and on every push after it).
   */
  'synced': (boolean);
}
