// Errors of the sandbox's runtime (building and tearing down namespaces, processes, cgroups).

export const SANDBOX_RUNTIME_ERROR_CODES = {
  FERRY_ERR_SANDBOX_SYSTEM: 'a host command or file operation the sandbox needs failed (the message names it)',
  FERRY_ERR_SANDBOX_STATE: 'the sandbox is not in the state the command needs (already up, not up, unknown pod)',
  FERRY_ERR_SANDBOX_AGENT: 'a sandbox agent did not become ready',
} as const;

export class SandboxSystemError extends Error {
  override readonly name = 'SandboxSystemError';
  readonly code = 'FERRY_ERR_SANDBOX_SYSTEM';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export class SandboxStateError extends Error {
  override readonly name = 'SandboxStateError';
  readonly code = 'FERRY_ERR_SANDBOX_STATE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export class SandboxAgentError extends Error {
  override readonly name = 'SandboxAgentError';
  readonly code = 'FERRY_ERR_SANDBOX_AGENT';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
