// Original file: proto/ferry/config/v1/config.proto


export interface Endpoint {
  'ip'?: (string);
  /**
   * The target port on the endpoint.
   */
  'port'?: (number);
  /**
   * uid of the backing workload, when the controller knows it.
   */
  'workloadUid'?: (string);
  '_workloadUid'?: "workloadUid";
}

export interface Endpoint__Output {
  'ip': (string);
  /**
   * The target port on the endpoint.
   */
  'port': (number);
  /**
   * uid of the backing workload, when the controller knows it.
   */
  'workloadUid'?: (string);
  '_workloadUid'?: "workloadUid";
}
