// Errors of src/config, with stable codes.

export const CONFIG_ERROR_CODES = {
  FERRY_ERR_CONFIG_INVALID: 'a configuration value (flag or environment variable) is missing or malformed',
} as const;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'FERRY_ERR_CONFIG_INVALID';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
