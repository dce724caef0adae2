// Original file: proto/ferry/config/v1/config.proto

import type { ResourceKind as _ferry_config_v1_ResourceKind, ResourceKind__Output as _ferry_config_v1_ResourceKind__Output } from '../../../ferry/config/v1/ResourceKind';

export interface ResourceError {
  'kind'?: (_ferry_config_v1_ResourceKind);
  'name'?: (string);
  /**
   * The version refused.
   */
  'version'?: (string);
  /**
   * Path of the offending field inside the resource, dotted ("ports[0].endpoints[2].ip"); empty for the whole.
   */
  'field'?: (string);
  'message'?: (string);
}

export interface ResourceError__Output {
  'kind': (_ferry_config_v1_ResourceKind__Output);
  'name': (string);
  /**
   * The version refused.
   */
  'version': (string);
  /**
   * Path of the offending field inside the resource, dotted ("ports[0].endpoints[2].ip"); empty for the whole.
   */
  'field': (string);
  'message': (string);
}
