// Original file: proto/ferry/config/v1/config.proto

import type { ResourceError as _ferry_config_v1_ResourceError, ResourceError__Output as _ferry_config_v1_ResourceError__Output } from '../../../ferry/config/v1/ResourceError';

export interface Ack {
  /**
   * The nonce of the push this answers.
   */
  'nonce'?: (string);
  /**
   * Empty: ACK, every resource of the push applied. Otherwise NACK: these were refused, the rest applied.
   */
  'rejected'?: (_ferry_config_v1_ResourceError)[];
}

export interface Ack__Output {
  /**
   * The nonce of the push this answers.
   */
  'nonce': (string);
  /**
   * Empty: ACK, every resource of the push applied. Otherwise NACK: these were refused, the rest applied.
   */
  'rejected': (_ferry_config_v1_ResourceError__Output)[];
}
