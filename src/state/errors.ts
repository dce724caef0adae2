// Errors of src/state, with stable codes.

export const STATE_ERROR_CODES = {
  FERRY_ERR_STATE_SNAPSHOT: 'a cluster snapshot could not be read or does not have the expected shape',
} as const;

export class SnapshotError extends Error {
  override readonly name = 'SnapshotError';
  readonly code = 'FERRY_ERR_STATE_SNAPSHOT';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
