// Agent configuration: the only module that reads process.env. Everything else receives values.
export { PORTS, SOCKET_MARK } from './ports';
export { agentConfigFrom, sandboxPrefixFrom, type AgentConfig, type AgentOptions } from './agent-config';
export { CONFIG_ERROR_CODES, ConfigError } from './errors';
