// Kernel and privilege checks run once at agent start (ztunnel's verify_syscalls): probeKernel()
// reports every check, assertKernelReady() fails with one error naming everything missing.
import type { ProbeReport } from './binding';
import { callNative, nativeBinding, NativeUnsupportedError } from './errors';

/** Runs every check in ferry.node's probe(): bpf(), cgroup2, bpffs, BTF, program/map types, capabilities. */
export function probeKernel(): ProbeReport {
  const binding = nativeBinding();
  return callNative(() => binding.probe());
}

/**
 * Throws NativeUnsupportedError (FERRY_ERR_NATIVE_UNSUPPORTED) listing every failed check by name
 * and detail, so an operator fixes them all in one go instead of one restart per missing feature.
 */
export function assertKernelReady(report: ProbeReport): void {
  const failed = report.checks.filter((check) => !check.ok);
  if (failed.length > 0) throw new NativeUnsupportedError(report.kernelRelease, failed);
}
