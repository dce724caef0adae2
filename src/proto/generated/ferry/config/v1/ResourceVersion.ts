// Original file: proto/ferry/config/v1/config.proto

import type { ResourceKind as _ferry_config_v1_ResourceKind, ResourceKind__Output as _ferry_config_v1_ResourceKind__Output } from '../../../ferry/config/v1/ResourceKind';

export interface ResourceVersion {
  'kind'?: (_ferry_config_v1_ResourceKind);
  'name'?: (string);
  'version'?: (string);
}

export interface ResourceVersion__Output {
  'kind': (_ferry_config_v1_ResourceKind__Output);
  'name': (string);
  'version': (string);
}
