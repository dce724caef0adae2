// One ajv ErrorObject as a located bad-input message, for every validator that checks shapes with a JSON schema:
// the schema node's `description` is the "expected …" half, so messages read the same in every module.
import type { ErrorObject } from 'ajv';
import { describeValue, quoteValue } from './describe';

export type FieldPathSegment = string | number;

/** Where the problem is, from the document root, and what is wrong there. */
export interface ExplainedAjvError {
  path: FieldPathSegment[];
  message: string;
}

export interface ExplainAjvOptions {
  /** Enum values the caller knows but does not carry yet: "UDP is not supported yet" rather than "not supported". */
  notSupportedYet?: readonly unknown[];
}

type Schema = Record<string, unknown>;

/**
 * A JSON pointer (RFC 6901) into `document` as path segments: list positions become numbers, mapping keys stay
 * strings even when they are digits (`portLevelMtls["8080"]`), so the path prints as the user wrote it.
 */
export function jsonPointerToPath(pointer: string, document: unknown): FieldPathSegment[] {
  if (pointer === '') return [];
  const path: FieldPathSegment[] = [];
  let node = document;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    const segment = Array.isArray(node) ? Number(key) : key;
    path.push(segment);
    node = (node as Record<FieldPathSegment, unknown> | undefined)?.[segment];
  }
  return path;
}

/**
 * One ajv error (compiled with `verbose: true`, so that it carries its schema node and data) in `document` as a
 * located message, or undefined when another error of the same run already explains it.
 */
export function explainAjvError(error: ErrorObject, document: unknown, options: ExplainAjvOptions = {}): ExplainedAjvError | undefined {
  // ajv reports a bad map key twice: as the key's own error (with propertyName) and as `propertyNames`; keep the latter.
  if (error.propertyName !== undefined) return undefined;
  const path = jsonPointerToPath(error.instancePath, document);
  const schema = (error.parentSchema ?? {}) as Schema;
  const expected = typeof schema.description === 'string' ? schema.description : undefined;
  const orMessage = expected ?? error.message;
  const params = error.params as Record<string, unknown>;
  const value: unknown = error.data;
  const properties = (schema.properties ?? {}) as Record<string, Schema>;
  switch (error.keyword) {
    case 'required': {
      const missing = String(params.missingProperty);
      const wanted = properties[missing]?.description;
      return { path: [...path, missing], message: typeof wanted === 'string' ? `is required; expected ${wanted}` : 'is required' };
    }
    case 'additionalProperties':
      // Either a typo or a field of the real API that Ferry does not implement: both are refused, never dropped.
      return {
        path: [...path, String(params.additionalProperty)],
        message: `unknown field (Ferry does not support it); expected one of: ${Object.keys(properties).join(', ')}`,
      };
    case 'propertyNames': {
      const keySchema = (schema.propertyNames ?? {}) as Schema;
      return { path: [...path, String(params.propertyName)], message: `is not a valid key; expected ${String(keySchema.description)}` };
    }
    case 'type':
      return { path, message: `is ${describeValue(value)}; expected ${expected ?? String(params.type)}` };
    case 'enum': {
      const found =
        options.notSupportedYet?.includes(value) === true
          ? `${String(value)} is not supported yet`
          : `${quoteValue(value)} is not supported`;
      return { path, message: `${found}; expected ${expected ?? (params.allowedValues as unknown[]).join(' or ')}` };
    }
    case 'minimum':
    case 'maximum':
      return { path, message: `${quoteValue(value)} is out of range; expected ${orMessage}` };
    case 'maxLength':
      return { path, message: `${quoteValue(value)} is ${String(value).length} characters long; expected ${orMessage}` };
    case 'pattern':
    case 'minLength':
      return { path, message: `${quoteValue(value)} is not valid; expected ${orMessage}` };
    case 'minItems':
      return { path, message: `is empty; expected ${orMessage}` };
    default:
      return { path, message: `${error.message ?? 'is not valid'}${expected !== undefined ? `; expected ${expected}` : ''}` };
  }
}
