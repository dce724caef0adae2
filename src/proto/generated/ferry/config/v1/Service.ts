// Original file: proto/ferry/config/v1/config.proto

import type { ServicePort as _ferry_config_v1_ServicePort, ServicePort__Output as _ferry_config_v1_ServicePort__Output } from '../../../ferry/config/v1/ServicePort';

/**
 * As src/state/model.ts Service.
 */
export interface Service {
  'namespace'?: (string);
  'name'?: (string);
  /**
   * name.namespace.svc.cluster.local
   */
  'hostname'?: (string);
  'vips'?: (string)[];
  'ports'?: (_ferry_config_v1_ServicePort)[];
}

/**
 * As src/state/model.ts Service.
 */
export interface Service__Output {
  'namespace': (string);
  'name': (string);
  /**
   * name.namespace.svc.cluster.local
   */
  'hostname': (string);
  'vips': (string)[];
  'ports': (_ferry_config_v1_ServicePort__Output)[];
}
