// Errors of src/policy, with stable codes.
import { FerryError } from '../errors';

export const POLICY_ERROR_CODES = {
  FERRY_ERR_POLICY_INVALID:
    'an AuthorizationPolicy or PeerAuthentication is malformed or uses an unsupported feature; the message lists each field path',
} as const;

/** One thing wrong with a policy document; `path` is relative to the document root. */
export interface PolicyProblem {
  path: (string | number)[];
  message: string;
}

/** Thrown where a policy must already be valid (PolicySet over snapshot data) and is not. */
export class PolicyError extends FerryError<'FERRY_ERR_POLICY_INVALID'> {
  constructor(
    message: string,
    readonly problems: readonly PolicyProblem[] = [],
    options?: { cause?: unknown },
  ) {
    super('FERRY_ERR_POLICY_INVALID', message, options);
  }
}
