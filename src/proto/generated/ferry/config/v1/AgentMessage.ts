// Original file: proto/ferry/config/v1/config.proto

import type { Hello as _ferry_config_v1_Hello, Hello__Output as _ferry_config_v1_Hello__Output } from '../../../ferry/config/v1/Hello';
import type { Ack as _ferry_config_v1_Ack, Ack__Output as _ferry_config_v1_Ack__Output } from '../../../ferry/config/v1/Ack';

export interface AgentMessage {
  /**
   * First message of a stream, and only then.
   */
  'hello'?: (_ferry_config_v1_Hello | null);
  /**
   * Every later message.
   */
  'ack'?: (_ferry_config_v1_Ack | null);
  'message'?: "hello"|"ack";
}

export interface AgentMessage__Output {
  /**
   * First message of a stream, and only then.
   */
  'hello'?: (_ferry_config_v1_Hello__Output | null);
  /**
   * Every later message.
   */
  'ack'?: (_ferry_config_v1_Ack__Output | null);
  'message'?: "hello"|"ack";
}
