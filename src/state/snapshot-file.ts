// Read a cluster snapshot from a JSON file and follow its changes. The sandbox writes the file
// atomically (write to a temporary name, then rename), so a reader never sees half a document.
import * as fs from 'node:fs';
import Ajv from 'ajv';
import { AUTHORIZATION_POLICY_JSON_SCHEMA, PEER_AUTHENTICATION_JSON_SCHEMA, PolicyError, PolicySet } from '../policy';
import type { ClusterSnapshot } from './model';
import { SERVICE_JSON_SCHEMA, WORKLOAD_JSON_SCHEMA } from './model-schema';
import { SnapshotError } from './errors';

const schema = {
  type: 'object',
  required: ['version', 'revision', 'workloads', 'services'],
  additionalProperties: false,
  properties: {
    version: { const: 1 },
    revision: { type: 'integer', minimum: 0 },
    workloads: { type: 'array', items: WORKLOAD_JSON_SCHEMA },
    services: { type: 'array', items: SERVICE_JSON_SCHEMA },
    // The normalised forms src/policy produced when the sandbox (or control plane) read the YAML.
    authorizationPolicies: { type: 'array', items: AUTHORIZATION_POLICY_JSON_SCHEMA },
    peerAuthentications: { type: 'array', items: PEER_AUTHENTICATION_JSON_SCHEMA },
  },
} as const;

const validate = new Ajv({ allErrors: true }).compile<ClusterSnapshot>(schema);

/** Parse and check a snapshot; errors name the file and each offending field. */
export function parseSnapshot(text: string, source: string): ClusterSnapshot {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new SnapshotError(`${source}: not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!validate(value)) {
    const problems = (validate.errors ?? []).map((e) => {
      const where = e.instancePath || '(root)';
      if (e.keyword === 'additionalProperties') {
        return `${where} ${e.message ?? 'has an unknown field'}: "${String((e.params as { additionalProperty?: unknown }).additionalProperty)}"`;
      }
      return `${where} ${e.message ?? 'is invalid'}`;
    });
    throw new SnapshotError(`${source}: invalid snapshot:\n  ${problems.join('\n  ')}`);
  }
  // Values the schema cannot check (CIDRs, condition keys): compiling is the check, and it is cheap.
  try {
    new PolicySet(value.authorizationPolicies ?? [], value.peerAuthentications ?? []);
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    throw new SnapshotError(`${source}: invalid snapshot: ${err.message}`, { cause: err });
  }
  return value;
}

export function readSnapshot(file: string): ClusterSnapshot {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new SnapshotError(`${file}: cannot read snapshot: ${(err as Error).message}`, { cause: err });
  }
  return parseSnapshot(text, file);
}

/** Write atomically: readers see the old or the new document, never a mix. */
export function writeSnapshot(file: string, snapshot: ClusterSnapshot): void {
  const temporary = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temporary, JSON.stringify(snapshot, null, 2));
  fs.renameSync(temporary, file);
}

/**
 * Call `onChange` with each new revision of the file, checking every `intervalMs`. A plain timer
 * rather than fs.watchFile: watchFile compares against a stat it takes later, in the background,
 * so a file replaced between the first read and that stat would never be reported. A bad document
 * is reported to `onError` and the previous one stays in force. Returns a function that stops.
 */
export function watchSnapshot(
  file: string,
  onChange: (snapshot: ClusterSnapshot) => void,
  onError: (err: Error) => void,
  intervalMs = 250,
): () => void {
  let lastRevision = -1;
  let lastError = '';
  const check = (): void => {
    if (!fs.existsSync(file)) return;
    try {
      const snapshot = readSnapshot(file);
      lastError = '';
      if (snapshot.revision !== lastRevision) {
        lastRevision = snapshot.revision;
        onChange(snapshot);
      }
    } catch (err) {
      // Report a bad document once, not at every tick.
      if ((err as Error).message !== lastError) {
        lastError = (err as Error).message;
        onError(err as Error);
      }
    }
  };
  check();
  const timer = setInterval(check, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
