// src/capture: enrol and release pods — BPF programs, maps and the pods' listeners.
export {
  CaptureEngine,
  type CaptureOptions,
  type CgroupAttachment,
  type LinkState,
  type MapState,
  type PodListeners,
  type VerdictCount,
} from './capture-engine';
export { ownCgroup, type OwnCgroup } from './cgroup';
export { CAPTURE_ERROR_CODES, CaptureError } from './errors';
export * as bpfLayout from './bpf-layout';
