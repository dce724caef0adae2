// TypeBox helpers and the schema keywords Ferry adds, shared by the document shapes (document-schema.ts), the
// normalised model (model.ts) and the CRD generator (crd.ts), so one definition serves ajv and the API server.
import type Ajv from 'ajv';
import { Type, type SchemaOptions, type TSchema, type TUnsafe, type Static } from '@sinclair/typebox';

/**
 * Keywords that only annotate; ajv is told about them (it runs in strict mode) and ignores them when validating.
 * - `x-ferry-doc`: the text `kubectl explain` shows, where it should say more than `description`, which is the
 *   "expected …" half of Ferry's own error messages (explainAjvError).
 * - `x-ferry-rejected`: on a field, `true`: Istio has it, Ferry refuses it in code with a message of its own, and
 *   the CRD leaves it out, so the API server refuses it as an unknown field. On an enum, the values to treat so.
 * - `x-kubernetes-*`: passed to the CRD as they are (CEL rules, preserved unknown fields).
 */
export const FERRY_DOC = 'x-ferry-doc';
export const FERRY_REJECTED = 'x-ferry-rejected';
export const KUBERNETES_VALIDATIONS = 'x-kubernetes-validations';
export const KUBERNETES_PRESERVE_UNKNOWN_FIELDS = 'x-kubernetes-preserve-unknown-fields';
export const ANNOTATION_KEYWORDS = [FERRY_DOC, FERRY_REJECTED, KUBERNETES_VALIDATIONS, KUBERNETES_PRESERVE_UNKNOWN_FIELDS] as const;

/** One CEL rule the API server runs on the node (apiextensions.k8s.io/v1 ValidationRule). */
export interface CelRule {
  rule: string;
  message: string;
}

/** Makes `ajv` accept Ferry's annotation keywords. */
export function addAnnotationKeywords(ajv: Ajv): Ajv {
  for (const keyword of ANNOTATION_KEYWORDS) ajv.addKeyword({ keyword });
  return ajv;
}

/**
 * A string from a fixed list, as JSON schema `enum` (TypeBox's Union of Literals would be `anyOf`/`const`, whose
 * ajv errors say less and which a structural schema cannot hold).
 */
export function stringEnum<const T extends readonly string[]>(values: T, options: SchemaOptions = {}): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ ...options, type: 'string', enum: [...values] });
}

/**
 * A mapping of free keys to `value` (`additionalProperties`; TypeBox's Record would be `patternProperties`, which
 * a structural schema cannot hold). `keys`, when given, is the keys' JSON schema (`propertyNames`, ajv only).
 */
export function mapOf<V extends TSchema>(
  value: V,
  options: SchemaOptions & { keys?: SchemaOptions } = {},
): TUnsafe<Record<string, Static<V>>> {
  const { keys, ...rest } = options;
  return Type.Unsafe<Record<string, Static<V>>>({
    ...rest,
    type: 'object',
    ...(keys !== undefined ? { propertyNames: keys } : {}),
    additionalProperties: value,
  });
}

/** A port as Istio writes it (a string) or as YAML gives an unquoted one (an integer): the CRD's int-or-string. */
export function intOrString(options: SchemaOptions = {}): TUnsafe<string | number> {
  return Type.Unsafe<string | number>({ ...options, type: ['string', 'integer'] });
}
