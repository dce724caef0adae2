// Error registry of src/cli: what `ferry inspect` raises itself (other modules' errors pass through).
import { FerryError } from '../errors';

export const CLI_ERROR_CODES = {
  FERRY_ERR_CLI_ARGUMENT:
    'a command-line argument is invalid: a URL that is not http(s), an unknown sandbox node or inspect kind, an option ' +
    'that needs another one',
  FERRY_ERR_CLI_UNREACHABLE:
    "an agent's admin API or metrics endpoint does not answer (refused, timed out, or its namespace is gone); the message " +
    'names the agent and whether it is running',
  FERRY_ERR_CLI_ANSWER:
    'an agent answered, but not with what the command reads: an HTTP status other than 200, or JSON that is not the ' +
    "admin API's shape (src/app/admin-types.ts)",
} as const;

type CliCode = keyof typeof CLI_ERROR_CODES;

function cliError(code: CliCode) {
  return class extends FerryError<CliCode> {
    constructor(message: string, options?: { cause?: unknown }) {
      super(code, message, options);
    }
  };
}

export class CliArgumentError extends cliError('FERRY_ERR_CLI_ARGUMENT') {}
export class CliUnreachableError extends cliError('FERRY_ERR_CLI_UNREACHABLE') {}
export class CliAnswerError extends cliError('FERRY_ERR_CLI_ANSWER') {}
