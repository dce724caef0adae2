// Original file: proto/ferry/ca/v1/ca.proto


export interface SignResponse {
  /**
   * Leaf first, then intermediates; never the root.
   */
  'chainPem'?: (string)[];
  /**
   * The roots the CA announces now (two during a rotation).
   */
  'trustBundlePem'?: (string)[];
}

export interface SignResponse__Output {
  /**
   * Leaf first, then intermediates; never the root.
   */
  'chainPem': (string)[];
  /**
   * The roots the CA announces now (two during a rotation).
   */
  'trustBundlePem': (string)[];
}
