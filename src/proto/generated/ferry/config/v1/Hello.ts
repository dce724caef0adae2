// Original file: proto/ferry/config/v1/config.proto

import type { ResourceVersion as _ferry_config_v1_ResourceVersion, ResourceVersion__Output as _ferry_config_v1_ResourceVersion__Output } from '../../../ferry/config/v1/ResourceVersion';

export interface Hello {
  /**
   * What the agent holds (kept from an earlier stream): the controller sends only what differs. Empty on a
   * first start. The versions are the ones the controller sent; an agent that sends a wrong one gets the
   * resource again, nothing worse.
   */
  'initialResourceVersions'?: (_ferry_config_v1_ResourceVersion)[];
}

export interface Hello__Output {
  /**
   * What the agent holds (kept from an earlier stream): the controller sends only what differs. Empty on a
   * first start. The versions are the ones the controller sent; an agent that sends a wrong one gets the
   * resource again, nothing worse.
   */
  'initialResourceVersions': (_ferry_config_v1_ResourceVersion__Output)[];
}
