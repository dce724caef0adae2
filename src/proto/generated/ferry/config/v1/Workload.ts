// Original file: proto/ferry/config/v1/config.proto


/**
 * A pod, as src/state/model.ts Workload.
 */
export interface Workload {
  /**
   * "namespace/name"; equal to the resource's name.
   */
  'uid'?: (string);
  'namespace'?: (string);
  'name'?: (string);
  'node'?: (string);
  'serviceAccount'?: (string);
  /**
   * IPv4 first when the pod has both families.
   */
  'ips'?: (string)[];
  'labels'?: ({[key: string]: string});
  /**
   * Namespace opted in and the pod not opted out: the node's agent enrols it.
   */
  'meshEnabled'?: (boolean);
  /**
   * Where the node finds the pod's network namespace. The controller leaves it empty: only the node knows it.
   */
  'netnsPath'?: (string);
  'excludeOutboundPorts'?: (number)[];
  'excludeOutboundCidrs'?: (string)[];
  '_netnsPath'?: "netnsPath";
}

/**
 * A pod, as src/state/model.ts Workload.
 */
export interface Workload__Output {
  /**
   * "namespace/name"; equal to the resource's name.
   */
  'uid': (string);
  'namespace': (string);
  'name': (string);
  'node': (string);
  'serviceAccount': (string);
  /**
   * IPv4 first when the pod has both families.
   */
  'ips': (string)[];
  'labels': ({[key: string]: string});
  /**
   * Namespace opted in and the pod not opted out: the node's agent enrols it.
   */
  'meshEnabled': (boolean);
  /**
   * Where the node finds the pod's network namespace. The controller leaves it empty: only the node knows it.
   */
  'netnsPath'?: (string);
  'excludeOutboundPorts': (number)[];
  'excludeOutboundCidrs': (string)[];
  '_netnsPath'?: "netnsPath";
}
