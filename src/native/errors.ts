// Error registry of src/native: the stable FERRY_ERR_NATIVE_* codes, the classes that carry them,
// and the translation of raw addon errors (plain Errors with errno/code/syscall) into NativeError.
import { loadBinding, type NativeBinding, type ProbeCheck } from './binding';

/**
 * Every code this module raises, with what it means. Stable: callers and alerts match on them.
 * A test checks they are unique and that every error class below uses one of them.
 */
export const NATIVE_ERROR_CODES = {
  FERRY_ERR_NATIVE_ARGUMENT:
    'An argument to a src/native call was rejected in TypeScript before reaching C++; the message names ' +
    'the call, the argument path and what was expected (NativeArgumentError, a TypeError).',
  FERRY_ERR_NATIVE_SYSCALL:
    "A system call or libbpf call failed (NativeError). Like Node's own system errors, its `code` is the " +
    'errno name (ENOENT, ECONNREFUSED, LIBBPF_ERRNO__FORMAT...), with `errno`, `syscall` and, for BPF ' +
    'loads, the captured libbpf/verifier `log`; this registry code is on `ferryCode`.',
  FERRY_ERR_NATIVE_UNSUPPORTED:
    'The kernel or the process lacks a feature Ferry needs; the message lists every failed probe check ' +
    'by name with what is missing (NativeUnsupportedError, from assertKernelReady).',
  FERRY_ERR_NATIVE_LOAD:
    'native/build/Release/ferry.node could not be loaded: not built (npm run build:native), built for ' +
    'another Node.js ABI, or libbpf missing (NativeLoadError).',
} as const;

export type NativeErrorCode = keyof typeof NATIVE_ERROR_CODES;

/** A bad argument, caught in TypeScript. Derives from TypeError, as Node's ERR_INVALID_ARG_TYPE does. */
export class NativeArgumentError extends TypeError {
  override readonly name = 'NativeArgumentError';
  readonly code = 'FERRY_ERR_NATIVE_ARGUMENT' as const;
  /** The argument's path, e.g. 'options.port' or 'key'. */
  readonly argument: string;

  constructor(call: string, argument: string, expected: string, actual: unknown, options?: { cause?: unknown }) {
    super(`${call}: ${argument} must be ${expected}, got ${describe(actual)}`, options);
    this.argument = argument;
  }
}

/** A failed syscall or libbpf call, with the errno it failed with. */
export class NativeError extends Error {
  override readonly name = 'NativeError';
  readonly ferryCode = 'FERRY_ERR_NATIVE_SYSCALL' as const;
  /** Positive errno (or libbpf's 4000-range LIBBPF_ERRNO__* code). */
  readonly errno: number;
  /** The errno's name: 'ENOENT', 'ECONNREFUSED', ... */
  readonly code: string;
  /** The call that failed: 'connect', 'setns', 'bpf_object__load', ... */
  readonly syscall: string;
  /** libbpf's output during the call (the verifier log on a rejected program), when there was any. */
  readonly log: string | undefined;

  constructor(
    message: string,
    fields: { errno: number; code: string; syscall: string; log?: string | undefined },
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.errno = fields.errno;
    this.code = fields.code;
    this.syscall = fields.syscall;
    this.log = fields.log;
  }
}

/** The kernel or process cannot run Ferry; lists every failed check. */
export class NativeUnsupportedError extends Error {
  override readonly name = 'NativeUnsupportedError';
  readonly code = 'FERRY_ERR_NATIVE_UNSUPPORTED' as const;
  readonly kernelRelease: string;
  readonly failed: readonly ProbeCheck[];

  constructor(kernelRelease: string, failed: readonly ProbeCheck[]) {
    const lines = failed.map((check) => `  - ${check.name}: ${check.detail}`);
    super(
      `kernel ${kernelRelease}: ${failed.length} of Ferry's requirement${failed.length === 1 ? '' : 's'} ` +
        `not met:\n${lines.join('\n')}`,
    );
    this.kernelRelease = kernelRelease;
    this.failed = failed;
  }
}

/** ferry.node could not be required. */
export class NativeLoadError extends Error {
  override readonly name = 'NativeLoadError';
  readonly code = 'FERRY_ERR_NATIVE_LOAD' as const;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export function isNativeError(error: unknown): error is NativeError {
  return error instanceof NativeError;
}

/** What the addon throws: a plain Error carrying errno, code and syscall (NativeErrorShape). */
interface RawNativeError extends Error {
  errno: number;
  code: string;
  syscall: string;
  log?: unknown;
}

function isRawNativeError(error: unknown): error is RawNativeError {
  if (!(error instanceof Error) || error instanceof NativeError) return false;
  const fields = error as Partial<Record<'errno' | 'code' | 'syscall', unknown>>;
  return typeof fields.errno === 'number' && typeof fields.code === 'string' && typeof fields.syscall === 'string';
}

/** The addon's error as a NativeError (the raw one kept as `cause`); anything else unchanged. */
export function toNativeError(error: unknown): unknown {
  if (!isRawNativeError(error)) return error;
  return new NativeError(
    error.message,
    {
      errno: error.errno,
      code: error.code,
      syscall: error.syscall,
      log: typeof error.log === 'string' ? error.log : undefined,
    },
    { cause: error },
  );
}

/** Runs a synchronous addon call, translating its errors. */
export function callNative<T>(call: () => T): T {
  try {
    return call();
  } catch (error) {
    throw toNativeError(error);
  }
}

/** Awaits an asynchronous addon call, translating its rejection. */
export async function awaitNative<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    throw toNativeError(error);
  }
}

/** The addon, or a NativeLoadError explaining why it could not be loaded. */
export function nativeBinding(): NativeBinding {
  try {
    return loadBinding();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new NativeLoadError(`cannot load ferry.node (${reason}); build it with 'npm run build:native' (needs libbpf-dev, clang, make)`, {
      cause: error,
    });
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Buffer.isBuffer(value)) return `a Buffer of ${value.length} bytes`;
  if (typeof value === 'string') return value.length > 60 ? `a string of ${value.length} characters` : `'${value}'`;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (typeof value === 'undefined') return 'undefined';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : typeof value;
}
