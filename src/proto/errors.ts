// Errors of src/proto, with stable codes.
import { FerryError } from '../errors';

export const PROTO_ERROR_CODES = {
  FERRY_ERR_PROTO_LOAD: "one of Ferry's .proto files could not be found or parsed",
} as const;

export class ProtoLoadError extends FerryError<'FERRY_ERR_PROTO_LOAD'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_ERR_PROTO_LOAD', message, options);
  }
}
