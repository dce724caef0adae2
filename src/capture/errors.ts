// Errors of src/capture, with stable codes.
import { FerryError } from '../errors';

export const CAPTURE_ERROR_CODES = {
  FERRY_ERR_CAPTURE_ATTACH: 'a BPF program could not be loaded or attached (the cause names the program and hook)',
  FERRY_ERR_CAPTURE_ENROL: 'a pod could not be enrolled (listeners, maps or its sk_lookup link)',
  FERRY_ERR_CAPTURE_CGROUP:
    "the agent could not find its own cgroup v2 directory, which the programs need to tell its sockets from a pod's",
} as const;

export class CaptureError extends FerryError<keyof typeof CAPTURE_ERROR_CODES> {}
