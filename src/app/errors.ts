// Errors of src/app (the agent's wiring), with stable codes.
import { FerryError } from '../errors';

export const APP_ERROR_CODES = {
  FERRY_ERR_AGENT_RUNTIME:
    'the agent refuses to run on this Node.js: its HTTP/2 stack lacks fixes the HBONE servers depend on (the message says which version is needed)',
} as const;

export class AgentRuntimeError extends FerryError<'FERRY_ERR_AGENT_RUNTIME'> {
  constructor(message: string) {
    super('FERRY_ERR_AGENT_RUNTIME', message);
  }
}
