// Errors of the controller's CA (the service, its Secret store and rotation), with stable codes; each
// one the service answers with carries the gRPC status it maps to.
import * as grpc from '@grpc/grpc-js';
import { FerryError } from '../errors';

export const CA_SERVICE_ERROR_CODES = {
  FERRY_ERR_CA_SIGN_DENIED: "the CA refused to sign: the requested identity has no running pod on the calling agent's node (names both)",
  FERRY_ERR_CA_SIGN_REQUEST:
    'a sign request was malformed: oversized or unreadable CSR, bad namespace or service account, or a CSR for another identity',
  FERRY_ERR_CA_RATE_LIMITED: 'an agent asked for certificates faster than its rate allows (the message says when to retry)',
  FERRY_ERR_CA_UNAVAILABLE:
    'the CA service cannot decide yet: the CA is not loaded or the pods are not listed, or too many watches are open',
  FERRY_ERR_CA_STORE:
    'the CA Secret or trust-bundle ConfigMap could not be read, created or written, or holds malformed data (names the key)',
} as const;

export type CaServiceErrorCode = keyof typeof CA_SERVICE_ERROR_CODES;

const STATUS: Record<CaServiceErrorCode, grpc.status> = {
  FERRY_ERR_CA_SIGN_DENIED: grpc.status.PERMISSION_DENIED,
  FERRY_ERR_CA_SIGN_REQUEST: grpc.status.INVALID_ARGUMENT,
  FERRY_ERR_CA_RATE_LIMITED: grpc.status.RESOURCE_EXHAUSTED,
  FERRY_ERR_CA_UNAVAILABLE: grpc.status.UNAVAILABLE,
  FERRY_ERR_CA_STORE: grpc.status.UNAVAILABLE,
};

export class CaServiceError extends FerryError<CaServiceErrorCode> {
  /** The status a call failing with this error is answered with. */
  get grpcCode(): grpc.status {
    return STATUS[this.code];
  }
}
