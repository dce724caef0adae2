// The hand-over conversation between a node's running agent (the predecessor) and the one replacing it
// (the successor), over the node's hand-over socket. Frames are a 4-byte big-endian length and a JSON
// message; listeners travel as descriptors (SCM_RIGHTS) attached to their `listener` frame, one each.
//
//   successor                         predecessor
//   hello {node, pinDir, cgroupPath} →
//                                    ← hello {node, pid, cgroupId}            (or error, and the socket closes)
//   … the successor syncs its state and fetches its certificates …
//   request                          →
//                                    ← listener {kind, pod?, family, port} + fd   (one per listener)
//                                    ← end {listeners}
//   … the successor serves every listener it adopted …
//   go                               →
//                                    ← gone {open}                  (it accepts nothing any more)
//   … the predecessor drains its open connections and exits; the socket closes with it …
//
// One schema per message gives the TypeScript type and the validator.
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import Ajv, { type ValidateFunction } from 'ajv';
import { explainAjvError, formatFieldPath } from '../errors';
import { HandoverError } from './errors';

export const HANDOVER_PROTOCOL_VERSION = 1;
/** A frame's JSON is at most this long (the native layer refuses longer ones too). */
export const MAX_MESSAGE_BYTES = 64 * 1024;

const name = (description: string) => Type.String({ minLength: 1, maxLength: 4096, description });
const pid = Type.Integer({ minimum: 1, maximum: 4_194_304, description: 'a process id' });
const count = Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'a count' });

export const POD_LISTENER_KINDS = ['outbound', 'inbound', 'hbone'] as const;
export const NODE_LISTENER_KINDS = ['readiness', 'metrics', 'admin'] as const;
export type PodListenerKind = (typeof POD_LISTENER_KINDS)[number];
export type NodeListenerKind = (typeof NODE_LISTENER_KINDS)[number];

const SuccessorHello = Type.Object(
  {
    type: Type.Literal('hello'),
    version: Type.Literal(HANDOVER_PROTOCOL_VERSION, { description: `protocol version ${HANDOVER_PROTOCOL_VERSION}` }),
    pid,
    node: name("the successor's node name"),
    pinDir: name("the successor's --pin-dir"),
    cgroupPath: name("the successor's --cgroup"),
    pod: Type.Optional(name("the successor's Pod name")),
  },
  { additionalProperties: false },
);
const PredecessorHello = Type.Object(
  {
    type: Type.Literal('hello'),
    version: Type.Literal(HANDOVER_PROTOCOL_VERSION, { description: `protocol version ${HANDOVER_PROTOCOL_VERSION}` }),
    pid,
    node: name("the predecessor's node name"),
    cgroupId: Type.String({ pattern: '^[1-9][0-9]{0,19}$', description: "the predecessor's cgroup id, in decimal" }),
    pod: Type.Optional(name("the predecessor's Pod name")),
  },
  { additionalProperties: false },
);
const Request = Type.Object({ type: Type.Literal('request') }, { additionalProperties: false });
const Go = Type.Object({ type: Type.Literal('go') }, { additionalProperties: false });
const PodRef = Type.Object(
  {
    uid: name("the pod's UID"),
    namespace: name("the pod's namespace"),
    name: name("the pod's name"),
    netnsCookie: Type.String({ pattern: '^[1-9][0-9]{0,19}$', description: "the pod's network namespace cookie, in decimal" }),
  },
  { additionalProperties: false },
);
const Listener = Type.Object(
  {
    type: Type.Literal('listener'),
    kind: Type.Union(
      [...POD_LISTENER_KINDS, ...NODE_LISTENER_KINDS].map((k) => Type.Literal(k)),
      { description: `one of ${[...POD_LISTENER_KINDS, ...NODE_LISTENER_KINDS].join(', ')}` },
    ),
    pod: Type.Optional(PodRef),
    family: Type.Union([Type.Literal(4), Type.Literal(6)], { description: '4 or 6' }),
    port: Type.Integer({ minimum: 1, maximum: 65535, description: 'a TCP port' }),
  },
  { additionalProperties: false },
);
const End = Type.Object({ type: Type.Literal('end'), listeners: count }, { additionalProperties: false });
const Gone = Type.Object({ type: Type.Literal('gone'), open: count }, { additionalProperties: false });
const ErrorMessage = Type.Object(
  { type: Type.Literal('error'), message: Type.String({ maxLength: 8192 }) },
  { additionalProperties: false },
);

export type SuccessorHello = Static<typeof SuccessorHello>;
export type PredecessorHello = Static<typeof PredecessorHello>;
export type ListenerMessage = Static<typeof Listener>;
export type PodRef = Static<typeof PodRef>;

/** What the successor sends, by type. */
export interface SuccessorMessages {
  hello: SuccessorHello;
  request: Static<typeof Request>;
  go: Static<typeof Go>;
}

/** What the predecessor sends, by type. */
export interface PredecessorMessages {
  hello: PredecessorHello;
  listener: ListenerMessage;
  end: Static<typeof End>;
  gone: Static<typeof Gone>;
  error: Static<typeof ErrorMessage>;
}

const ajv = new Ajv({ allErrors: false, verbose: true, allowUnionTypes: true });
const compile = (schema: TSchema): ValidateFunction => ajv.compile(schema);
const SUCCESSOR: Record<keyof SuccessorMessages, ValidateFunction> = {
  hello: compile(SuccessorHello),
  request: compile(Request),
  go: compile(Go),
};
const PREDECESSOR: Record<keyof PredecessorMessages, ValidateFunction> = {
  hello: compile(PredecessorHello),
  listener: compile(Listener),
  end: compile(End),
  gone: compile(Gone),
  error: compile(ErrorMessage),
};

export function encodeMessage(message: { type: string }): Buffer {
  return Buffer.from(JSON.stringify(message));
}

/**
 * A frame's payload as one of the `expected` messages of `from`'s side, or a HandoverError naming
 * what is wrong: not JSON, no type, a type not expected now, or the first field that fails its schema.
 */
export function decodeMessage<M, K extends keyof M & string>(
  from: 'successor' | 'predecessor',
  payload: Buffer,
  expected: readonly K[],
): M[K] & { type: K } {
  const validators = (from === 'successor' ? SUCCESSOR : PREDECESSOR) as unknown as Record<string, ValidateFunction>;
  const wanted = expected.join(' or ');
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    throw new HandoverError(
      'FERRY_ERR_HANDOVER_PROTOCOL',
      `a frame from the ${from} is not JSON (expected ${wanted}): ${(err as Error).message}`,
    );
  }
  const type = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as { type?: unknown }).type : undefined;
  if (typeof type !== 'string' || !(expected as readonly string[]).includes(type)) {
    const got = typeof type === 'string' ? `"${type.slice(0, 40)}"` : 'no string type';
    throw new HandoverError('FERRY_ERR_HANDOVER_PROTOCOL', `a frame from the ${from} has ${got}; expected ${wanted} here`);
  }
  const validate = validators[type];
  if (!validate(value)) {
    const first = (validate.errors ?? []).map((e) => explainAjvError(e, value)).find((e) => e !== undefined);
    const where = first ? `${formatFieldPath(first.path) || '(the message)'} ${first.message}` : 'does not match its schema';
    throw new HandoverError('FERRY_ERR_HANDOVER_PROTOCOL', `${type} from the ${from}: ${where}`);
  }
  return value as M[K] & { type: K };
}
