// The base of every Ferry error: a stable `code` (FERRY_ERR_*, registered in its module's
// *_ERROR_CODES record), the class name as `name`, and the underlying `cause`.

export class FerryError<Code extends string = string> extends Error {
  constructor(
    readonly code: Code,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  override get name(): string {
    return this.constructor.name;
  }
}

export { describeValue, formatFieldPath, quoteValue } from './describe';
export {
  explainAjvError,
  jsonPointerToPath,
  type ExplainAjvOptions,
  type ExplainedAjvError,
  type FieldPathSegment,
} from './ajv-errors';
