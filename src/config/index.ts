// Agent configuration: the only module that reads process.env. Everything else receives values.
export { DELIVERY, PORTS, SOCKET_MARK } from './ports';
export {
  AGENT_LIMITS,
  DEFAULT_TOKEN_FILE,
  agentConfigFrom,
  sandboxPrefixFrom,
  type AgentConfig,
  type AgentLimits,
  type AgentOptions,
  type ControllerSettings,
} from './agent-config';
export { DEV_CLUSTER_BUILD_DIR, devClusterBinariesFrom, type CommandLine, type DevClusterBinaries } from './devcluster-config';
export { CONFIG_ERROR_CODES, ConfigError } from './errors';
