// Original file: proto/ferry/ca/v1/ca.proto

import type { RotationPhase as _ferry_ca_v1_RotationPhase, RotationPhase__Output as _ferry_ca_v1_RotationPhase__Output } from '../../../ferry/ca/v1/RotationPhase';
import type { Long } from '@grpc/proto-loader';

export interface TrustBundle {
  /**
   * Trusted root certificates, PEM, oldest first.
   */
  'rootsPem'?: (string)[];
  'phase'?: (_ferry_ca_v1_RotationPhase);
  /**
   * Incremented by every change of the CA; a watcher compares this one number.
   */
  'generation'?: (number | string | Long);
  /**
   * Id of the authority that signs now (root-N or intermediate-N): when it changes, agents
   * re-issue their certificates.
   */
  'issuer'?: (string);
  'trustDomain'?: (string);
}

export interface TrustBundle__Output {
  /**
   * Trusted root certificates, PEM, oldest first.
   */
  'rootsPem': (string)[];
  'phase': (_ferry_ca_v1_RotationPhase__Output);
  /**
   * Incremented by every change of the CA; a watcher compares this one number.
   */
  'generation': (string);
  /**
   * Id of the authority that signs now (root-N or intermediate-N): when it changes, agents
   * re-issue their certificates.
   */
  'issuer': (string);
  'trustDomain': (string);
}
