// Error registry of src/sandbox: every error this module throws, each with a stable FERRY_ERR_SANDBOX_* code.
// Callers branch on `code` (never on message text); the CLI prints `message`, which is written for people.

/** Stable code → one-line description. A repo-wide test checks codes are unique and documented. */
export const SANDBOX_ERROR_CODES = {
  FERRY_ERR_SANDBOX_MANIFEST:
    'The sandbox manifests are invalid: malformed YAML, unknown kind or field, wrong type or value, or a broken reference between objects.',
  FERRY_ERR_SANDBOX_PLAN:
    'The manifests are valid but cannot be laid out as a sandbox: an address range is exhausted, a generated name is too long, or two objects claim the same address.',
  FERRY_ERR_SANDBOX_ARGUMENT: 'A sandbox function was called with an invalid option, e.g. a prefix that is not a short lowercase name.',
} as const;

export type SandboxErrorCode = keyof typeof SANDBOX_ERROR_CODES;

/** Base of every sandbox error, so callers can catch the module's errors as one family. */
export abstract class SandboxError extends Error {
  abstract readonly code: SandboxErrorCode;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** One thing wrong with the input, located precisely enough to fix it without reading the code. */
export interface ManifestProblem {
  /** The file as the user named it. */
  file: string;
  /** 1-based YAML document number within the file; 0 when the problem is not about one document. */
  document: number;
  kind?: string;
  /** `NAME` for cluster-scoped kinds, `NAMESPACE/NAME` for namespaced ones. */
  name?: string;
  /** Field path such as `spec.containers[0].ports[1].containerPort`; empty for the whole document or file. */
  path: string;
  /** What is wrong and what was expected. */
  message: string;
  /** 1-based line in the file of the offending node (or its nearest present parent), when known. */
  line?: number;
}

/** Formats one problem the way ManifestError lists it: `FILE: document N (Kind NS/NAME): path: message`. */
export function formatProblem(problem: ManifestProblem): string {
  let where = problem.file;
  if (problem.document > 0) where += `: document ${problem.document}`;
  if (problem.kind !== undefined) {
    where += problem.name !== undefined ? ` (${problem.kind} ${problem.name})` : ` (${problem.kind})`;
  }
  return problem.path === '' ? `${where}: ${problem.message}` : `${where}: ${problem.path}: ${problem.message}`;
}

/**
 * Every problem found in a set of manifests, thrown once after all files were read, so a user fixes
 * everything in one round instead of one error per run.
 */
export class ManifestError extends SandboxError {
  override readonly name = 'ManifestError';
  readonly code = 'FERRY_ERR_SANDBOX_MANIFEST' as const;
  readonly problems: readonly ManifestProblem[];

  constructor(problems: ManifestProblem[], options?: { cause?: unknown }) {
    const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
    super(`invalid sandbox manifests (${count}):\n${problems.map(formatProblem).join('\n')}`, options);
    this.problems = problems;
  }
}

/** The manifests are valid, but no sandbox can be laid out for them (see SANDBOX_ERROR_CODES). */
export class PlanError extends SandboxError {
  override readonly name = 'PlanError';
  readonly code = 'FERRY_ERR_SANDBOX_PLAN' as const;
}

/** A caller passed an invalid option (not the user's manifests: those get ManifestError). */
export class SandboxArgumentError extends SandboxError {
  override readonly name = 'SandboxArgumentError';
  readonly code = 'FERRY_ERR_SANDBOX_ARGUMENT' as const;
}
