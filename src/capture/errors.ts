// Errors of src/capture, with stable codes.

export const CAPTURE_ERROR_CODES = {
  FERRY_ERR_CAPTURE_ATTACH: 'a BPF program could not be loaded or attached (the cause names the program and hook)',
  FERRY_ERR_CAPTURE_ENROL: 'a pod could not be enrolled (listeners, maps or its sk_lookup link)',
  FERRY_ERR_CAPTURE_CAPACITY: 'a BPF map or per-pod table is full',
} as const;

type CaptureErrorCode = keyof typeof CAPTURE_ERROR_CODES;

export class CaptureError extends Error {
  override readonly name = 'CaptureError';
  constructor(readonly code: CaptureErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
