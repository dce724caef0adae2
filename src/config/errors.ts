// Errors of src/config, with stable codes.
import { FerryError } from '../errors';

export const CONFIG_ERROR_CODES = {
  FERRY_ERR_CONFIG_INVALID: 'a configuration value (flag or environment variable) is missing or malformed',
} as const;

export class ConfigError extends FerryError<'FERRY_ERR_CONFIG_INVALID'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_ERR_CONFIG_INVALID', message, options);
  }
}
