// Errors of src/config-client, with stable codes. The source reports them in its logs and stats; none is thrown
// to the agent, which keeps its configuration while the controller is away.
import { FerryError } from '../errors';

export const CONFIG_CLIENT_ERROR_CODES = {
  FERRY_ERR_CONFIG_CLIENT_CREDENTIALS: 'the token or CA file for the controller could not be read',
  FERRY_ERR_CONFIG_CLIENT_STREAM: 'the config stream to the controller ended or could not be opened',
  FERRY_ERR_CONFIG_CLIENT_NODE_MISMATCH: 'the controller named a node other than the one the agent runs on',
} as const;

export class ConfigClientError extends FerryError<keyof typeof CONFIG_CLIENT_ERROR_CODES> {}
