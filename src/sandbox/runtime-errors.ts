// Errors of the sandbox's runtime (building and tearing down namespaces, processes, cgroups).
import { FerryError } from '../errors';

export const SANDBOX_RUNTIME_ERROR_CODES = {
  FERRY_ERR_SANDBOX_SYSTEM: 'a host command or file operation the sandbox needs failed (the message names it)',
  FERRY_ERR_SANDBOX_STATE: 'the sandbox is not in the state the command needs (already up, not up, unknown pod)',
  FERRY_ERR_SANDBOX_AGENT: 'a sandbox agent did not become ready',
  FERRY_ERR_SANDBOX_HTTP: 'an HTTP request made from inside a sandbox namespace failed (connect, timeout, or an oversized answer)',
  FERRY_ERR_SANDBOX_PROMETHEUS:
    "the sandbox's Prometheus is not installed, did not become ready, is not running, or refused a query (the message says which)",
} as const;

type RuntimeCode = keyof typeof SANDBOX_RUNTIME_ERROR_CODES;

/** Names each error class after its code, so `instanceof` and `code` both work. */
function runtimeError(code: RuntimeCode) {
  return class extends FerryError<RuntimeCode> {
    constructor(message: string, options?: { cause?: unknown }) {
      super(code, message, options);
    }
  };
}

export class SandboxSystemError extends runtimeError('FERRY_ERR_SANDBOX_SYSTEM') {}
export class SandboxStateError extends runtimeError('FERRY_ERR_SANDBOX_STATE') {}
export class SandboxAgentError extends runtimeError('FERRY_ERR_SANDBOX_AGENT') {}
export class SandboxHttpError extends runtimeError('FERRY_ERR_SANDBOX_HTTP') {}
export class SandboxPrometheusError extends runtimeError('FERRY_ERR_SANDBOX_PROMETHEUS') {}
