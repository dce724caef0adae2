// The CustomResourceDefinitions of AuthorizationPolicy and PeerAuthentication, rendered from the same TypeBox
// definitions ajv checks (document-schema.ts), translated into the structural schema the API server accepts.
// `npm run gen:crds` writes them to deploy/crds/; a unit test keeps the committed files equal to this output.
import { Document } from 'yaml';
import type { TSchema } from '@sinclair/typebox';
import { AUTHORIZATION_POLICY_DOCUMENT_SCHEMA, PEER_AUTHENTICATION_DOCUMENT_SCHEMA } from './document-schema';
import { FERRY_DOC, FERRY_REJECTED, KUBERNETES_PRESERVE_UNKNOWN_FIELDS, KUBERNETES_VALIDATIONS } from './schema-kit';

/** A node of an openAPIV3Schema (apiextensions.k8s.io/v1 JSONSchemaProps), as plain JSON. */
export type CrdSchema = { [keyword: string]: unknown };

type Schema = Record<string, unknown>;

export const CRD_GROUP = 'security.istio.io';
/** The first is the storage version; the others are served with the same schema (no conversion needed). */
export const CRD_VERSIONS = ['v1', 'v1beta1'] as const;

/** Keywords copied as they are: value validation the API server runs itself. */
const COPIED = [
  'format',
  'enum',
  'pattern',
  'minLength',
  'maxLength',
  'minimum',
  'maximum',
  'minItems',
  'maxItems',
  'minProperties',
  'maxProperties',
] as const;
/** Kubernetes' own extensions, copied after the node's structure so each file reads top-down. */
const EXTENSIONS = [KUBERNETES_VALIDATIONS, KUBERNETES_PRESERVE_UNKNOWN_FIELDS] as const;
/**
 * Keywords with no structural form, dropped with a reason: Ferry still checks them when it reads the object.
 * - propertyNames: a CRD can bound a map's values, not its keys (CEL rules in the definition stand in where cheap);
 * - additionalProperties as a boolean: `false` is what the API server does anyway (it prunes unknown fields, and
 *   strict field validation, kubectl's default, reports them) and may not stand next to `properties`; `true` has
 *   to be said as x-kubernetes-preserve-unknown-fields, which the definition then carries itself. A schema-valued
 *   additionalProperties (a map) is translated below.
 * - description, x-ferry-doc, x-ferry-rejected: read below, not copied.
 */
const DROPPED = new Set(['propertyNames', FERRY_DOC, FERRY_REJECTED, 'description', 'additionalProperties']);
const HANDLED = new Set(['type', 'const', 'properties', 'required', 'items', ...COPIED, ...EXTENSIONS, ...DROPPED]);

const where = (path: string[]): string => (path.length === 0 ? '(root)' : path.join('.'));

/**
 * One node of a JSON schema as its structural form. Throws for what cannot be expressed (an unknown keyword, a
 * union type other than int-or-string, a node without a type), so a new field cannot silently lose a check.
 */
export function toStructuralSchema(node: TSchema | Schema, path: string[] = []): CrdSchema {
  const schema = node as Schema;
  for (const key of Object.keys(schema)) {
    if (!HANDLED.has(key)) throw new TypeError(`CRD schema ${where(path)}: ${key} has no structural form`);
  }
  const out: CrdSchema = {};
  const description = schema[FERRY_DOC] ?? schema.description;
  if (typeof description === 'string') out.description = description;

  const type = schema.type;
  if (Array.isArray(type)) {
    // Kubernetes' one union: IntOrString, written as controller-gen writes it.
    if ([...type].sort().join() !== 'integer,string')
      throw new TypeError(`CRD schema ${where(path)}: type ${type.join('|')} is not structural`);
    out.anyOf = [{ type: 'integer' }, { type: 'string' }];
    out['x-kubernetes-int-or-string'] = true;
  } else if (typeof type === 'string') {
    out.type = type;
  }

  for (const key of COPIED) if (schema[key] !== undefined) out[key] = structuredClone(schema[key]);
  if (schema.const !== undefined) out.enum = [schema.const];
  const rejected = schema[FERRY_REJECTED];
  if (Array.isArray(rejected) && Array.isArray(out.enum)) out.enum = out.enum.filter((value) => !rejected.includes(value));

  const properties = (schema.properties ?? {}) as Record<string, Schema>;
  const kept = Object.keys(properties).filter((name) => properties[name]?.[FERRY_REJECTED] !== true);
  if (kept.length > 0) {
    out.properties = Object.fromEntries(kept.map((name) => [name, toStructuralSchema(properties[name] as Schema, [...path, name])]));
  }
  const required = ((schema.required ?? []) as string[]).filter((name) => kept.includes(name));
  if (required.length > 0) out.required = required;

  const additional = schema.additionalProperties;
  if (typeof additional === 'object' && additional !== null) {
    if (Object.keys(properties).length > 0) throw new TypeError(`CRD schema ${where(path)}: additionalProperties next to properties`);
    out.additionalProperties = toStructuralSchema(additional as Schema, [...path, '*']);
  }
  if (schema.items !== undefined) {
    if (Array.isArray(schema.items)) throw new TypeError(`CRD schema ${where(path)}: tuple items are not structural`);
    out.items = toStructuralSchema(schema.items as Schema, [...path, '[]']);
  }
  for (const key of EXTENSIONS) if (schema[key] !== undefined) out[key] = structuredClone(schema[key]);
  if (out.type === undefined && out['x-kubernetes-int-or-string'] !== true) {
    throw new TypeError(`CRD schema ${where(path)}: no type`);
  }
  return out;
}

/**
 * A document schema's openAPIV3Schema: apiVersion and kind as plain strings (the API server sets them, and
 * rewrites apiVersion per served version), metadata left to the API server, spec and status translated.
 */
export function crdOpenApiSchema(document: TSchema): CrdSchema {
  const properties = document.properties as Record<string, Schema>;
  const text = (name: string): string => String(properties[name]?.[FERRY_DOC] ?? properties[name]?.description);
  const out: CrdSchema = {};
  if (typeof document[FERRY_DOC] === 'string') out.description = document[FERRY_DOC];
  out.type = 'object';
  out.properties = {
    apiVersion: { description: text('apiVersion'), type: 'string' },
    kind: { description: text('kind'), type: 'string' },
    metadata: { type: 'object' },
    spec: toStructuralSchema(properties.spec as Schema, ['spec']),
    status: toStructuralSchema(properties.status as Schema, ['status']),
  };
  return out;
}

interface PrinterColumn {
  name: string;
  type: string;
  jsonPath: string;
  description: string;
}

interface PolicyKind {
  file: string;
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  document: TSchema;
  columns: PrinterColumn[];
}

const AGE: PrinterColumn = {
  name: 'Age',
  type: 'date',
  jsonPath: '.metadata.creationTimestamp',
  description: 'When the object was created (set by the API server).',
};

// Names, short names, categories and columns as Istio's own CRDs have them (istio/api kubernetes/).
const POLICY_KINDS: readonly PolicyKind[] = [
  {
    file: 'deploy/crds/security.istio.io_authorizationpolicies.yaml',
    kind: 'AuthorizationPolicy',
    plural: 'authorizationpolicies',
    singular: 'authorizationpolicy',
    shortNames: ['ap'],
    document: AUTHORIZATION_POLICY_DOCUMENT_SCHEMA,
    columns: [{ name: 'Action', type: 'string', jsonPath: '.spec.action', description: 'What a matching rule does.' }, AGE],
  },
  {
    file: 'deploy/crds/security.istio.io_peerauthentications.yaml',
    kind: 'PeerAuthentication',
    plural: 'peerauthentications',
    singular: 'peerauthentication',
    shortNames: ['pa'],
    document: PEER_AUTHENTICATION_DOCUMENT_SCHEMA,
    columns: [{ name: 'Mode', type: 'string', jsonPath: '.spec.mtls.mode', description: 'The mutual TLS mode of every port.' }, AGE],
  },
];

/** One kind's CustomResourceDefinition (apiextensions.k8s.io/v1) as plain JSON. */
export function policyCrd(kind: 'AuthorizationPolicy' | 'PeerAuthentication'): Record<string, unknown> {
  const info = POLICY_KINDS.find((k) => k.kind === kind) as PolicyKind;
  const schema = crdOpenApiSchema(info.document);
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${info.plural}.${CRD_GROUP}`, labels: { 'app.kubernetes.io/part-of': 'ferry' } },
    spec: {
      group: CRD_GROUP,
      names: {
        categories: ['istio-io', 'security-istio-io'],
        kind: info.kind,
        listKind: `${info.kind}List`,
        plural: info.plural,
        shortNames: info.shortNames,
        singular: info.singular,
      },
      scope: 'Namespaced',
      versions: CRD_VERSIONS.map((name, i) => ({
        name,
        served: true,
        storage: i === 0,
        additionalPrinterColumns: structuredClone(info.columns),
        schema: { openAPIV3Schema: structuredClone(schema) },
        subresources: { status: {} },
      })),
    },
  };
}

/** The CRD files: repository-relative path and YAML text, exactly as committed under deploy/crds/. */
export function renderPolicyCrds(): { file: string; text: string }[] {
  return POLICY_KINDS.map((info) => {
    const yaml = new Document(policyCrd(info.kind as 'AuthorizationPolicy' | 'PeerAuthentication')).toString({ lineWidth: 0 });
    return { file: info.file, text: `# Generated by \`npm run gen:crds\` from src/policy/document-schema.ts; do not edit.\n${yaml}` };
  });
}
