// Original file: proto/ferry/config/v1/config.proto

import type { Endpoint as _ferry_config_v1_Endpoint, Endpoint__Output as _ferry_config_v1_Endpoint__Output } from '../../../ferry/config/v1/Endpoint';

export interface ServicePort {
  'name'?: (string);
  'port'?: (number);
  'endpoints'?: (_ferry_config_v1_Endpoint)[];
  '_name'?: "name";
}

export interface ServicePort__Output {
  'name'?: (string);
  'port': (number);
  'endpoints': (_ferry_config_v1_Endpoint__Output)[];
  '_name'?: "name";
}
