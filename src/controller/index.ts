// src/controller: the parts of `ferry controller` that serve the agents.
export {
  CONFIG_SERVER_ERROR_CODES,
  ConfigServer,
  ConfigServerError,
  DEFAULT_CONFIG_SERVER_LIMITS,
  ResourceStore,
  type AgentAuthenticator,
  type AgentIdentity,
  type ConfigServerLimits,
  type ConfigServerOptions,
  type ConfigServerStats,
  type ResourceStoreOptions,
} from './config-server';
