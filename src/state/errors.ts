// Errors of src/state, with stable codes.
import { FerryError } from '../errors';

export const STATE_ERROR_CODES = {
  FERRY_ERR_STATE_SNAPSHOT: 'a cluster snapshot could not be read or does not have the expected shape',
} as const;

export class SnapshotError extends FerryError<'FERRY_ERR_STATE_SNAPSHOT'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_ERR_STATE_SNAPSHOT', message, options);
  }
}
